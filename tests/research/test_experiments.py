"""The experiment runner (research/run_experiments.py) and report builder (research/report.py): the runs a config
expands to, resumption from records, real tiny runs through the pipeline, and the report from records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling_xcross.pipeline.cli import main as xcross
from research.experiments import ConfigError, ExperimentConfig, execute, plan_runs, record_path, \
    select_runs, verify
from research.fusion_stats import fusion_contributions
from modeling_xcross.pipeline.metrics import METRIC_KEYS


def _config(tmp_path: Path, data_dir="data", backbone="tiny", **overrides) -> ExperimentConfig:
    fields = dict(targets={"Tools": ["Toys", "Sports"]}, seeds=[0], fractions=[0.5, 1.0], data_dir=str(data_dir),
                  scale=dict(backbone=str(backbone), max_length=48, train_users=16, val_users=4, test_users=6,
                             epochs=1, batch_size=4, eval_batch_size=3, train_negatives=3, patience=2),
                  learning_rates=dict(lora=5e-4, xcross=1e-3, head=1e-3), runs_dir=str(tmp_path / "runs"),
                  records_dir=str(tmp_path / "records"))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**fields, **overrides}))
    return ExperimentConfig.load(path)


def _finish(args: list[str], **metrics) -> int:
    """A launcher that runs nothing: it leaves the metrics file of a finished run in the command's --output-dir."""
    output = Path(args[args.index("--output-dir") + 1])
    output.mkdir(parents=True)
    (output / "metrics.json").write_text(json.dumps({**dict.fromkeys(METRIC_KEYS, 0.5), "num_users": 6,
                                                     "trainable_parameters": 10, "settings": {}, **metrics}))
    return 0


def _record(model: str, mrr: float, seed: int, fraction: float = 1.0, **extra) -> dict:
    """A finished run's record on Tools as the report reads it."""
    return {"model": model, "target": "Tools", "sources": ["Toys", "Sports"], "fraction": fraction, "seed": seed,
            "status": "done", "metrics": dict.fromkeys(METRIC_KEYS, mrr), "trainable_parameters": 0, **extra}


def test_config_expands_to_e1_to_e5_for_every_seed(tmp_path):
    config = _config(tmp_path, seeds=[1, 2])
    runs = {run.run_id: run for run in plan_runs(config)}
    per_seed = ["E1_lora_Sports", "E1_lora_Tools", "E1_lora_Toys", "E2_xcross_Tools", "E3_xcross_Tools_50pct",
                "E3_lora_Tools_50pct", "E4_zero-shot_Toys_on_Tools", "E4_zero-shot_Sports_on_Tools", "E4_head_Tools",
                "E4_merged-sources_Tools", "E4_xlora_Tools", "E5_popularity_Tools_50pct", "E5_popularity_Tools",
                "E5_similarity_Tools", "E5_similarity-popularity_Tools", "E5_random_Tools"]
    assert list(runs) == [f"{name}_seed{seed}" for seed in (1, 2) for name in per_seed]
    # Popularity counts the train users its fraction gives the models, on the models' test lists.
    popularity = runs["E5_popularity_Tools_50pct_seed1"].args
    assert popularity[popularity.index("--max-train-users") + 1] == "8" and popularity[0] == "baseline"
    half = runs["E3_xcross_Tools_50pct_seed1"].args
    assert half[half.index("--max-train-users") + 1] == "8" and half[half.index("--seed") + 1] == "1"
    merged = runs["E4_merged-sources_Tools_seed2"].args
    assert merged[merged.index("--merge-sources") + 1:] == [str(tmp_path / "runs/seed2/lora-Toys"),
                                                            str(tmp_path / "runs/seed2/lora-Sports")]
    assert "Got unexpected keys" in runs["E4_xlora_Tools_seed1"].not_applicable
    # Every scored run of a seed sees the same test users: same seed and --max-eval-users.
    for run in runs.values():
        if run.args:
            assert run.args[run.args.index("--max-eval-users") + 1] == "6"


