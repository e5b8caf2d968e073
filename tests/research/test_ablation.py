"""research/ablation.py: each row changes what its name says and nothing else."""

from __future__ import annotations

from modeling_xcross.pipeline.cli import build_parser
from research.ablation import BEFORE, CHANGES, command, rows


def _parsed(target: str, row: str):
    arguments = command(target, row, "data")[3:]  # after `python -m modeling_xcross.pipeline.cli`
    return vars(build_parser().parse_args(arguments))


def test_each_row_differs_from_before_only_in_its_own_settings():
    before = _parsed("Tools", "before")
    assert (before["stream_dropout"], before["scale_fusion_input"], before["fusion_bound"],
            before["fusion_learning_rate"], before["projection_rank"], before["choose_start"],
            before["lr_scheduler"], before["warmup_steps"]) == (True, False, None, 1e-5, None, False, "linear", 0)
    changed = {}
    for row in CHANGES:
        parsed = _parsed("Tools", row)
        changed[row] = {key for key in parsed if parsed[key] != before[key] and key != "output_dir"}
        assert changed[row], row
    assert changed["no stream dropout"] == {"stream_dropout"}
    assert changed["head projection"] == {"projection_rank"}
    assert changed["start chosen"] == {"choose_start", "choose_temperature"}
    assert changed["conditioned integrator"] == {"scale_fusion_input", "fusion_bound", "fusion_learning_rate",
                                                 "lr_scheduler", "warmup_steps"}
    every = _parsed("Tools", "all")
    assert {key for key in every if every[key] != before[key] and key != "output_dir"} == set().union(*changed.values())


def test_the_lora_rows_take_the_head_changes_only():
    assert rows()["LoRA before"][0] == rows()["LoRA with head changes"][0] == "train-adapter"
    lora = _parsed("Tools", "LoRA with head changes")
    assert (lora["projection_rank"], lora["choose_start"], lora["lr_scheduler"]) == (16, True, "constant_with_warmup")
    assert set(BEFORE) >= {"--projection-rank", "--choose-start"}
