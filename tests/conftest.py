"""Shared fixtures of the whole suite (tiny random bases of each supported family, PEFT LoRA adapters trained on none
of them, synthetic domains, the fake Hub) and the markers each test gets from its folder.

The folders hold the tests of one layer each (tests/README.md says which goes where); a test gets the marker of its
folder, so `-m "not e2e"` or `-m model` select by layer. A test marked `data` needs the shared Amazon data and is
skipped, with the reason, where it is absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub_server import FakeHub

# huggingface_hub reads these at import time, so they are set before anything imports it: every Hub call of the
# suite goes to the loopback fake Hub, with a cache of its own.
HUB = FakeHub()
os.environ["HF_ENDPOINT"] = HUB.endpoint
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="xcross-test-hf-home-")
for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
    os.environ.pop(variable, None)
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel, BertConfig, LlamaConfig, RobertaConfig

VOCAB = 96
TESTS = Path(__file__).resolve().parent
LAYERS = ("structure", "model", "serialization", "inference", "pipeline", "e2e", "research")
# The layers of the quick loop (`-m quick`): tiny models in process, no Trainer runs, no real data.
QUICK_LAYERS = ("structure", "model", "inference")


def pytest_collection_modifyitems(config, items):
    """Mark every test with its folder's layer (and `quick` in the quick loop's layers), and skip the `data` tests where
    the shared Amazon data is absent."""
    from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR

    missing = [domain for domain in ("Toys", "Tools", "Sports") if not (DEFAULT_DATA_DIR / domain).is_dir()]
    no_data = pytest.mark.skip(reason=f"needs the shared Amazon data: {', '.join(missing)} not found under "
                                      f"{DEFAULT_DATA_DIR}")
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in LAYERS:
            item.add_marker(getattr(pytest.mark, folder))
        if folder in QUICK_LAYERS and not item.get_closest_marker("slow") and not item.get_closest_marker("data"):
            item.add_marker(pytest.mark.quick)
        if missing and item.get_closest_marker("data"):
            item.add_marker(no_data)


def tiny_config(family: str, **overrides):
    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48)
    if family == "bert":
        return BertConfig(**{**common, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **overrides})
    if family == "roberta":
        return RobertaConfig(**{**common, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                                "max_position_embeddings": 40, "pad_token_id": 1, **overrides})
    if family == "llama":
        return LlamaConfig(**{**common, "num_key_value_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0,
                              **overrides})
    raise ValueError(family)


TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "llama": ["q_proj", "v_proj"]}


@dataclass
class TinySetup:
    family: str
    base_dir: Path
    adapter_dirs: dict[str, Path]

    def base(self):
        return AutoModel.from_pretrained(self.base_dir)


def make_base(directory: Path, family: str, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    AutoModel.from_config(tiny_config(family, **overrides)).save_pretrained(directory)
    return directory


def make_adapter(directory: Path, base_dir: Path, seed: int, r: int = 4, lora_alpha: int = 8,
                 target_modules=None, family: str = "bert", **lora_kwargs) -> Path:
    """A PEFT LoRA adapter with random (non-zero) A and B, as if trained."""
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules or TARGETS[family],
                        init_lora_weights=False, **lora_kwargs)
    peft_model = get_peft_model(AutoModel.from_pretrained(base_dir), config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.normal_(0.0, 0.3)
    peft_model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session", params=["bert", "llama"])
def tiny(request, tmp_path_factory) -> TinySetup:
    """A tiny base of one family with three adapters of different ranks (4, 2, 6)."""
    family = request.param
    root = tmp_path_factory.mktemp(f"tiny-{family}")
    base_dir = make_base(root / "base", family)
    adapters = {
        name: make_adapter(root / name, base_dir, seed=seed, r=r, family=family)
        for name, seed, r in (("toys", 1, 4), ("sports", 2, 2), ("tools", 3, 6))
    }
    return TinySetup(family, base_dir, adapters)


def random_inputs(batch: int, candidates: int, seq_len: int, seed: int = 0, pad_from: int | None = None,
                  family: str = "bert"):
    """Token ids (batch, candidates, seq_len) and a mask; `pad_from` right-pads every other prompt from there."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (batch, candidates, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if pad_from is not None:
        attention_mask[::2, :, pad_from:] = 0
        input_ids[attention_mask == 0] = 1 if family == "roberta" else 0
    return input_ids, attention_mask