def test_each_refine_setting_gets_its_own_xcross_runs(tmp_path):
    config = _config(tmp_path, xcross_refine=[{"beta": 1.0, "gamma": 1.0}, {"beta": 0.1, "gamma": 0.05}])
    runs = {run.run_id: run for run in plan_runs(config) if run.model == "xcross"}
    assert list(runs) == ["E2_xcross_Tools_seed0", "E2_xcross_Tools_beta0.1_gamma0.05_seed0",
                          "E3_xcross_Tools_50pct_seed0", "E3_xcross_Tools_beta0.1_gamma0.05_50pct_seed0"]
    tuned = runs["E3_xcross_Tools_beta0.1_gamma0.05_50pct_seed0"]
    assert tuned.args[tuned.args.index("--beta") + 1:tuned.args.index("--beta") + 4] == ["0.1", "--gamma", "0.05"]
    assert tuned.args[tuned.args.index("--output-dir") + 1] == str(
        tmp_path / "runs/seed0/xcross-Tools-beta0.1-gamma0.05-50pct")
    assert tuned.refine == {"beta": 0.1, "gamma": 0.05}
    with pytest.raises(ConfigError, match="xcross_refine"):
        _config(tmp_path, xcross_refine=[{"beta": 0.1}])


def test_optional_scale_keys_reach_every_training_command_only(tmp_path):
    config = _config(tmp_path)
    config.scale.update(save_steps=128, train_positions="all")
    for run in plan_runs(config):
        if not run.args:
            continue
        training = run.args[0] in ("train", "train-adapter", "train-head")
        assert ("--save-steps" in run.args) == training, run.run_id
        if training:
            assert run.args[run.args.index("--save-steps") + 1] == "128"
            assert run.args[run.args.index("--train-positions") + 1] == "all"


def test_old_scale_keeps_its_command_lines(tmp_path):
    """The training length and batches stand where they always did, so earlier grids' commands still match."""
    run = {run.run_id: run for run in plan_runs(_config(tmp_path, seeds=[1]))}["E3_lora_Tools_50pct_seed1"]
    assert run.args == ["train-adapter", "--data-dir", "data", "--max-eval-users", "6", "--val-users", "4",
                        "--eval-batch-size", "3", "--max-length", "48", "--output-dir",
                        str(tmp_path / "runs/seed1/lora-Tools-50pct"), "--seed", "1", "--backbone", "tiny",
                        "--max-train-users", "8", "--epochs", "1", "--batch-size", "4", "--train-negatives", "3",
                        "--patience", "2", "--learning-rate", "0.0005", "--domain", "Tools"]


FULL_SCALE = dict(backbone="tiny", max_length=48, train_users="all", val_users=4, test_users=6, eval_batch_size=3,
                  patience=2)


def test_all_train_users_and_the_cli_defaults(tmp_path, data_dir):
    config = _config(tmp_path, data_dir, scale={**FULL_SCALE, "negatives": "in-batch-logq"})
    runs = {run.run_id: run for run in plan_runs(config)}
    # The synthetic Tools has 40 train users: 36 after the 4 validation users, 18 of them at 50%.
    for run_id in ("E3_xcross_Tools_50pct_seed0", "E3_lora_Tools_50pct_seed0", "E5_popularity_Tools_50pct_seed0"):
        assert runs[run_id].args[runs[run_id].args.index("--max-train-users") + 1] == "18", run_id
    for run in runs.values():
        assert ("--max-train-users" in run.args) == (run.fraction < 1), run.run_id
        assert not {"--epochs", "--batch-size", "--train-negatives"} & set(run.args), run.run_id
        training = run.args[:1] in (["train"], ["train-adapter"], ["train-head"])
        assert training == ("--negatives" in run.args), run.run_id
        if training:
            assert run.args[run.args.index("--negatives") + 1] == "in-batch-logq"
    best = runs["E5_best-reference_Tools_seed0"]
    assert best.args[:3] == ["baseline", "--method", "best-reference"] and best.fraction == 1.0
    assert best.metrics_file == str(tmp_path / "runs/seed0/best-reference-Tools/metrics.json")
    assert not any(run.model == "best-reference" for run in plan_runs(_config(tmp_path))), \
        "a fixed number of train users gets no best reference (it counts all of them)"
    with pytest.raises(ConfigError, match='train_users "all" .*nowhere/Tools'):
        plan_runs(_config(tmp_path, tmp_path / "nowhere", scale=FULL_SCALE))
    for wrong in ("some", 0, True):
        with pytest.raises(ConfigError, match=r"scale.train_users must be a positive number of users or \"all\""):
            _config(tmp_path, scale={**FULL_SCALE, "train_users": wrong})


