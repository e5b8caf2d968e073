"""conversion.build_xcross: a checkpoint from a base and adapter directories, via the function and the CLI."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from conftest import random_inputs
from conversion.build_xcross import main


def test_build_xcross_cli_writes_a_loadable_checkpoint(tiny, tmp_path):
    main(["--base", str(tiny.base_dir), "--adapter", f"toys={tiny.adapter_dirs['toys']}",
          "--adapter", f"tools={tiny.adapter_dirs['tools']}", "--beta", "0.5", "--scoring", "cross",
          "--output-dir", str(tmp_path / "x")])
    model = AutoModel.from_pretrained(tmp_path / "x")
    assert model.adapter_names == ["toys", "tools"] and model.config.beta == 0.5 and model.config.scoring == "cross"
    assert torch.isfinite(model(random_inputs(1, 2, 5)[0]).logits).all()


def test_build_xcross_cli_rejects_malformed_adapter(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--adapter", "no-equals-sign", "--output-dir", str(tmp_path)])
    assert "NAME=DIR_OR_REPO" in capsys.readouterr().err
