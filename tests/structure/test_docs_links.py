"""Every relative link of the user docs and research notes leads somewhere: the file (or folder) exists, and a
`#section` names a heading of the target markdown file, as GitHub turns headings into anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "research").glob("*.md")])
FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code, where brackets and parentheses are not links."""
    return INLINE_CODE.sub("", FENCED_BLOCK.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than '-' and '_' dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(heading) for heading in HEADING.findall(prose(path.read_text(encoding="utf-8")))}


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]  # http:, https:, mailto:


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file_part, _, section = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            shown = destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination
            broken.append(f"{target}: {shown} does not exist")
        elif section and destination.suffix == ".md" and section not in anchors(destination):
            broken.append(f"{target}: no heading of {destination.name} has the anchor #{section}")
    return broken


def test_the_documents_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/usage.md", "docs/cli.md", "research/README.md"} <= names


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    assert broken_links(path) == [], f"{path.relative_to(ROOT)} has broken links"


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "guide.md").write_text("# A guide\n\n## Training defaults\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](guide.md#training-defaults) [gone](missing.md) [bad](guide.md#no-such-section) "
                    "[web](https://example.com/x.md) `[code](missing.md)`\n```\n[block](missing.md)\n```\n")
    assert relative_links(page) == ["guide.md#training-defaults", "missing.md", "guide.md#no-such-section"]
    assert [problem.split(":")[0] for problem in broken_links(page)] == ["missing.md", "guide.md#no-such-section"]