def test_shared_sources_are_trained_once_and_read_by_every_seed(tmp_path):
    config = _config(tmp_path, seeds=[42, 43], sources_seed=42,
                     targets={"Tools": ["Toys", "Sports"], "Toys": ["Sports", "Tools"]})
    runs = plan_runs(config)
    by_id = {run.run_id: run for run in runs}
    assert [run.run_id for run in runs if run.experiment == "E1"] == [
        "E1_lora_Sports_seed42", "E1_lora_Tools_seed42", "E1_lora_Toys_seed42",  # the sources, and seed 42's targets
        "E1_lora_Tools_seed43", "E1_lora_Toys_seed43"]  # seed 43's target LoRAs
    shared = [str(tmp_path / "runs/seed42/lora-Toys"), str(tmp_path / "runs/seed42/lora-Sports")]
    for run_id in ("E2_xcross_Tools_seed43", "E3_xcross_Tools_50pct_seed43"):
        args = by_id[run_id].args
        assert args[args.index("--sources") + 1:args.index("--beta")] == shared
        assert by_id[run_id].needs == [f"{source}/metrics.json" for source in shared]
        assert args[args.index("--output-dir") + 1].startswith(str(tmp_path / "runs/seed43/xcross-Tools"))
    merged = by_id["E4_merged-sources_Tools_seed43"].args
    assert merged[merged.index("--merge-sources") + 1:] == shared
    # `xcross evaluate` writes into the adapter's folder: one zero-shot scoring per source and target.
    assert {run.seed for run in runs if run.model == "zero-shot"} == {42}
    outputs = [run.metrics_file for run in runs if run.args]
    assert len(set(outputs)) == len(outputs) and len(set(by_id)) == len(runs)
    assert [run.run_id for run in select_runs(runs, config, ["E1", "E2"], "Tools", [43])] == [
        "E1_lora_Sports_seed42", "E1_lora_Toys_seed42", "E1_lora_Tools_seed43", "E2_xcross_Tools_seed43"]
    assert [run.run_id for run in select_runs(runs, config, ["E1"], seeds=[43])] == [
        "E1_lora_Sports_seed42", "E1_lora_Tools_seed42", "E1_lora_Toys_seed42", "E1_lora_Tools_seed43",
        "E1_lora_Toys_seed43"]
    with pytest.raises(ConfigError, match="sources_seed 7 must be one of seeds"):
        _config(tmp_path, sources_seed=7)


def test_fraction_seeds_name_the_seeds_of_a_smaller_fraction(tmp_path):
    config = _config(tmp_path, seeds=[42, 43], fractions=[0.1, 0.25, 1.0], fraction_seeds={"0.1": [42]})
    planned = {(run.model, run.fraction, run.seed) for run in plan_runs(config) if run.fraction < 1}
    assert planned == {(model, fraction, seed) for model in ("xcross", "lora", "popularity")
                       for fraction, seed in ((0.1, 42), (0.25, 42), (0.25, 43))}
    assert {run.seed for run in plan_runs(config) if run.experiment == "E2"} == {42, 43}


@pytest.mark.parametrize("fraction_seeds, message", [
    ({"0.5": [42]}, "key '0.5' must be one of fractions"), ({"1.0": [42]}, "key '1.0' must be one of fractions"),
    ({"ten": [42]}, "key 'ten' must be one of fractions"), ({"0.1": [7]}, r"fraction_seeds\['0.1'\] must be"),
    ({"0.1": []}, r"fraction_seeds\['0.1'\] must be a non-empty list")])
def test_wrong_fraction_seeds_are_refused(tmp_path, fraction_seeds, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, seeds=[42], fractions=[0.1, 1.0], fraction_seeds=fraction_seeds)


def test_a_best_reference_record_names_the_chosen_reference(tmp_path):
    config = _config(tmp_path, scale=FULL_SCALE, fractions=[1.0])
    run = next(run for run in plan_runs(config) if run.model == "best-reference")
    chosen = {"description": "popularity, half-life 0.25", "test": {}}
    assert execute([run], config, launcher=lambda args: _finish(args, best_reference=chosen)) == 0
    assert json.loads(record_path(config.records_dir, run).read_text())["reference"] == "popularity, half-life 0.25"


def test_selection_by_experiment_target_and_seed(tmp_path):
    config = _config(tmp_path, seeds=[1, 2], targets={"Tools": ["Toys", "Sports"], "Toys": ["Sports", "Tools"]})
    runs = plan_runs(config)
    assert [run.run_id for run in select_runs(runs, config, ["E1"], "Tools", [2])] == [
        "E1_lora_Sports_seed2", "E1_lora_Tools_seed2", "E1_lora_Toys_seed2"]
    assert {run.target for run in select_runs(runs, config, ["E2", "E4"], "Toys")} == {"Toys"}
    with pytest.raises(ConfigError, match="Garden"):
        select_runs(runs, config, None, "Garden")
    lane = ["E4_head_Toys_seed1", "E1_lora_Tools_seed2"]
    assert [run.run_id for run in select_runs(runs, config, run_ids=lane)] == ["E4_head_Toys_seed1",
                                                                                "E1_lora_Tools_seed2"]  # plan order
    with pytest.raises(ConfigError, match="E9_magic"):
        select_runs(runs, config, run_ids=["E9_magic"])


