"""Run the paper's experiments E1-E4 from a JSON config, resumably, one record per run in research/results/records/.

    python -m research.run_experiments --config research/configs/tools.json --dry-run
    python -m research.run_experiments --config research/configs/tools.json --only E1 --seeds 42
    python -m research.run_experiments --config research/configs/tools.json --target Tools --only E2,E3
    python -m research.run_experiments --config research/configs/tools.json --verify

E1: LoRA per domain on its own train users (the source adapters and the target-LoRA baseline; with `sources_seed`
the sources once, at that seed, for every seed). E2: X-Cross on each target from the other domains' E1 adapters. E3:
X-Cross and target LoRA on fractions of the target train users. E4: the source adapters zero-shot, a head on the
frozen base, a head on the merged source adapters, and PEFT X-LoRA (recorded as not applicable, with the reason). E5:
the references that need no training. A run with a record is skipped; rerunning a stopped one resumes it.
Two runners given disjoint `--runs` share the cores (OMP_NUM_THREADS=1 each on two cores). `--verify` compares
the metrics files of runs repeated from their recorded commands with the records. Then
`python -m research.report --config ...` writes research/results.md.
"""

from __future__ import annotations

import argparse
import sys

from research.experiments import EXPERIMENTS, ConfigError, ExperimentConfig, execute, plan_runs, \
    select_runs, verify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment config (JSON), e.g. research/configs/tools.json")
    parser.add_argument("--only", type=lambda text: text.split(","), default=None,
                        help=f"comma-separated experiments to run, of {','.join(EXPERIMENTS)}; default: all")
    parser.add_argument("--target", default=None,
                        help="only this target's runs (and the E1 adapters of its sources); default: every target")
    parser.add_argument("--seeds", type=lambda text: [int(seed) for seed in text.split(",")], default=None,
                        help="comma-separated seeds of the config to run; default: all")
    parser.add_argument("--runs", type=lambda text: text.split(","), default=None,
                        help="comma-separated run ids (as --dry-run prints them) to run; default: all selected")
    parser.add_argument("--verify", action="store_true",
                        help="compare repeated runs' metrics files with their records; run nothing")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every selected run with its state and command; run nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = ExperimentConfig.load(args.config)
        unknown = sorted(set(args.only or ()) - set(EXPERIMENTS))
        if unknown:
            raise ConfigError(f"--only {unknown}: unknown experiments; choose among {','.join(EXPERIMENTS)}.")
        runs = select_runs(plan_runs(config), config, args.only, args.target, args.seeds, args.runs)
    except ConfigError as error:
        print(f"experiments: error: {error}", file=sys.stderr)
        return 2
    if args.verify:
        return 1 if verify(runs, config) else 0
    return 1 if execute(runs, config, dry_run=args.dry_run) else 0


if __name__ == "__main__":
    sys.exit(main())
