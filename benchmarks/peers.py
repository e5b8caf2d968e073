"""The ways of running n LoRA adapters of one base that the benchmark compares, behind one small interface.

Every runner scores the same batch of (history, candidate) prompts with n adapters and can take a training step.
Only `fused` and `naive_set_adapter_loop` compute X-Cross (streams fused after every block); the other peers
run the same n adapters without fusion, which is the work X-Cross cannot do less of (`floor`), or the way PEFT
would run them (`separate_models`, `mixed_batch`), or another method over the same adapters (`xlora`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel, XLoraConfig, get_peft_model
from torch import nn

from configuration_xcross import PAPER_SCORING
from modeling_xcross import RecommendationHead, XCrossForSequentialRecommendation, load_base_model, pooled_positions


@dataclass
class Batch:
    """`input_ids`/`attention_mask`/`token_type_ids` `(users, candidates, seq_len)`, `labels` `(users,)`."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor

    @property
    def candidates_shape(self) -> torch.Size:
        return self.input_ids.shape[:-1]

    def flat(self, copies: int = 1) -> dict[str, torch.Tensor]:
        """Keyword arguments for a bare base model: every prompt a row, the whole batch repeated `copies` times."""
        seq_len = self.input_ids.shape[-1]
        names = ("input_ids", "attention_mask", "token_type_ids")
        return {name: getattr(self, name).reshape(-1, seq_len).repeat(copies, 1) for name in names
                if getattr(self, name) is not None}


