"""The paper's experiments E1-E4 (docs: xcross-method.md) as `xcross` runs expanded from one JSON config, run in
order, resumable, each leaving one JSON record in the records folder.

The scale (backbone, users, learning rates; epochs, batches and negatives where the CLI's defaults should not hold) is
set once in the config, so every model of a table is trained and scored alike; every run of one seed is scored on the
same stored test candidate lists (same seed, same number of test users).
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
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR, DataError, load_domain
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.pipeline.references import BEST_REFERENCE
from modeling_xcross.pipeline.runs import METRICS_NAME

EXPERIMENTS = ("E1", "E2", "E3", "E4", "E5")
# Scale keys passed on to every training command when the config sets them (the CLI's defaults otherwise): the
# training length and batches before --patience, where they always stood, the others after --learning-rate. X-Cross
# runs also take `normalize_fusion_input` from the scale and `learning_rates.fusion`.
OPTIONAL_TRAINING_LENGTH = ("epochs", "batch_size", "train_negatives")
OPTIONAL_TRAINING_SCALE = ("scoring", "pooling", "train_positions", "temperature", "save_steps", "negatives")
# `train_users` that trains on every train user of a domain (no --max-train-users at 100%).
ALL_TRAIN_USERS = "all"
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
    scale: dict  # backbone, max_length, train_users (a count or "all"), val_users, test_users, ..., full_ranking
    learning_rates: dict[str, float]  # per model family: lora, xcross, head
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    # The seeds that run a fraction below 1, keyed by the fraction as text ({"0.1": [42]}); unnamed: every seed.
    fraction_seeds: dict[str, list[int]] = field(default_factory=dict)
    # One of `seeds`: the E1 source adapters are trained once, with this seed, and every seed's X-Cross reads them.
    # None: each seed trains its own sources.
    sources_seed: int | None = None
    # The X-Cross refine-step weights to run E2/E3 with, one set of runs each (tuned on validation MRR).
    xcross_refine: list[dict[str, float]] = field(default_factory=lambda: [dict(DEFAULT_REFINE)])
    data_dir: str = str(DEFAULT_DATA_DIR)
    runs_dir: str = "runs/experiments"
    records_dir: str = "research/results/records"

    REQUIRED_SCALE = ("backbone", "max_length", "train_users", "val_users", "test_users", "eval_batch_size",
                      "patience")
    OPTIONAL_SCALE = (*OPTIONAL_TRAINING_LENGTH, *OPTIONAL_TRAINING_SCALE, "normalize_fusion_input", "full_ranking")

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
        train_users = config.scale["train_users"]
        if train_users != ALL_TRAIN_USERS and (type(train_users) is not int or train_users < 1):
            raise ConfigError(f"{path}: scale.train_users must be a positive number of users or \"{ALL_TRAIN_USERS}\""
                              f", got {train_users!r}.")
        if config.sources_seed is not None and config.sources_seed not in config.seeds:
            raise ConfigError(f"{path}: sources_seed {config.sources_seed} must be one of seeds {config.seeds} (its E1 "
                              "runs are that seed's target LoRAs too); add it to seeds or drop sources_seed.")
        for key, seeds in config.fraction_seeds.items():
            try:
                fraction = float(key)
            except ValueError:
                fraction = None
            if fraction not in config.fractions or fraction == 1.0:
                raise ConfigError(f"{path}: fraction_seeds key {key!r} must be one of fractions {config.fractions} "
                                  "below 1.0, written as text (every seed runs 1.0, the E1/E2 runs).")
            if not seeds or not set(seeds) <= set(config.seeds):
                raise ConfigError(f"{path}: fraction_seeds[{key!r}] must be a non-empty list of seeds of {config.seeds}"
                                  f", got {seeds}.")
        return config

    @property
    def source_domains(self) -> list[str]:
        return sorted({source for sources in self.targets.values() for source in sources})

    def seeds_at(self, fraction: float) -> list[int]:
        """The seeds that train on `fraction` of the target train users: `fraction_seeds`' list, else every seed."""
        return next((seeds for key, seeds in self.fraction_seeds.items() if float(key) == fraction), self.seeds)


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


def scale_flags(scale: dict, keys: tuple[str, ...]) -> list[str]:
    """`--key value` for each of `keys` the scale sets, in the order of `keys`; the CLI's defaults for the others."""
    return [item for key in keys if key in scale for item in (f"--{key.replace('_', '-')}", str(scale[key]))]


def usable_train_users(config: ExperimentConfig) -> dict[str, int]:
    """Each target's train users that training may draw on (its usable ones but the `val_users` held out), which a
    fraction of "all" train users counts from; read only then, and once per target ({} otherwise)."""
    if config.scale["train_users"] != ALL_TRAIN_USERS or min(config.fractions) == 1.0:
        return {}
    counts = {}
    for target in config.targets:
        try:
            counts[target] = len(load_domain(config.data_dir, target).train) - config.scale["val_users"]
        except DataError as error:
            raise ConfigError(f"scale.train_users \"{ALL_TRAIN_USERS}\" with fractions below 1 counts each target's "
                              f"train users from data_dir: {error}") from error
        if counts[target] < 1:
            raise ConfigError(f"{target} has {counts[target] + config.scale['val_users']} usable train users, too "
                              f"few to hold out scale.val_users {config.scale['val_users']}; lower val_users.")
    return counts


