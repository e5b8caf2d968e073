"""The benchmark's code paths on toy backbones (no timing is asserted): every peer runs, and the naive
set_adapter loop computes exactly what the fused model computes."""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks.backbones import prepare_backbone
from benchmarks.benchmark_streams import main, make_batch
from benchmarks.pass_size import main as pass_size_main
from benchmarks.peers import build_runners
from benchmarks.plot_streams import load_records, plot_ratios
from benchmarks.plot_streams import main as plot_main


def test_naive_loop_and_fused_agree(tmp_path):
    base_dir, adapters, vocab_size = prepare_backbone("tiny-llama", 2, tmp_path)
    runners, _ = build_runners(base_dir, adapters, torch.float32, torch.device("cpu"))
    for head in runners["fused"].model.fusion_heads:
        torch.nn.init.normal_(head.weight, std=0.05)
    batch = make_batch(30, 12, vocab_size, bert_style=False, device=torch.device("cpu"))
    with torch.inference_mode():
        fused = runners["fused"].forward(batch)
        naive = runners["naive_set_adapter_loop"].forward(batch)
    torch.testing.assert_close(naive.view_as(fused), fused, atol=1e-5, rtol=1e-4)


def test_benchmark_runs_and_writes_its_tables(tmp_path):
    output = tmp_path / "streams"
    records = main(["--backbones", "tiny-bert", "--streams", "2", "--rows", "30", "--seq-lens", "8",
                    "--repeats", "1", "--warmup", "0", "--output", str(output)])
    results = records[0]["results"]
    assert {"fused", "floor", "naive_set_adapter_loop", "separate_models", "mixed_batch"} <= set(results)
    assert results["fused_checkpointed"]["train_peak_bytes"] > 0
    assert records[0]["forward_ratios"]["fused/floor"] > 0
    assert "fused/floor" in output.with_suffix(".md").read_text()
    assert output.with_suffix(".json").exists()


def test_ratio_plot_is_drawn_from_the_json(tmp_path):
    output = tmp_path / "streams"
    main(["--backbones", "tiny-llama", "--streams", "2", "--rows", "30", "--seq-lens", "8", "--repeats", "1",
          "--warmup", "0", "--no-memory", "--output", str(output)])
    plot = tmp_path / "ratios.png"
    plot_main([str(output.with_suffix(".json")), "--kind", "train", "--output", str(plot)])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="without --no-train"):
        plot_ratios(load_records([output.with_suffix(".json")], "no_such_ratios"), "no_such_ratios", plot)


def test_pass_size_sweep_times_every_pass_size(capsys):
    results = pass_size_main(["--backbone", "tiny-llama", "--streams", "2", "--rows", "30", "--seq-len", "8",
                              "--pass-mib", "0.01", "0", "--repeats", "1"])
    assert set(results) == {"floor", "fused, 0.01 MiB passes", "fused, one pass"}
    assert all(result["forward_s"] > 0 and result["minor_faults"] >= 0 for result in results.values())
    assert "minor faults / forward" in capsys.readouterr().out


def test_each_setting_of_a_grid_runs_in_a_fresh_process(tmp_path):
    output = tmp_path / "grid"
    records = main(["--backbones", "tiny-llama", "--streams", "1", "2", "--rows", "30", "--seq-lens", "8",
                    "--repeats", "1", "--warmup", "0", "--no-train", "--no-memory", "--output", str(output)])
    assert [(record["backbone"], record["n"]) for record in records] == [("tiny-llama", 1), ("tiny-llama", 2)]
    processes = {record["process"] for record in records}
    assert len(processes) == 2 and os.getpid() not in processes
    assert all(record["forward_ratios"]["fused/floor"] > 0 for record in records)
    assert output.with_suffix(".md").read_text().count("| tiny-llama |") >= 4  # forward and weights rows


def test_in_process_grid_stays_in_this_process(tmp_path):
    records = main(["--backbones", "tiny-bert", "--streams", "1", "2", "--rows", "30", "--seq-lens", "8",
                    "--repeats", "1", "--warmup", "0", "--no-train", "--no-memory", "--in-process",
                    "--output", str(tmp_path / "grid")])
    assert {record["process"] for record in records} == {os.getpid()}


def test_recommend_benchmark_runs_both_stages():
    from benchmarks.recommend import main as recommend_main

    result = recommend_main(["--quick", "--scoring", "cross", "--streams", "2"])
    assert result["items"] == 100 and result["full_ranking_users"] == 3 and result["items_per_s"] > 0
    assert result["top10_latency_ms"] > 0 and result["rerank_top"] == 10