def test_config_missing_a_scale_field_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="train_users"):
        _config(tmp_path, scale={"backbone": "x"})


def test_config_with_a_misspelt_scale_key_is_refused(tmp_path):
    scale = dict(_config(tmp_path).scale, save_step=128)
    with pytest.raises(ConfigError, match=r"unknown scale keys \['save_step'\].*'save_steps'"):
        _config(tmp_path, scale=scale)


def test_dry_run_runs_nothing_and_recorded_runs_are_skipped(tmp_path, capsys):
    config = _config(tmp_path)
    runs = select_runs(plan_runs(config), config, ["E1"])
    launched = []
    assert execute(runs, config, dry_run=True, launcher=launched.append) == 0 and not launched
    assert "[todo]    E1_lora_Toys_seed0: xcross train-adapter" in capsys.readouterr().out

    def fake_launch(args):
        launched.append(args)
        return _finish(args)

    record_path(config.records_dir, runs[0]).parent.mkdir(parents=True)
    record_path(config.records_dir, runs[0]).write_text("{}")
    assert execute(runs, config, launcher=fake_launch) == 0
    assert [args[args.index("--domain") + 1] for args in launched] == ["Tools", "Toys"]
    record = json.loads(record_path(config.records_dir, runs[2]).read_text())
    assert record["experiment"] == "E1" and record["metrics"]["mrr"] == 0.5 and record["command"].startswith("xcross")
    assert record["machine"]["cpus"] >= 1
    assert execute(runs, config, launcher=fake_launch) == 0 and len(launched) == 2  # all recorded: nothing runs


def test_verify_tells_a_repeated_run_that_differs_from_its_record(tmp_path, capsys):
    config = _config(tmp_path)
    runs = select_runs(plan_runs(config), config, ["E1"])
    for run, mrr in zip(runs, (0.25, 0.5)):  # Sports repeats its record exactly, Tools does not, Toys has no rerun
        Path(run.metrics_file).parent.mkdir(parents=True)
        Path(run.metrics_file).write_text(json.dumps({**dict.fromkeys(METRIC_KEYS, 0.25), "num_users": 6}))
        record_path(config.records_dir, run).parent.mkdir(parents=True, exist_ok=True)
        record_path(config.records_dir, run).write_text(json.dumps({"metrics": dict.fromkeys(METRIC_KEYS, mrr)}))
    assert verify(runs, config) == 1
    out = capsys.readouterr().out
    assert "[same]    E1_lora_Sports_seed0" in out and "[differs] E1_lora_Tools_seed0: |repeated - recorded| = " \
        "hit@1 0.25" in out and "Toys" not in out


def test_blocked_run_names_the_missing_adapter(tmp_path, capsys):
    config = _config(tmp_path)
    assert execute(select_runs(plan_runs(config), config, ["E2"]), config, launcher=lambda args: 0) == 1
    assert "lora-Toys" in capsys.readouterr().out


@pytest.fixture(scope="module")
def finished(data_dir, tiny_backbone, tmp_path_factory):
    """E1, E2 and E4 of one seed run for real through the pipeline (in process) on the tiny backbone."""
    config = _config(tmp_path_factory.mktemp("experiments"), data_dir, tiny_backbone)
    assert execute(select_runs(plan_runs(config), config, ["E1", "E2", "E4"]), config, launcher=xcross) == 0
    return config


def test_real_runs_leave_one_record_each_on_the_same_test_lists(finished):
    records = {path.stem: json.loads(path.read_text()) for path in Path(finished.records_dir).glob("*.json")}
    assert len(records) == 9 and records["E4_xlora_Tools_seed0"]["status"] == "not applicable"
    done = [record for record in records.values() if record["status"] == "done"]
    assert all(record["num_test_users"] == 6 and set(record["metrics"]) == set(METRIC_KEYS) for record in done)
    assert records["E4_zero-shot_Toys_on_Tools_seed0"]["trainable_parameters"] == 0
    assert records["E2_xcross_Tools_seed0"]["trainable_parameters"] > records["E4_head_Tools_seed0"][
        "trainable_parameters"] > 0
    lists = {json.loads(path.read_text())["lists"].__repr__()
             for path in Path(finished.runs_dir).rglob("candidates_test_6users_seed0.json")
             if "Tools" in path.parent.name}
    assert len(lists) == 1, "every Tools model is scored on the same candidate lists"