def randomize_integrator(model, seed: int = 0, std: float = 0.2) -> None:
    """Move the integrator off its identity initialisation so that fusion has an effect."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in model.fusion_heads:
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std / head.weight.shape[1] ** 0.5)
            head.bias.copy_(torch.randn(head.bias.shape, generator=generator) * std)
        model.domain_weights.copy_(torch.rand(model.domain_weights.shape, generator=generator) + 0.25)


@pytest.fixture(scope="session")
def hub_server() -> FakeHub:
    HUB.start()
    yield HUB
    HUB.shutdown()


@pytest.fixture
def hub(hub_server) -> FakeHub:
    """The fake Hub with no repos, and an empty local Hub cache."""
    from huggingface_hub import constants

    assert constants.ENDPOINT == hub_server.endpoint, "huggingface_hub was imported before conftest set HF_ENDPOINT"
    hub_server.reset()
    shutil.rmtree(constants.HF_HUB_CACHE, ignore_errors=True)
    return hub_server

WORDS = ["toy", "drill", "ball", "tent", "puzzle", "saw", "bike", "lamp", "car", "rope", "kit", "hammer"]


def make_tokenizer(directory: Path) -> Path:
    """A character-level WordPiece tokenizer with fewer than VOCAB tokens, saved next to a tiny base."""
    from transformers import BertTokenizer

    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)] + [str(digit) for digit in range(10)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ";", ":", "&", ",", ".", "-", "'"]
    vocab += letters + [f"##{piece}" for piece in letters]
    assert len(vocab) <= VOCAB
    directory.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}).save_pretrained(directory)
    return directory


def make_domain(root: Path, name: str, num_items: int = 60, train_users: int = 40, test_users: int = 12,
                seed: int = 0, meta_overrides: dict | None = None) -> Path:
    """A synthetic domain folder in the shared data format (meta_data.json, smap.json, train.json, test.json)."""
    import json
    import random

    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    asins = [f"A{index:04d}" for index in range(num_items)]
    meta = {asin: f"{rng.choice(WORDS)} {rng.choice(WORDS)} &amp; {index}" for index, asin in enumerate(asins)}
    meta.update(meta_overrides or {})
    smap = {asin: index for index, asin in enumerate(asins)}

    def histories(count, offset):
        # Users like consecutive item ids, so a trained model can learn something.
        result = {}
        for user in range(count):
            start = rng.randrange(num_items - 10)
            result[str(offset + user)] = [start + step for step in range(rng.randrange(4, 9))]
        return result

    for file, content in (("meta_data.json", meta), ("smap.json", smap), ("train.json", histories(train_users, 0)),
                          ("test.json", histories(test_users, train_users))):
        (folder / file).write_text(json.dumps(content))
    return root


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A tiny random BERT base with a tokenizer, usable as --backbone."""
    directory = make_base(tmp_path_factory.mktemp("tiny-backbone") / "bert", "bert")
    return make_tokenizer(directory)


# Small pipeline runs: options of every training command in the pipeline tests.
SMALL = ["--max-train-users", "16", "--val-users", "4", "--max-eval-users", "6", "--batch-size", "4",
         "--train-negatives", "3", "--max-length", "48", "--eval-batch-size", "3", "--seed", "0",
         "--epochs", "1"]  # the default is an upper bound that validation cuts short, a few epochs at least


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Synthetic Toys, Sports and Tools domain folders."""
    root = tmp_path_factory.mktemp("domains")
    for seed, name in enumerate(("Toys", "Sports", "Tools")):
        make_domain(root, name, seed=seed)
    return root


@pytest.fixture(scope="session")
def adapters(data_dir, tiny_backbone, tmp_path_factory):
    """Source adapters `toys` and `sports` trained through the CLI with SMALL settings."""
    from modeling_xcross.pipeline.cli import main

    out = tmp_path_factory.mktemp("adapters")
    for domain in ("Toys", "Sports"):
        assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", domain, "--output-dir",
                     str(out / domain.lower()), "--backbone", str(tiny_backbone), *SMALL]) == 0
    return out


def count_item_encodings(monkeypatch) -> list[int]:
    """The number of titles of each catalogue encoding `item_representations` runs from now on."""
    from modeling_xcross.inference import catalogue

    calls = []
    encode = catalogue.encode_items

    def counted(model, collator, titles, batch_size):
        calls.append(len(titles))
        return encode(model, collator, titles, batch_size)

    monkeypatch.setattr(catalogue, "encode_items", counted)
    return calls


def dual_lora_recommender(backbone: Path):
    """A dual LoRA recommender with random (non-zero) LoRA B, as if trained: its item representations differ from the
    base's."""
    from modeling_xcross.lora_recommender import LoraRecommender

    torch.manual_seed(0)
    lora = LoraRecommender.create(str(backbone), scoring="dual", max_length=32, temperature=0.05,
                                  history_encoding="text", history_decay=1.0, popularity_weight=None)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.3)
    return lora.eval()