def plan_runs(config: ExperimentConfig) -> list[Run]:
    """Every run of E1-E5 for every seed, E1 first (its adapters are the sources of the others). E5 is the simple
    references (`xcross baseline`): popularity at every fraction (it counts that fraction's train users), the
    untrained backbone's similarity, with the popularity prior (the untrained dual model) and a random order once;
    with `train_users` "all" also the best reference, which counts all train users, as the models at 100% then do.

    With `sources_seed`, the source adapters are planned once, first, as E1 runs of that seed; every seed's X-Cross
    and merged-sources runs read them, a seed's E1 runs are its target LoRAs, and the sources are scored zero-shot
    (E4) once (`xcross evaluate` writes into the adapter's folder, so one scoring per source and target)."""
    scale = config.scale
    evaluation = ["--data-dir", config.data_dir, "--max-eval-users", str(scale["test_users"]), "--val-users",
                  str(scale["val_users"]), "--eval-batch-size", str(scale["eval_batch_size"]), "--max-length",
                  str(scale["max_length"])]
    if scale.get("full_ranking"):  # every test user's true item ranked among all items of the target too
        evaluation.append("--full-ranking")
    domains = sorted({domain for target, sources in config.targets.items() for domain in (target, *sources)})
    available = usable_train_users(config)
    references = ("similarity", "similarity-popularity", "random")
    if scale["train_users"] == ALL_TRAIN_USERS:
        references = (BEST_REFERENCE, *references)

    def root(seed: int) -> Path:
        return Path(config.runs_dir) / f"seed{seed}"

    def adapter(domain: str, seed: int) -> str:
        return str(root(seed) / f"lora-{domain}")

    def percent(fraction: float) -> str:
        return "" if fraction == 1.0 else f"{round(fraction * 100)}pct"

    def max_train_users(domain: str, fraction: float) -> list[str]:
        """The --max-train-users of a run on `fraction` of the domain's train users; none for all of them."""
        if scale["train_users"] != ALL_TRAIN_USERS:
            users = scale["train_users"]
        elif fraction == 1.0:
            return []
        else:
            users = available[domain]
        return ["--max-train-users", str(max(1, round(fraction * users)))]

    def training(command: str, family: str, output: Path, seed: int, domain: str,
                 fraction: float = 1.0) -> tuple[list[str], str]:
        args = [command, *evaluation, "--output-dir", str(output), "--seed", str(seed), "--backbone",
                scale["backbone"], *max_train_users(domain, fraction), *scale_flags(scale, OPTIONAL_TRAINING_LENGTH),
                "--patience", str(scale["patience"]), "--learning-rate", str(config.learning_rates[family]),
                *scale_flags(scale, OPTIONAL_TRAINING_SCALE)]
        if family == "xcross" and "fusion" in config.learning_rates:
            args += ["--fusion-learning-rate", str(config.learning_rates["fusion"])]
        if family == "xcross" and "normalize_fusion_input" in scale:
            args.append("--normalize-fusion-input" if scale["normalize_fusion_input"] else
                        "--no-normalize-fusion-input")
        return args, str(output / METRICS_NAME)

    def lora(domain: str, seed: int, fraction: float = 1.0) -> Run:
        if fraction == 1.0:
            run_id, experiment, output = f"E1_lora_{domain}_seed{seed}", "E1", Path(adapter(domain, seed))
        else:
            run_id, experiment = f"E3_lora_{domain}_{percent(fraction)}_seed{seed}", "E3"
            output = root(seed) / f"lora-{domain}-{percent(fraction)}"
        args, metrics = training("train-adapter", "lora", output, seed, domain, fraction)
        return Run(run_id, experiment, "lora", domain, [], fraction, seed, [*args, "--domain", domain], metrics)

    def baseline(method: str, target: str, fraction: float, seed: int) -> Run:
        output = root(seed) / "-".join(filter(None, [f"{method}-{target}", percent(fraction)]))
        args = ["baseline", "--method", method, "--domain", target, "--output-dir", str(output), *evaluation,
                "--seed", str(seed), "--backbone", scale["backbone"], *max_train_users(target, fraction)]
        run_id = "_".join(filter(None, [f"E5_{method}_{target}", percent(fraction), f"seed{seed}"]))
        return Run(run_id, "E5", method, target, [], fraction, seed, args, str(output / METRICS_NAME))

    shared = config.sources_seed
    runs = [lora(domain, shared) for domain in config.source_domains] if shared is not None else []
    for seed in config.seeds:
        sources_seed = seed if shared is None else shared
        # A seed's own adapters: every domain's, or with shared sources its target LoRAs not planned above.
        own = domains if shared is None else [domain for domain in sorted(config.targets)
                                              if not (seed == shared and domain in config.source_domains)]
        runs += [lora(domain, seed) for domain in own]
        fractions = sorted(fraction for fraction in set(config.fractions) if seed in config.seeds_at(fraction))
        smaller = [fraction for fraction in fractions if fraction < 1.0]
        for target, sources in config.targets.items():
            source_dirs = [adapter(source, sources_seed) for source in sources]
            needs = [str(Path(source_dir) / METRICS_NAME) for source_dir in source_dirs]

            def xcross(refine: dict[str, float], fraction: float) -> Run:
                experiment = "E2" if fraction == 1.0 else "E3"
                output = root(seed) / "-".join(filter(None, [f"xcross-{target}{refine_suffix(refine, '-')}",
                                                             percent(fraction)]))
                args, metrics = training("train", "xcross", output, seed, target, fraction)
                args += ["--target", target, "--sources", *source_dirs, "--beta", f"{refine['beta']:g}", "--gamma",
                         f"{refine['gamma']:g}"]
                run_id = "_".join(filter(None, [f"{experiment}_xcross_{target}{refine_suffix(refine, '_')}",
                                                percent(fraction), f"seed{seed}"]))
                return Run(run_id, experiment, "xcross", target, sources, fraction, seed, args, metrics, needs,
                           refine=refine)

            runs += [xcross(refine, 1.0) for refine in config.xcross_refine]
            for fraction in smaller:
                runs += [xcross(refine, fraction) for refine in config.xcross_refine]
                runs.append(lora(target, seed, fraction))
            if seed == sources_seed:
                for source, source_dir, need in zip(sources, source_dirs, needs):
                    runs.append(Run(f"E4_zero-shot_{source}_on_{target}_seed{seed}", "E4", "zero-shot", target,
                                    [source], 1.0, seed, ["evaluate", "--model-dir", source_dir, "--domain", target,
                                                          *evaluation, "--seed", str(seed)],
                                    str(Path(source_dir) / f"eval_{target}_test" / METRICS_NAME), [need]))
            args, metrics = training("train-head", "head", root(seed) / f"head-{target}", seed, target)
            runs.append(Run(f"E4_head_{target}_seed{seed}", "E4", "head", target, [], 1.0, seed,
                            [*args, "--domain", target], metrics))
            args, metrics = training("train-head", "head", root(seed) / f"merged-sources-{target}", seed, target)
            runs.append(Run(f"E4_merged-sources_{target}_seed{seed}", "E4", "merged-sources", target, sources, 1.0,
                            seed, [*args, "--domain", target, "--merge-sources", *source_dirs], metrics, needs))
            runs.append(Run(f"E4_xlora_{target}_seed{seed}", "E4", "xlora", target, sources, 1.0, seed,
                            not_applicable=XLORA_NOT_APPLICABLE))
            runs += [baseline("popularity", target, fraction, seed) for fraction in fractions]
            runs += [baseline(method, target, 1.0, seed) for method in references]
    return runs