def test_fusion_contributions_of_a_trained_xcross(finished, data_dir):
    stats = fusion_contributions(Path(finished.runs_dir) / "seed0" / "xcross-Tools", data_dir, "Tools", 3, 0, 48)
    assert stats["pairs"] == ["lora-Toys->lora-Sports", "lora-Sports->lora-Toys"]
    assert len(stats["scale"]) == 3 and all(len(layer) == 2 for layer in stats["interaction"])
    assert stats["num_users"] == 3 and stats["num_tokens"] > 0


def test_report_builds_tables_and_plots_from_records(finished, tmp_path):
    pytest.importorskip("matplotlib", reason="the report's plots need matplotlib (pip install -e '.[experiments]')")
    from research.results_report import HONEST_READING, build_report, load_records

    records = load_records(finished.records_dir)
    for fraction, mrr in ((0.5, 0.2), (1.0, 0.3)):  # a synthetic second seed, and a 50% point
        records.append({**records[0], "experiment": "E3", "model": "xcross", "target": "Tools", "fraction": fraction,
                        "sources": ["Toys", "Sports"],
                        "seed": 1, "status": "done", "metrics": dict.fromkeys(METRIC_KEYS, mrr)})
    fusion = {"Tools": {"pairs": ["a->b", "b->a"], "scale": [[0.1, 0.2]] * 3, "interaction": [[0.3, 0.0]] * 3,
                        "num_users": 3, "num_tokens": 40, "model_dir": "runs/x"}}
    output = tmp_path / "results.md"
    text = build_report(finished, "config.json", records, output, fusion)
    assert "| X-Cross (Toys+Sports; β=1, γ=1) | 2 |" in text and "PEFT X-LoRA (Toys+Sports) | – |" in text
    assert "± " in text and "| test_users | 6 |" in text and "xcross train-head" in text
    assert (tmp_path / "results" / "data_efficiency_Tools.png").stat().st_size > 0
    assert (tmp_path / "results" / "fusion_Tools.png").stat().st_size > 0
    output.write_text(output.read_text().replace(text.split(HONEST_READING)[1], "\n\nMy reading.\n"))
    assert build_report(finished, "config.json", records, output, fusion).endswith("My reading.\n")


def test_full_ranking_goes_from_the_scale_to_the_records_and_the_report(tmp_path):
    from research.results_report import full_ranking_table

    config = _config(tmp_path, scale={**_config(tmp_path).scale, "full_ranking": True})
    runs = plan_runs(config)
    assert all("--full-ranking" in run.args for run in runs if run.args)
    ranking = {"recall@10": 0.5, "ndcg@10": 0.25, "mrr": 0.2, "users": 6}
    run = select_runs(runs, config, ["E1"])[0]
    assert execute([run], config, launcher=lambda args: _finish(args, full_ranking=ranking)) == 0
    record = json.loads(record_path(config.records_dir, run).read_text())
    assert record["full_ranking"] == ranking
    # Two models: sampled MRR puts LoRA first, full ranking popularity.
    rows = [{**record, "model": "lora", "target": "Tools", "seed": seed, "metrics": dict.fromkeys(METRIC_KEYS, 0.5),
             "full_ranking": {**ranking, "mrr": 0.1 + seed / 100}} for seed in (0, 1)]
    rows.append({**record, "model": "popularity", "target": "Tools", "metrics": dict.fromkeys(METRIC_KEYS, 0.3),
                 "full_ranking": {**ranking, "mrr": 0.2}})
    sampled_only = {key: value for key, value in record.items() if key != "full_ranking"}
    rows.append({**sampled_only, "model": "random", "target": "Tools", "metrics": dict.fromkeys(METRIC_KEYS, 0.1)})
    table = full_ranking_table(rows, "Tools")
    assert "| LoRA on Tools (E1) | 2 | 6 | 0.5000 ± 0.0000 | 0.2500 ± 0.0000 | 0.1050 ± 0.0071 |" in table
    assert "Random" not in table, "a record without full ranking gets no row"
    assert table.endswith("sampled LoRA on Tools (E1) > Popularity (E5); full ranking Popularity (E5) > LoRA on "
                          "Tools (E1).")
    assert full_ranking_table(rows[3:], "Tools") is None


