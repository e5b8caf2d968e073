"""Build an X-Cross checkpoint from a base model and PEFT LoRA adapters (directories or Hub repo ids).

    python -m conversion.build_xcross --base sentence-transformers/all-MiniLM-L6-v2 \
        --adapter toys=runs/toys/adapter --adapter sports=org/sports-lora@v1 --output-dir runs/xcross-untrained

A Hub adapter is `repo_id` or `repo_id@revision`; the checkpoint records the commit each one resolved to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from configuration_xcross import PAPER_SCORING, XCrossConfig
from configuration_xcross.configuration_xcross import SCORING_MODES
from modeling_xcross import DEFAULT_BACKBONE, XCrossForSequentialRecommendation


def parse_adapter(text: str) -> tuple[str, str | tuple[str, str]]:
    """`NAME=DIR_OR_REPO` or `NAME=REPO@REVISION` -> (name, source or (repo, revision))."""
    name, separator, source = text.partition("=")
    if not separator or not name or not source:
        raise argparse.ArgumentTypeError(f"--adapter takes NAME=DIR_OR_REPO[@REVISION], got {text!r}")
    repo, at, revision = source.rpartition("@")
    return (name, (repo, revision)) if at and not Path(source).exists() else (name, source)


def build_xcross(base: str, adapters: dict, output_dir: Path, base_revision: str | None = None,
                 **config_overrides) -> Path:
    """Assemble X-Cross (integrator at its identity initialisation) and save it to `output_dir`."""
    model = XCrossForSequentialRecommendation.from_adapters(base, adapters, base_revision=base_revision,
                                                            **config_overrides)
    model.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=DEFAULT_BACKBONE, help=f"base model id or path (default: {DEFAULT_BACKBONE})")
    parser.add_argument("--base-revision", help="branch, tag or commit of a Hub base (recorded as its commit)")
    parser.add_argument("--adapter", type=parse_adapter, action="append", required=True,
                        metavar="NAME=DIR_OR_REPO[@REVISION]",
                        help="a source adapter; repeat in bank order")
    parser.add_argument("--beta", type=float, default=1.0, help="weight of the cross-domain scaling term (default 1)")
    parser.add_argument("--gamma", type=float, default=1.0, help="weight of the interaction term (default 1)")
    parser.add_argument("--scoring", choices=SCORING_MODES, default=XCrossConfig.scoring,
                        help="dual: the recommended scoring with XCrossConfig's defaults; cross: the paper's "
                             "(PAPER_SCORING); default: %(default)s")
    parser.add_argument("--output-dir", type=Path, required=True, help="where to write the checkpoint")
    args = parser.parse_args(argv)
    adapters = dict(args.adapter)
    if len(adapters) != len(args.adapter):
        parser.error("--adapter names must be unique")
    scoring = PAPER_SCORING if args.scoring == "cross" else {}
    build_xcross(args.base, adapters, args.output_dir, base_revision=args.base_revision, beta=args.beta,
                 gamma=args.gamma, **scoring)
    print(f"saved X-Cross with adapters {list(adapters)} to {args.output_dir}")


if __name__ == "__main__":
    main()