def select_runs(runs: list[Run], config: ExperimentConfig, only: list[str] | None = None,
                target: str | None = None, seeds: list[int] | None = None,
                run_ids: list[str] | None = None) -> list[Run]:
    """The runs of some experiments, one target (with the E1 adapters of its sources), some seeds (with the shared
    source adapters of `sources_seed`, which every seed reads), or some run ids (two runners given disjoint ids share
    a machine's cores without racing on a run)."""
    if target is not None and target not in config.targets:
        raise ConfigError(f"--target {target} is not a target of the config; its targets: {sorted(config.targets)}.")
    unknown = sorted(set(run_ids or ()) - {run.run_id for run in runs})
    if unknown:
        raise ConfigError(f"--runs {unknown}: not runs of the config; `--dry-run` lists them.")

    def wanted_source(run: Run) -> bool:
        """An E1 adapter that the selected X-Cross runs read: each seed's own, or with `sources_seed` that seed's."""
        sources = config.source_domains if target is None else config.targets[target]
        return run.experiment == "E1" and run.target in sources and config.sources_seed in (None, run.seed)

    return [run for run in runs
            if (not only or run.experiment in only)
            and (target is None or run.target == target or wanted_source(run))
            and (not seeds or run.seed in seeds or (config.sources_seed is not None and wanted_source(run)))
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
                  starting_test_mrr=metrics.get("starting_test", {}).get("mrr"),  # the untrained start, same lists
                  trainable_parameters=metrics.get("trainable_parameters", 0),  # zero-shot: nothing trained
                  wall_time_s=metrics.get("wall_time_s", wall_time_s), run_settings=metrics.get("settings"),
                  metrics_file=run.metrics_file,
                  **({"full_ranking": metrics["full_ranking"]} if "full_ranking" in metrics else {}),
                  # a best-reference run: which reference, with which settings, validation chose
                  **({"reference": metrics["best_reference"]["description"]} if "best_reference" in metrics else {}),
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