def test_bars_and_training_gains_are_read_from_the_records():
    from research.results_report import bars_table, training_gain_table

    record = _record
    records = [record("xcross", 0.30, 0, starting_validation_mrr=0.25, best_validation_mrr=0.27,
                      kept_starting_point=False, starting_test_mrr=0.28),
               record("xcross", 0.32, 1, starting_validation_mrr=0.25, best_validation_mrr=0.24,
                      kept_starting_point=True, starting_test_mrr=0.32),
               record("xcross", 0.24, 0, 0.25), record("lora", 0.26, 0), record("lora", 0.28, 1),
               record("popularity", 0.20, 0), record("similarity", 0.29, 0), record("similarity", 0.27, 1)]
    bars = bars_table(records, ["Tools", "Sports"], {"beta": 1.0, "gamma": 1.0})
    # X-Cross 0.31; the better reference is similarity (0.28): +0.03 clears the bar; LoRA 0.27; 25%: 0.24 on seed 0
    # alone, against LoRA's 0.26 on that seed.
    assert ("| Tools | 2 | 0.3100 | similarity 0.2800 | +0.0300 yes | 0.2700 | +0.0400 yes | 0.2400 (1 seed) | "
            "-0.0200 **no** |") in bars
    assert "Sports" not in bars, "a target without records gets no row"
    gains = training_gain_table(records, "Tools")
    assert "| X-Cross (Toys+Sports; β=1, γ=1) | 2 | 0.2500 | 0.2550 | +0.0050 | 0.3000 | 0.3100 | 1 of 2 |" in gains
    del records[0]["starting_test_mrr"]  # a record from before runs scored their start on test
    assert "| X-Cross (Toys+Sports; β=1, γ=1) | 2 | 0.2500 | 0.2550 | +0.0050 | – | – | 1 of 2 |" in \
        training_gain_table(records, "Tools")
    assert "LoRA" not in gains, "runs without a recorded start get no row"
    assert bars_table(records[3:], ["Tools"], {"beta": 1.0, "gamma": 1.0}) is None


def test_bars_pair_the_seeds_of_a_grid_still_running():
    from research.results_report import bars_table

    # Seed 43 has finished target LoRA and the reference but not X-Cross: the row reads seed 42 alone.
    records = [_record("xcross", 0.30, 42), _record("lora", 0.29, 42), _record("lora", 0.35, 43),
               _record("best-reference", 0.27, 42), _record("best-reference", 0.20, 43)]
    bars = bars_table(records, ["Tools"], {"beta": 1.0, "gamma": 1.0})
    assert "| Tools | 1 | 0.3000 | best-reference 0.2700 | +0.0300 yes | 0.2900 | +0.0100 yes | – | – |" in bars
    records.append(_record("xcross", 0.31, 43))
    assert "| Tools | 2 | 0.3050 | best-reference 0.2350 | +0.0700 yes | 0.3200 | -0.0150 **no** |" in \
        bars_table(records, ["Tools"], {"beta": 1.0, "gamma": 1.0})
    only_other_seeds = [_record("xcross", 0.30, 44), _record("lora", 0.29, 42), _record("best-reference", 0.27, 42)]
    assert bars_table(only_other_seeds, ["Tools"], {"beta": 1.0, "gamma": 1.0}) is None


def test_bars_choose_between_simple_references_on_the_seeds_both_ran():
    from research.results_report import bars_table

    # Popularity's mean over its two seeds (0.30) beats the similarity's one seed (0.25), but on seed 42, the only
    # seed both ran, the similarity is the stronger reference.
    records = [_record("xcross", 0.31, 42), _record("lora", 0.29, 42), _record("xcross", 0.45, 43),
               _record("lora", 0.44, 43), _record("popularity", 0.20, 42), _record("popularity", 0.40, 43),
               _record("similarity", 0.25, 42)]
    assert "| Tools | 1 | 0.3100 | similarity 0.2500 | +0.0600 yes | 0.2900 |" in \
        bars_table(records, ["Tools"], {"beta": 1.0, "gamma": 1.0})
    # With no seed in common, the reference that ran on more of the trained models' seeds is kept.
    records[-1]["seed"] = 44
    assert "| Tools | 2 | 0.3800 | popularity 0.3000 | +0.0800 yes |" in \
        bars_table(records, ["Tools"], {"beta": 1.0, "gamma": 1.0})


