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
        output = Path(args[args.index("--output-dir") + 1])
        output.mkdir(parents=True)
        (output / "metrics.json").write_text(json.dumps({**dict.fromkeys(METRIC_KEYS, 0.5), "num_users": 6,
                                                         "trainable_parameters": 10, "settings": {}}))
        return 0

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

    def fake_launch(args):
        output = Path(args[args.index("--output-dir") + 1])
        output.mkdir(parents=True)
        (output / "metrics.json").write_text(json.dumps({**dict.fromkeys(METRIC_KEYS, 0.5), "num_users": 6,
                                                         "full_ranking": ranking, "settings": {}}))
        return 0

    run = select_runs(runs, config, ["E1"])[0]
    assert execute([run], config, launcher=fake_launch) == 0
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

    def record(model, mrr, seed, fraction=1.0, **extra):
        return {"model": model, "target": "Tools", "sources": ["Toys", "Sports"], "fraction": fraction, "seed": seed,
                "status": "done", "metrics": {"mrr": mrr}, **extra}

    records = [record("xcross", 0.30, 0, starting_validation_mrr=0.25, best_validation_mrr=0.27,
                      kept_starting_point=False),
               record("xcross", 0.32, 1, starting_validation_mrr=0.25, best_validation_mrr=0.24,
                      kept_starting_point=True),
               record("xcross", 0.24, 0, 0.25), record("lora", 0.26, 0), record("lora", 0.28, 1),
               record("popularity", 0.20, 0), record("similarity", 0.29, 0), record("similarity", 0.27, 1)]
    bars = bars_table(records, ["Tools", "Sports"], {"beta": 1.0, "gamma": 1.0})
    # X-Cross 0.31; the better reference is similarity (0.28): +0.03 clears the bar; LoRA 0.27; 25%: 0.24.
    assert "| Tools | 2 | 0.3100 | similarity 0.2800 | +0.0300 yes | 0.2700 | +0.0400 yes | 0.2400 | -0.0300 **no** |" \
        in bars
    assert "Sports" not in bars, "a target without records gets no row"
    gains = training_gain_table(records, "Tools")
    assert "| X-Cross (Toys+Sports; β=1, γ=1) | 2 | 0.2500 | 0.2550 | +0.0050 | 1 of 2 |" in gains
    assert "LoRA" not in gains, "runs without a recorded start get no row"
    assert bars_table(records[3:], ["Tools"], {"beta": 1.0, "gamma": 1.0}) is None


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "research" / "configs").glob("*.json")),
                         ids=lambda path: path.stem)
def test_committed_configs_load_and_plan_their_grid(path):
    """Every config a script or the README names loads (no missing or unknown field) and plans E1-E5 for each seed."""
    config = ExperimentConfig.load(path)
    runs = plan_runs(config)
    assert {run.experiment for run in runs} == {"E1", "E2", "E3", "E4", "E5"}
    assert {run.seed for run in runs} == set(config.seeds)
