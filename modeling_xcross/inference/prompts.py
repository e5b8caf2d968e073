"""The prompt format, in one place: how a history and a candidate become model input text.

Encoder backbones read the text pair (history, candidate); decoder backbones read one text with the candidate last.
History items are most recent last; when a prompt is too long the OLDEST history tokens are dropped first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptFormat:
    separator: str = "; "
    decoder_prefix: str = "Purchase history:"
    decoder_suffix: str = " Next item: "

    def history(self, titles: list[str]) -> str:
        return self.separator.join(titles)

    def decoder_text(self, history: str, candidate: str) -> str:
        return f"{self.decoder_prefix} {history}{self.decoder_suffix}{candidate}"


PROMPT = PromptFormat()
