"""Write research/results.md (tables, data-efficiency and domain-contribution plots, commands) from the records that
research/run_experiments.py wrote. Needs matplotlib (`pip install -e ".[experiments]"`).

    python -m research.report --config research/configs/tools.json

The domain-contribution plot of a target comes from its E2 X-Cross of the first seed (the refine setting with the
best validation MRR), run on --fusion-users test
prompts; its numbers are kept in research/results/fusion_<target>.json and reused when the model dir is gone.
The "Honest reading" section of an existing results.md is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from research.experiments import ConfigError, ExperimentConfig
from research.fusion_stats import fusion_contributions
from research.results_report import build_report, load_records


def fusion_for(records: list[dict], target: str, figures: Path, users: int) -> dict | None:
    """Fusion statistics of the target's first-seed X-Cross (of its settings, the best by validation MRR): computed
    from its model dir, else the stored JSON."""
    stored = figures / f"fusion_{target}.json"
    runs = sorted((record for record in records if record["experiment"] == "E2" and record["target"] == target
                   and record["status"] == "done"),
                  key=lambda record: (record["seed"], -(record.get("best_validation_mrr") or 0)))
    if runs and users and Path(runs[0]["run_settings"]["output_dir"]).is_dir():
        settings = runs[0]["run_settings"]
        stats = fusion_contributions(settings["output_dir"], settings["data_dir"], target, users, settings["seed"],
                                     settings["max_length"], settings["eval_batch_size"])
        stats["model_dir"] = settings["output_dir"]
        stored.write_text(json.dumps(stats, indent=2))
        return stats
    return json.loads(stored.read_text()) if stored.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the experiment config the records were made with")
    parser.add_argument("--output", type=Path, default=Path("research/results.md"),
                        help="the report; its plots go to results/ next to it; default: %(default)s")
    parser.add_argument("--fusion-users", type=int, default=64,
                        help="test users whose prompts feed the domain-contribution plot (0: reuse the stored "
                             "numbers only); default: %(default)s")
    args = parser.parse_args(argv)
    try:
        config = ExperimentConfig.load(args.config)
    except ConfigError as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    records = load_records(config.records_dir)
    if not records:
        print(f"report: error: no record in {config.records_dir}; run research/run_experiments.py first.", file=sys.stderr)
        return 2
    figures = args.output.parent / "results"
    figures.mkdir(parents=True, exist_ok=True)
    fusion = {target: stats for target in config.targets
              if (stats := fusion_for(records, target, figures, args.fusion_users)) is not None}
    build_report(config, args.config, records, args.output, fusion)
    print(f"[report] {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