class Runner:
    """One way of running n adapters. Subclasses set `modules` (what it holds in memory) and `trainable`."""

    name: str
    training_unsupported: str | None = None

    def __init__(self, modules: list[nn.Module], trainable: list[nn.Parameter]):
        self.modules = modules
        self.trainable = trainable
        self.optimizer = torch.optim.SGD(trainable, lr=1e-4) if trainable else None

    def forward(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def losses(self, batch: Batch) -> Iterator[torch.Tensor]:
        """The losses of one training step, each backpropagated before the next is computed."""
        yield F.cross_entropy(self.forward(batch).view(*batch.candidates_shape).float(), batch.labels)

    def train_step(self, batch: Batch) -> None:
        for loss in self.losses(batch):
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class PeftScorer(nn.Module):
    """A PEFT LoRA model of the bare base plus a scoring head: the per-domain recommender X-Cross starts from."""

    def __init__(self, peft_model: PeftModel, pooling: str):
        super().__init__()
        self.peft_model = peft_model
        self.pooling = pooling
        self.head = RecommendationHead(peft_model.config.hidden_size)

    def forward(self, inputs: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        hidden = self.peft_model(**inputs, **kwargs).last_hidden_state
        positions = pooled_positions(inputs["attention_mask"], self.pooling)
        return self.head(hidden[torch.arange(hidden.shape[0], device=hidden.device), positions])


def _peft_model(base_dir: str, adapters: dict[str, str], trainable: bool, dtype: torch.dtype) -> PeftModel:
    names = list(adapters)
    model = PeftModel.from_pretrained(load_base_model(base_dir, dtype=dtype), adapters[names[0]],
                                      adapter_name=names[0], is_trainable=trainable)
    for name in names[1:]:
        model.load_adapter(adapters[name], adapter_name=name, is_trainable=trainable)
    return model.eval()


def _scorer(base_dir, adapters, pooling, trainable, dtype, device) -> PeftScorer:
    return PeftScorer(_peft_model(base_dir, adapters, trainable, dtype), pooling).to(device=device, dtype=dtype)


def _trainable(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for module in modules for p in module.parameters() if p.requires_grad]


class Fused(Runner):
    """X-Cross as implemented: the n streams stacked on the batch dimension through every block once."""

    name = "fused"

    def __init__(self, model: XCrossForSequentialRecommendation):
        super().__init__([model], _trainable(model))
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(batch.input_ids, attention_mask=batch.attention_mask,
                          token_type_ids=batch.token_type_ids).logits


class Floor(Runner):
    """The physical limit: one PEFT LoRA model with one adapter, run n times on the same batch (`scorers` is the
    same model n times)."""

    name = "floor"

    def __init__(self, scorers: list[PeftScorer]):
        super().__init__(list(scorers), _trainable(*dict.fromkeys(scorers)))
        self.scorers = scorers

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.stack([scorer(batch.flat()) for scorer in self.scorers])

    def losses(self, batch: Batch) -> Iterator[torch.Tensor]:
        for scorer in self.scorers:
            yield F.cross_entropy(scorer(batch.flat()).view(*batch.candidates_shape), batch.labels)


class SeparateModels(Floor):
    """n independent PEFT models, one adapter each (n copies of the base), run one after the other."""

    name = "separate_models"


class MixedBatch(Runner):
    """One PEFT model holding the n adapters, the batch repeated n times with `adapter_names` per row."""

    name = "mixed_batch"
    training_unsupported = ("PEFT refuses `adapter_names` in training mode (mixed-adapter batches are for "
                            "inference only)")

    def __init__(self, scorer: PeftScorer, adapter_names: list[str]):
        super().__init__([scorer], [])
        self.scorer = scorer
        self.adapter_names = adapter_names

    def forward(self, batch: Batch) -> torch.Tensor:
        rows = batch.input_ids.shape[:-1].numel()
        names = [name for name in self.adapter_names for _ in range(rows)]
        return self.scorer(batch.flat(len(self.adapter_names)), adapter_names=names)


class NaiveSetAdapterLoop(Runner):
    """X-Cross written the obvious way: for every block and every stream, `set_adapter(stream)` then the block,
    then the model's own fusion step. Same result as `fused`."""

    name = "naive_set_adapter_loop"

    def __init__(self, peft_model: PeftModel, xcross: XCrossForSequentialRecommendation):
        integrator = [xcross.fusion_heads, xcross.head]
        super().__init__([peft_model, *integrator], _trainable(xcross))
        self.peft_model = peft_model
        self.xcross = xcross

    def forward(self, batch: Batch) -> torch.Tensor:
        xcross, base = self.xcross, self.peft_model.base_model.model
        inputs = batch.flat()
        hidden = xcross.family.embed(base, inputs["input_ids"], inputs.get("token_type_ids"))
        block_kwargs = xcross.family.block_kwargs(base, hidden, inputs["attention_mask"])
        streams = [hidden] * xcross.num_streams
        for block, layer in zip(xcross.family.layers(base), xcross.layers):
            outputs = []
            for name, stream in zip(xcross.adapter_names, streams):
                self.peft_model.set_adapter(name, inference_mode=True)
                outputs.append(block(stream, **block_kwargs))
            streams = layer.fuse(torch.cat(outputs))[0].chunk(xcross.num_streams)
        return xcross.head(xcross.pool_streams(torch.stack(streams), inputs["attention_mask"]))


class XLora(Runner):
    """PEFT's X-LoRA over the same adapters: a scaling pass of the base, then one pass mixing all n adapters in
    every LoRA layer. Another method (one mixed stream, not n fused ones), timed for reference."""

    name = "xlora"

    def __init__(self, scorer: PeftScorer):
        super().__init__([scorer], _trainable(scorer))
        self.scorer = scorer

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.scorer(batch.flat())


def build_runners(base_dir: str, adapters: dict[str, str], dtype: torch.dtype,
                  device: torch.device) -> tuple[dict[str, Runner], dict[str, str]]:
    """Every runner over these adapters, and `{runner: why it does not apply}` for those that could not be built."""
    xcross = XCrossForSequentialRecommendation.from_adapters(base_dir, adapters, dtype=dtype,
                                                             **PAPER_SCORING).to(device).eval()
    pooling = xcross.pooling
    names = list(adapters)
    first = {names[0]: adapters[names[0]]}
    runners = [
        Fused(xcross),
        Floor([_scorer(base_dir, first, pooling, True, dtype, device)] * len(names)),
        NaiveSetAdapterLoop(_peft_model(base_dir, adapters, False, dtype).to(device), xcross),
        SeparateModels([_scorer(base_dir, {name: adapters[name]}, pooling, True, dtype, device) for name in names]),
        MixedBatch(_scorer(base_dir, adapters, pooling, False, dtype, device), names),
    ]
    skipped = {}
    try:
        runners.append(XLora(_xlora_scorer(base_dir, adapters, pooling, dtype, device)))
    except Exception as error:  # X-LoRA's own refusal is the result to report
        skipped["xlora"] = f"PEFT's X-LoRA refuses these adapters: {type(error).__name__}: {str(error).splitlines()[0]}"
    return {runner.name: runner for runner in runners}, skipped


def _xlora_scorer(base_dir, adapters, pooling, dtype, device) -> PeftScorer:
    base = load_base_model(base_dir, dtype=dtype)
    if hasattr(base.config, "use_cache"):
        base.config.use_cache = False  # X-LoRA refuses a KV cache
    config = XLoraConfig(hidden_size=base.config.hidden_size, adapters=adapters, xlora_depth=1)
    return PeftScorer(get_peft_model(base, config).eval(), pooling).to(device=device, dtype=dtype)