def _full_scale_records() -> list[dict]:
    """Tools at the full-scale grid's fractions: seeds 42-44 at 25% and 100%, seed 42 alone at 10% and 50%."""
    mrrs = {"lora": {0.1: [0.20], 0.25: [0.25, 0.26, 0.27], 0.5: [0.28], 1.0: [0.30, 0.32, 0.34]},
            "xcross": {0.1: [0.22], 0.25: [0.27, 0.28, 0.29], 0.5: [0.30], 1.0: [0.31, 0.33, 0.35]},
            "best-reference": {1.0: [0.26, 0.27, 0.28]}, "similarity": {1.0: [0.40]}}
    return [_record(model, mrr, seed, fraction) for model, curve in mrrs.items()
            for fraction, seed_mrrs in curve.items() for seed, mrr in zip((42, 43, 44), seed_mrrs)]


def test_bars_compare_to_the_best_reference_where_it_ran():
    from research.results_report import bars_table, target_table

    records = _full_scale_records()
    bars = bars_table(records, ["Tools"], {"beta": 1.0, "gamma": 1.0})
    # X-Cross 0.33 and LoRA 0.32 against the best reference 0.27 (not the untrained similarity's 0.40); at 25%
    # X-Cross 0.28 against LoRA 0.26 there and 0.32 on all.
    assert ("| Tools | 3 | 0.3300 | best-reference 0.2700 | +0.0600 yes | 0.3200 | +0.0100 yes | 0.2800 | "
            "-0.0400 **no** | +0.0500 yes | 0.2600 | +0.0200 yes |") in bars
    for record in records:
        if record["model"] == "best-reference":
            record["reference"] = f"popularity, seed {record['seed']}'s choice"
    table = target_table(records, "Tools")
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| ")][1:]  # below the header
    assert rows == ["| X-Cross (Toys+Sports; β=1, γ=1)", "| LoRA on Tools (E1)",
                    "| Best reference, chosen on validation users (E5)", "| Untrained backbone similarity (E5)"]
    assert "| Best reference, chosen on validation users (E5) | 3 | 0.2700 ± 0.0100 |" in table
    assert ("- Best reference, chosen on validation users (E5): seed 42: popularity, seed 42's choice; seed 43: "
            "popularity, seed 43's choice; seed 44: popularity, seed 44's choice.") in table


def test_data_efficiency_plots_means_over_the_seeds_of_each_fraction(tmp_path):
    matplotlib = pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install -e '.[experiments]')")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from research.results_report import curve_points, data_efficiency, draw_data_efficiency, plot_data_efficiency

    records = _full_scale_records()
    points = curve_points(data_efficiency(records, "Tools")["LoRA on Tools (E1)"])
    assert [(fraction, seeds) for fraction, _, _, seeds in points] == [(0.1, 1), (0.25, 3), (0.5, 1), (1.0, 3)]
    assert [mean for _, mean, _, _ in points] == pytest.approx([0.20, 0.26, 0.28, 0.32])
    assert [std for _, _, std, _ in points] == pytest.approx([0.0, 0.01, 0.0, 0.02])

    figure, axes = plt.subplots()
    assert draw_data_efficiency(axes, records, "Tools")
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) >= {"LoRA on Tools (E1)", "X-Cross (Toys+Sports; β=1, γ=1)", "best reference (3 seeds)"}
    assert list(lines["X-Cross (Toys+Sports; β=1, γ=1)"].get_xdata()) == pytest.approx([10, 25, 50, 100])
    assert list(lines["X-Cross (Toys+Sports; β=1, γ=1)"].get_ydata()) == pytest.approx([0.22, 0.28, 0.30, 0.33])
    assert list(lines["best reference (3 seeds)"].get_ydata()) == pytest.approx([0.27, 0.27])
    # Spread bars only where several seeds ran: at 25% and 100%, for both curves.
    bars = [[segment[0][0] for segment in container.lines[2][0].get_segments()] for container in axes.containers]
    assert bars == [pytest.approx([25, 100])] * 2
    plt.close(figure)
    assert plot_data_efficiency(records, "Tools", tmp_path / "tools.png") and (tmp_path / "tools.png").stat().st_size
    assert not plot_data_efficiency(records, "Sports", tmp_path / "sports.png")
    assert not (tmp_path / "sports.png").exists()


