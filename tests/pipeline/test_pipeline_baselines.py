"""The E4 baselines through the CLI on a tiny random BERT: a head on the frozen base, a head on the merged source
adapters (whose delta is the mean of the source deltas), and source adapters scored zero-shot on the very candidate
lists the trained models are scored on."""

from __future__ import annotations

import json

import pytest
import torch

from configuration_xcross import PAPER_SCORING
from conftest import SMALL, make_base, make_tokenizer
from modeling_xcross.pipeline.cli import main
from modeling_xcross.head_recommender import HeadRecommender, merge_sources
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.auto_loading import load_trained_model


def _delta(model, adapter: str) -> dict[str, torch.Tensor]:
    """scaling * B @ A of every LoRA layer of `adapter`, by module name."""
    return {name: module.scaling[adapter] * module.lora_B[adapter].weight @ module.lora_A[adapter].weight
            for name, module in model.named_modules() if hasattr(module, "lora_A") and adapter in module.lora_A}


@pytest.fixture(scope="module")
def head_runs(adapters, data_dir, tiny_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("heads")
    # Cross scoring, where the head has weights to train (a dual head is only its temperature).
    common = ["--data-dir", str(data_dir), "--domain", "Tools", "--backbone", str(tiny_backbone), *SMALL,
              "--scoring", "cross"]
    assert main(["train-head", "--output-dir", str(out / "base"), *common]) == 0
    assert main(["train-adapter", "--output-dir", str(out / "adapter"), *common]) == 0
    assert main(["train-head", "--output-dir", str(out / "merged"), "--merge-sources", str(adapters / "toys"),
                 str(adapters / "sports"), *common]) == 0
    return out


@pytest.mark.parametrize("run", ["base", "merged"])
def test_train_head_trains_only_the_head_and_writes_metrics(head_runs, run):
    metrics = json.loads((head_runs / run / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics) and metrics["num_users"] == 6
    model = HeadRecommender.from_pretrained(head_runs / run)
    assert metrics["trainable_parameters"] == sum(p.numel() for p in model.head.parameters())
    assert (head_runs / run / "merged_sources" / "adapter_model.safetensors").is_file() == (run == "merged")


def test_merged_adapter_delta_is_the_mean_of_the_source_deltas(adapters, tiny_backbone):
    merged = merge_sources(str(tiny_backbone), [adapters / "toys", adapters / "sports"])
    sources = [_delta(LoraRecommender.from_pretrained(adapters / name).peft_model, "default")
               for name in ("toys", "sports")]
    merged_delta = _delta(merged, "merged_sources")
    assert merged_delta.keys() == sources[0].keys() and merged_delta
    for name, delta in merged_delta.items():
        torch.testing.assert_close(delta, (sources[0][name] + sources[1][name]) / 2, atol=1e-6, rtol=1e-5)


def test_saved_head_recommender_scores_like_the_trained_one(head_runs, data_dir):
    for run in ("base", "merged"):
        assert main(["evaluate", "--model-dir", str(head_runs / run), "--data-dir", str(data_dir), "--domain", "Tools",
                     "--max-eval-users", "6", "--val-users", "4", "--seed", "0", "--max-length", "48"]) == 0
        trained = json.loads((head_runs / run / "metrics.json").read_text())
        evaluated = json.loads((head_runs / run / "eval_Tools_test" / "metrics.json").read_text())
        assert {key: evaluated[key] for key in METRIC_KEYS} == pytest.approx({key: trained[key] for key in METRIC_KEYS})


def test_zero_shot_source_uses_the_trained_models_test_candidates(adapters, head_runs, data_dir):
    assert main(["evaluate", "--model-dir", str(adapters / "toys"), "--data-dir", str(data_dir), "--domain", "Tools",
                 "--max-eval-users", "6", "--val-users", "4", "--seed", "0"]) == 0
    name = "candidates_test_6users_seed0.json"
    zero_shot = json.loads((adapters / "toys" / "eval_Tools_test" / name).read_text())
    assert zero_shot == json.loads((head_runs / "base" / name).read_text())
    assert zero_shot["domain"] == "Tools" and len(zero_shot["lists"]) == 6


def test_merge_sources_of_another_backbone_is_refused(adapters, data_dir, tmp_path, capsys):
    other = make_tokenizer(make_base(tmp_path / "other-base", "bert", seed=9))
    assert main(["train-head", "--data-dir", str(data_dir), "--domain", "Tools", "--merge-sources",
                 str(adapters / "toys"), "--output-dir", str(tmp_path / "x"), "--backbone", str(other), *SMALL]) == 1
    assert "--merge-sources" in capsys.readouterr().err


def _as_legacy_run(directory, target):
    """A copy of a saved recommender in the format of earlier runs: head.safetensors + recommender.json."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(directory, target)
    config = json.loads((target / "config.json").read_text())
    model = load_trained_model(directory)[0]
    save_file({key: value.contiguous() for key, value in model.head.state_dict().items()}, target / "head.safetensors")
    settings = {"kind": config["kind"], "backbone": config["backbone"], "pooling": config["pooling"]}
    if config["kind"] == "head-recommender":
        settings["merged_from"] = config["merged_from"]
    (target / "recommender.json").write_text(json.dumps(settings))
    (target / "config.json").unlink()
    (target / "model.safetensors").unlink()
    return target


@pytest.mark.parametrize("run", ["adapter", "base", "merged"])
def test_recommenders_reload_in_one_call_and_legacy_runs_still_load(run, adapters, head_runs, tmp_path):
    # Runs saved in the legacy format scored in cross mode, the only one there was.
    directory = head_runs / run
    cls = LoraRecommender if run == "adapter" else HeadRecommender
    input_ids = torch.randint(5, 80, (2, 3, 10))
    with torch.no_grad():
        expected = cls.from_pretrained(directory)(input_ids).logits
        legacy = load_trained_model(_as_legacy_run(directory, tmp_path / run))[0]
        assert type(legacy) is cls
        torch.testing.assert_close(legacy(input_ids).logits, expected, atol=0, rtol=0)
    assert not torch.equal(expected[:, 0], expected[:, 1]), "inputs that score differently"


def test_baselines_score_the_trained_models_lists(adapters, data_dir, tiny_backbone, tmp_path):
    from modeling_xcross.pipeline.baselines import popularity_scores
    from modeling_xcross.pipeline.data import load_domain, split_users
    from modeling_xcross.pipeline.metrics import load_ranking_metric

    options = dict(zip(SMALL[::2], SMALL[1::2]))
    common = ["--data-dir", str(data_dir), "--domain", "Toys", "--backbone", str(tiny_backbone),
              *[item for key in ("--max-train-users", "--val-users", "--max-eval-users", "--max-length", "--seed")
                for item in (key, options[key])]]
    for method in ("popularity", "similarity", "random"):
        assert main(["baseline", "--method", method, "--output-dir", str(tmp_path / method), *common]) == 0
    trained_lists = next((adapters / "toys").glob("candidates_test_*.json")).read_text()
    for method in ("popularity", "similarity", "random"):
        assert next((tmp_path / method).glob("candidates_test_*.json")).read_text() == trained_lists
        metrics = json.loads((tmp_path / method / "metrics.json").read_text())
        assert set(METRIC_KEYS) <= set(metrics) and metrics["trainable_parameters"] == 0
    # Popularity by hand: counts over the 16 train users' histories, ties against the true item.
    domain = load_domain(data_dir, "Toys")
    users = split_users(domain, int(options["--val-users"]), int(options["--seed"]), 16, 6)
    lists = json.loads(trained_lists)["lists"]
    counts = {item: sum(history.count(item) for history in (domain.train[user] for user in users["train"]))
              for entry in lists for item in entry["candidates"]}
    scores = popularity_scores(domain, users["train"], lists)
    assert scores.tolist() == [[counts[item] for item in entry["candidates"]] for entry in lists]
    expected = load_ranking_metric().compute(predictions=scores, references=[entry["label"] for entry in lists])
    popularity = json.loads((tmp_path / "popularity" / "metrics.json").read_text())
    assert {key: popularity[key] for key in METRIC_KEYS} == pytest.approx({key: expected[key] for key in METRIC_KEYS})


@pytest.mark.parametrize("scoring", [
    {"history_encoding": "items", "history_decay": 1.0},
    {"history_encoding": "items", "history_decay": 0.5, "temperature": 0.2, "popularity_weight": 1.5},
    {"history_encoding": "text"},
])
def test_untrained_dual_recommender_scores_like_the_untrained_baseline(data_dir, tiny_backbone, tmp_path, scoring):
    """A fresh dual LoRA recommender (PEFT's B = 0) scores exactly what the untrained baselines score (similarity:
    plain item mean; similarity-popularity: with the prior): training starts from the baseline."""
    from modeling_xcross.pipeline.baselines import untrained_model
    from modeling_xcross.pipeline.candidates import build_eval_lists
    from modeling_xcross.pipeline.data import load_domain
    from modeling_xcross.inference.encoding import dual_scores
    from modeling_xcross.pipeline.models import collator_for
    from modeling_xcross.pipeline.samples import EvalSamples

    from modeling_xcross.pipeline.samples import title_counts

    domain = load_domain(data_dir, "Tools")
    counts = title_counts(domain, sorted(domain.train)) if "popularity_weight" in scoring else None
    samples = EvalSamples(domain, build_eval_lists(domain, "test", sorted(domain.test)[:5], seed=1), counts)
    fresh = LoraRecommender.create(str(tiny_backbone), **{**PAPER_SCORING, "scoring": "dual", **scoring}).eval()
    examples = [samples[index] for index in range(len(samples))]
    collator = collator_for(str(tiny_backbone), 48, domain.titles.values(), "dual", fresh.config.history_encoding,
                            fresh.config.history_decay)
    expected = dual_scores(fresh, collator, examples)
    torch.testing.assert_close(dual_scores(*untrained_model(str(tiny_backbone), domain, 48, **scoring), examples),
                               expected, atol=1e-4, rtol=1e-4)
    if counts is not None:  # the prior moved the scores: popularity_weight * log(1 + count) on top of the cosine
        plain = LoraRecommender.create(str(tiny_backbone), scoring="dual", history_encoding="items",
                                       history_decay=0.5, temperature=0.2, popularity_weight=None).eval()
        without = dual_scores(plain, collator, [{key: value for key, value in example.items()
                                                 if key != "candidate_popularity"} for example in examples])
        prior = 1.5 * torch.log1p(torch.tensor([example["candidate_popularity"] for example in examples]))
        torch.testing.assert_close(expected, without + prior, atol=1e-4, rtol=1e-4)
