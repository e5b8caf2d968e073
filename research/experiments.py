"""The paper's experiments E1-E4 (docs: xcross-method.md) as `xcross` runs expanded from one JSON config, run in
order, resumable, each leaving one JSON record in the records folder.

The scale (backbone, users, epochs, learning rates...) is set once in the config, so every model of a table is
trained and scored alike; every run of one seed is scored on the same stored test candidate lists (same seed, same
number of test users).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from modeling_xcross.checkpoint import atomic_write
from modeling_xcross.errors import XCrossError
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.pipeline.runs import METRICS_NAME

EXPERIMENTS = ("E1", "E2", "E3", "E4", "E5")
# Scale keys passed on to every training command when the config sets them (the CLI's defaults otherwise); X-Cross
# runs also take `normalize_fusion_input` from the scale and `learning_rates.fusion`.
OPTIONAL_TRAINING_SCALE = ("scoring", "pooling", "train_positions", "temperature", "save_steps")
# Why PEFT's X-LoRA baseline is not run, checked by hand on peft 0.21.2 with a tiny BERT and two adapters.
XLORA_NOT_APPLICABLE = (
    "peft 0.21 XLoraModel cannot load adapters of a bare encoder or decoder: _load_adapter_into_lora_model "
    "(peft/tuners/xlora/model.py) rewrites every adapter key to 'model.model.<module path>', which matches only a "
    "base with an inner .model (a causal-LM wrapper); on our recommenders' bare base it raises 'Got unexpected keys! "
    "... unexpected_keys=[model.model.encoder.layer.0.attention.self.query.lora_A.weight, ...]'. Re-keying the "
    "adapter files cannot help (the loader strips any prefix first), and a causal-LM wrapper is not the model the "
    "other rows score.")


DEFAULT_REFINE = {"beta": 1.0, "gamma": 1.0}


def refine_suffix(refine: dict[str, float], separator: str) -> str:
    """How a run id or output dir names non-default refine weights ("" for beta = gamma = 1, as before they were
    configurable)."""
    if refine == DEFAULT_REFINE:
        return ""
    return f"{separator}beta{refine['beta']:g}{separator}gamma{refine['gamma']:g}"


class ConfigError(XCrossError):
    """An experiment config that cannot be expanded; the message names the field."""


@dataclass
class ExperimentConfig:
    targets: dict[str, list[str]]  # target domain -> its source domains
    seeds: list[int]
    scale: dict  # backbone, max_length, train_users, val_users, test_users, epochs, batch_size, ..., full_ranking
    learning_rates: dict[str, float]  # per model family: lora, xcross, head
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    # The X-Cross refine-step weights to run E2/E3 with, one set of runs each (tuned on validation MRR).
    xcross_refine: list[dict[str, float]] = field(default_factory=lambda: [dict(DEFAULT_REFINE)])
    data_dir: str = str(DEFAULT_DATA_DIR)
    runs_dir: str = "runs/experiments"
    records_dir: str = "research/results/records"

    REQUIRED_SCALE = ("backbone", "max_length", "train_users", "val_users", "test_users", "epochs", "batch_size",
                      "eval_batch_size", "train_negatives", "patience")
    OPTIONAL_SCALE = (*OPTIONAL_TRAINING_SCALE, "normalize_fusion_input", "full_ranking")

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        try:
            config = cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise ConfigError(f"{path}: not a readable experiment config ({error}); see "
                              "research/configs/tools.json for the fields.") from error
        missing = [key for key in cls.REQUIRED_SCALE if key not in config.scale]
        missing += [f"learning_rates.{key}" for key in ("lora", "xcross", "head") if key not in config.learning_rates]
        if missing:
            raise ConfigError(f"{path}: missing {missing}; see research/configs/tools.json.")
        unknown = sorted(set(config.scale) - set(cls.REQUIRED_SCALE) - set(cls.OPTIONAL_SCALE))
        if unknown:  # a misspelt optional key would otherwise be dropped without a word
            raise ConfigError(f"{path}: unknown scale keys {unknown}; the scale takes {list(cls.REQUIRED_SCALE)} "
                              f"and optionally {list(cls.OPTIONAL_SCALE)}.")
        if not config.xcross_refine or any(set(refine) != {"beta", "gamma"} for refine in config.xcross_refine):
            raise ConfigError(f"{path}: xcross_refine must be a non-empty list of {{\"beta\": b, \"gamma\": g}}, got "
                              f"{config.xcross_refine}.")
        if 1.0 not in config.fractions or any(not 0 < fraction <= 1 for fraction in config.fractions):
            raise ConfigError(f"{path}: fractions must lie in (0, 1] and include 1.0 (the E1/E2 runs), got "
                              f"{config.fractions}.")
        return config


@dataclass
class Run:
    run_id: str
    experiment: str
    model: str  # lora, xcross, head, merged-sources, zero-shot, xlora, popularity, similarity, similarity-popularity, random
    target: str
    sources: list[str]
    fraction: float
    seed: int
    args: list[str] = field(default_factory=list)  # the xcross command line, empty when not applicable
    metrics_file: str = ""
    needs: list[str] = field(default_factory=list)  # output dirs that must hold a finished run first
    not_applicable: str = ""
    refine: dict[str, float] = field(default_factory=dict)  # X-Cross runs: beta and gamma

    @property
    def command(self) -> str:
        return shlex.join(["xcross", *self.args]) if self.args else ""


def plan_runs(config: ExperimentConfig) -> list[Run]:
    """Every run of E1-E5 for every seed, E1 first (its adapters are the sources of the others). E5 is the simple
    references (`xcross baseline`): popularity at every fraction (it counts that fraction's train users), the
    untrained backbone's similarity, with the popularity prior (the untrained dual model) and a random order once."""
    scale = config.scale
    evaluation = ["--data-dir", config.data_dir, "--max-eval-users", str(scale["test_users"]), "--val-users",
                  str(scale["val_users"]), "--eval-batch-size", str(scale["eval_batch_size"]), "--max-length",
                  str(scale["max_length"])]
    if scale.get("full_ranking"):  # every test user's true item ranked among all items of the target too
        evaluation.append("--full-ranking")
    domains = sorted({domain for target, sources in config.targets.items() for domain in (target, *sources)})
    runs: list[Run] = []
    for seed in config.seeds:
        root = Path(config.runs_dir) / f"seed{seed}"

        def adapter(domain: str) -> str:
            return str(root / f"lora-{domain}")

        def training(command: str, family: str, output: Path, fraction: float = 1.0) -> tuple[list[str], str]:
            users = max(1, round(fraction * scale["train_users"]))
            args = [command, *evaluation, "--output-dir", str(output), "--seed", str(seed), "--backbone",
                    scale["backbone"], "--max-train-users", str(users), "--epochs", str(scale["epochs"]),
                    "--batch-size", str(scale["batch_size"]), "--train-negatives", str(scale["train_negatives"]),
                    "--patience", str(scale["patience"]), "--learning-rate", str(config.learning_rates[family])]
            for key in OPTIONAL_TRAINING_SCALE:
                if key in scale:
                    args += [f"--{key.replace('_', '-')}", str(scale[key])]
            if family == "xcross" and "fusion" in config.learning_rates:
                args += ["--fusion-learning-rate", str(config.learning_rates["fusion"])]
            if family == "xcross" and "normalize_fusion_input" in scale:
                args.append("--normalize-fusion-input" if scale["normalize_fusion_input"] else
                            "--no-normalize-fusion-input")
            return args, str(output / METRICS_NAME)

        def baseline(method: str, target: str, fraction: float) -> Run:
            percent = "" if fraction == 1.0 else f"{round(fraction * 100)}pct"
            output = root / "-".join(filter(None, [f"{method}-{target}", percent]))
            users = max(1, round(fraction * scale["train_users"]))
            args = ["baseline", "--method", method, "--domain", target, "--output-dir", str(output), *evaluation,
                    "--seed", str(seed), "--backbone", scale["backbone"], "--max-train-users", str(users)]
            run_id = "_".join(filter(None, [f"E5_{method}_{target}", percent, f"seed{seed}"]))
            return Run(run_id, "E5", method, target, [], fraction, seed, args, str(output / METRICS_NAME))

        for domain in domains:
            args, metrics = training("train-adapter", "lora", Path(adapter(domain)))
            runs.append(Run(f"E1_lora_{domain}_seed{seed}", "E1", "lora", domain, [], 1.0, seed,
                            [*args, "--domain", domain], metrics))
        for target, sources in config.targets.items():
            needs = [str(Path(adapter(source)) / METRICS_NAME) for source in sources]
            source_dirs = [adapter(source) for source in sources]

            def xcross(refine: dict[str, float], fraction: float) -> Run:
                experiment = "E2" if fraction == 1.0 else "E3"
                percent = "" if fraction == 1.0 else f"{round(fraction * 100)}pct"
                output = root / "-".join(filter(None, [f"xcross-{target}{refine_suffix(refine, '-')}", percent]))
                args, metrics = training("train", "xcross", output, fraction)
                args += ["--target", target, "--sources", *source_dirs, "--beta", f"{refine['beta']:g}", "--gamma",
                         f"{refine['gamma']:g}"]
                run_id = "_".join(filter(None, [f"{experiment}_xcross_{target}{refine_suffix(refine, '_')}", percent,
                                                f"seed{seed}"]))
                return Run(run_id, experiment, "xcross", target, sources, fraction, seed, args, metrics, needs,
                           refine=refine)

            runs += [xcross(refine, 1.0) for refine in config.xcross_refine]
            for fraction in sorted(set(config.fractions) - {1.0}):
                percent = round(fraction * 100)
                runs += [xcross(refine, fraction) for refine in config.xcross_refine]
                args, metrics = training("train-adapter", "lora", root / f"lora-{target}-{percent}pct", fraction)
                runs.append(Run(f"E3_lora_{target}_{percent}pct_seed{seed}", "E3", "lora", target, [], fraction,
                                seed, [*args, "--domain", target], metrics))
            for source in sources:
                runs.append(Run(f"E4_zero-shot_{source}_on_{target}_seed{seed}", "E4", "zero-shot", target, [source],
                                1.0, seed, ["evaluate", "--model-dir", adapter(source), "--domain", target,
                                            *evaluation, "--seed", str(seed)],
                                str(Path(adapter(source)) / f"eval_{target}_test" / METRICS_NAME),
                                [str(Path(adapter(source)) / METRICS_NAME)]))
            args, metrics = training("train-head", "head", root / f"head-{target}")
            runs.append(Run(f"E4_head_{target}_seed{seed}", "E4", "head", target, [], 1.0, seed,
                            [*args, "--domain", target], metrics))
            args, metrics = training("train-head", "head", root / f"merged-sources-{target}")
            runs.append(Run(f"E4_merged-sources_{target}_seed{seed}", "E4", "merged-sources", target, sources, 1.0,
                            seed, [*args, "--domain", target, "--merge-sources", *source_dirs], metrics, needs))
            runs.append(Run(f"E4_xlora_{target}_seed{seed}", "E4", "xlora", target, sources, 1.0, seed,
                            not_applicable=XLORA_NOT_APPLICABLE))
            runs += [baseline("popularity", target, fraction) for fraction in sorted(config.fractions)]
            runs += [baseline(method, target, 1.0) for method in ("similarity", "similarity-popularity", "random")]
    return runs


def select_runs(runs: list[Run], config: ExperimentConfig, only: list[str] | None = None,
                target: str | None = None, seeds: list[int] | None = None,
                run_ids: list[str] | None = None) -> list[Run]:
    """The runs of some experiments, one target (with the E1 adapters of its sources), some seeds, or some run ids
    (two runners given disjoint ids share a machine's cores without racing on a run)."""
    if target is not None and target not in config.targets:
        raise ConfigError(f"--target {target} is not a target of the config; its targets: {sorted(config.targets)}.")
    unknown = sorted(set(run_ids or ()) - {run.run_id for run in runs})
    if unknown:
        raise ConfigError(f"--runs {unknown}: not runs of the config; `--dry-run` lists them.")
    wanted = {target, *config.targets[target]} if target else None
    return [run for run in runs
            if (not only or run.experiment in only)
            and (wanted is None or run.target == target or (run.experiment == "E1" and run.target in wanted))
            and (not seeds or run.seed in seeds)
            and (not run_ids or run.run_id in run_ids)]


def record_path(records_dir: str | Path, run: Run) -> Path:
    return Path(records_dir) / f"{run.run_id}.json"


def make_record(run: Run, config: ExperimentConfig, wall_time_s: float | None) -> dict:
    """The record of a finished (or not applicable) run: what it is, its metrics and how it was run. The wall time
    is the run's own (its metrics file), else the runner's."""
    record = {key: value for key, value in asdict(run).items() if key not in ("args", "needs", "metrics_file")}
    record.update(command=run.command, scale=config.scale, learning_rates=config.learning_rates,
                  status="not applicable" if run.not_applicable else "done")
    if run.not_applicable:
        return record
    metrics = json.loads(Path(run.metrics_file).read_text())
    record.update(metrics={key: metrics[key] for key in METRIC_KEYS}, num_test_users=metrics["num_users"],
                  best_validation_mrr=metrics.get("best_validation_mrr"),
                  starting_validation_mrr=metrics.get("starting_validation_mrr"),
                  kept_starting_point=metrics.get("kept_starting_point"),
                  trainable_parameters=metrics.get("trainable_parameters", 0),  # zero-shot: nothing trained
                  wall_time_s=metrics.get("wall_time_s", wall_time_s), run_settings=metrics.get("settings"),
                  metrics_file=run.metrics_file,
                  **({"full_ranking": metrics["full_ranking"]} if "full_ranking" in metrics else {}),
                  machine=machine_facts())
    return record


def machine_facts() -> dict:
    """What a record's run had to work with: CPU cores, threads per run and the GPU, when there is one."""
    facts = {"cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if torch.cuda.is_available():
        facts["accelerator"] = torch.cuda.get_device_name(0)
    return facts


def verify(runs: list[Run], config: ExperimentConfig) -> int:
    """Compare the metrics of repeated runs (a record, and the run's metrics file written again by its command)
    with their records. Returns the number of runs whose metrics differ."""
    differing = 0
    for run in runs:
        path = record_path(config.records_dir, run)
        if run.not_applicable or not path.is_file() or not Path(run.metrics_file).is_file():
            continue
        recorded = json.loads(path.read_text())["metrics"]
        repeated = json.loads(Path(run.metrics_file).read_text())
        gaps = {key: abs(repeated[key] - recorded[key]) for key in METRIC_KEYS}
        if all(math.isclose(repeated[key], recorded[key], rel_tol=0, abs_tol=1e-9) for key in METRIC_KEYS):
            print(f"[same]    {run.run_id}: its metrics file equals its record")
        else:
            differing += 1
            print(f"[differs] {run.run_id}: |repeated - recorded| = "
                  + ", ".join(f"{key} {gap:.4g}" for key, gap in gaps.items()))
    return differing


def launch(args: list[str]) -> int:
    """One `xcross` command in its own process (each run frees its memory; a crash stops only that run)."""
    return subprocess.run([sys.executable, "-m", "modeling_xcross.pipeline.cli", *args]).returncode


def execute(runs: list[Run], config: ExperimentConfig, dry_run: bool = False, launcher=launch) -> int:
    """Run what has no record yet, in order; a run whose output dir holds a partial run resumes it (the pipeline
    does). The wall time is that of the last invocation. Returns the number of runs that failed or were blocked."""
    problems = 0
    for run in runs:
        path = record_path(config.records_dir, run)
        if path.is_file():
            print(f"[done]    {run.run_id}")
            continue
        missing = [need for need in run.needs if not Path(need).is_file()]
        if dry_run:
            print(f"[todo]    {run.run_id}: {run.command or 'not applicable'}")
            continue
        if missing:
            print(f"[blocked] {run.run_id}: needs {missing}; run its E1 source adapters first (--only E1).")
            problems += 1
            continue
        started = time.time()
        if run.args and not Path(run.metrics_file).is_file():  # a finished run whose record was not written
            print(f"[run]     {run.run_id}: {run.command}", flush=True)
            if launcher(run.args) != 0:
                print(f"[failed]  {run.run_id}: the command above failed; rerunning resumes it.")
                problems += 1
                continue
        record = make_record(run, config, round(time.time() - started, 1) if run.args else None)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda temporary: temporary.write_text(json.dumps(record, indent=2)))
        print(f"[record]  {path}")
    return problems