def test_relative_curves_pair_each_run_with_its_seeds_best_reference(tmp_path):
    matplotlib = pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install -e '.[experiments]')")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from research.results_report import MARGIN, data_efficiency, draw_data_efficiency

    records = _full_scale_records()  # best reference 0.26 / 0.27 / 0.28 on seeds 42 / 43 / 44
    gaps = data_efficiency(records, "Tools", relative=True)["LoRA on Tools (E1)"]
    assert gaps[0.1] == pytest.approx([0.20 - 0.26]) and gaps[0.5] == pytest.approx([0.28 - 0.26])
    assert gaps[0.25] == pytest.approx([-0.01] * 3) and gaps[1.0] == pytest.approx([0.04, 0.05, 0.06])
    figure, axes = plt.subplots()
    assert draw_data_efficiency(axes, records, "Tools", relative=True)
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["X-Cross (Toys+Sports; β=1, γ=1)"].get_ydata()) == pytest.approx([-0.04, 0.01, 0.04, 0.06])
    assert list(lines["best reference (same seed)"].get_ydata()) == pytest.approx([0.0, 0.0])
    assert list(lines[f"the bar: best reference + {MARGIN:g}"].get_ydata()) == pytest.approx([MARGIN] * 2)
    plt.close(figure)
    # A seed without its best reference has no gap to draw.
    without = [record for record in records if record["model"] != "best-reference"]
    assert not data_efficiency(without, "Tools", relative=True)
    assert not draw_data_efficiency(plt.subplots()[1], without, "Tools", relative=True)
    plt.close("all")


def test_data_efficiency_plot_shows_the_untrained_start_where_runs_scored_it():
    matplotlib = pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install -e '.[experiments]')")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from research.results_report import draw_data_efficiency

    records = [_record("lora", 0.30, 42, 1.0, starting_test_mrr=0.27), _record("lora", 0.26, 42, 0.25),
               _record("xcross", 0.28, 42, 0.25, starting_test_mrr=0.28), _record("best-reference", 0.29, 42)]
    figure, axes = plt.subplots()
    assert draw_data_efficiency(axes, records, "Tools")
    lines = {line.get_label(): line for line in axes.get_lines()}
    # Only the fractions whose run scored its start: LoRA's at 100%, X-Cross's at 25%.
    assert list(lines["LoRA on Tools (E1), untrained start"].get_xdata()) == pytest.approx([100])
    assert list(lines["LoRA on Tools (E1), untrained start"].get_ydata()) == pytest.approx([0.27])
    assert list(lines["X-Cross (Toys+Sports; β=1, γ=1), untrained start"].get_ydata()) == pytest.approx([0.28])
    assert lines["LoRA on Tools (E1), untrained start"].get_color() == lines["LoRA on Tools (E1)"].get_color()
    assert "best reference (1 seed)" in lines
    plt.close(figure)


CONFIGS = Path(__file__).resolve().parents[2] / "research" / "configs"


def _committed_configs() -> list:
    """The configs, those with fractions of "all" train users marked `data` (the shared Amazon data counts them)."""
    return [pytest.param(path, id=path.stem,
                         marks=[pytest.mark.data] if json.loads(path.read_text())["scale"]["train_users"] == "all" else [])
            for path in sorted(CONFIGS.glob("*.json"))]


@pytest.mark.parametrize("path", _committed_configs())
def test_committed_configs_load_and_plan_their_grid(path):
    """Every config a script or the README names loads (no missing or unknown field) and plans E1-E5 for each seed,
    no two runs sharing an id or an output."""
    config = ExperimentConfig.load(path)
    runs = plan_runs(config)
    assert {run.experiment for run in runs} == {"E1", "E2", "E3", "E4", "E5"}
    assert {run.seed for run in runs} == set(config.seeds)
    assert len({run.run_id for run in runs}) == len(runs)
    outputs = [run.metrics_file for run in runs if run.args]
    assert len(set(outputs)) == len(outputs)


@pytest.mark.data
def test_full_scale_grid_trains_on_all_users_with_shared_sources():
    config = ExperimentConfig.load(CONFIGS / "full_scale.json")
    runs = plan_runs(config)
    ids = [run.run_id for run in runs]
    assert ids[:3] == ["E1_lora_Sports_seed42", "E1_lora_Tools_seed42", "E1_lora_Toys_seed42"]
    assert {run.seed for run in runs if run.fraction in (0.1, 0.5)} == {42}
    assert {run.seed for run in runs if run.fraction == 0.25} == {42, 43, 44}
    assert {(run.target, run.seed) for run in runs if run.model == "best-reference"} == {
        (target, seed) for target in ("Tools", "Sports", "Toys") for seed in (42, 43, 44)}
    for run in runs:
        assert ("--max-train-users" in run.args) == (run.fraction < 1), run.run_id
        assert not {"--epochs", "--batch-size", "--train-negatives", "--negatives"} & set(run.args), run.run_id
        if run.model == "xcross":
            assert all("runs/full_scale/seed42/lora-" in path for path in run.needs), run.run_id
