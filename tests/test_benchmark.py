"""The benchmark's code paths on toy backbones (no timing is asserted): every peer runs, and the naive
set_adapter loop computes exactly what the fused model computes."""

from __future__ import annotations

import torch

from benchmarks.backbones import prepare_backbone
from benchmarks.benchmark_streams import main, make_batch
from benchmarks.peers import build_runners


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
