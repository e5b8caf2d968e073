"""The adapter bank: every adapted linear holds its frozen base weight once and the LoRA A/B of every adapter.

The n adapter streams travel through a block stacked on the batch dimension, `(n * batch, ...)`. A
`LoraBankLinear` computes the shared base projection for all of them in one matmul and adds adapter m's delta
`scaling_m * B_m A_m x` to the m-th slice with two batched matmuls. Adapters of different ranks are zero-padded to
the largest rank, which leaves their products unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn

from configuration_xcross import AdapterSpec

from .adapters import LoraAdapter
from .errors import CheckpointError


class LoraBankLinear(nn.Linear):
    """A frozen `nn.Linear` shared by n streams; stream m also gets adapter m's LoRA delta.

    Parameters keep the base layer's names (`weight`, `bias`) so base checkpoints load unchanged, plus the stacked
    `lora_A` `(n, r_max, in)` and `lora_B` `(n, out, r_max)`.
    """

    def __init__(self, base_layer: nn.Linear, ranks: Sequence[int], scalings: Sequence[float]):
        nn.Module.__init__(self)
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.weight = base_layer.weight
        self.bias = base_layer.bias
        self.ranks = tuple(ranks)
        factory = {"dtype": base_layer.weight.dtype, "device": base_layer.weight.device}
        num_adapters, max_rank = len(self.ranks), max(self.ranks)
        self.lora_A = nn.Parameter(torch.zeros(num_adapters, max_rank, self.in_features, **factory),
                                   requires_grad=False)
        self.lora_B = nn.Parameter(torch.zeros(num_adapters, self.out_features, max_rank, **factory),
                                   requires_grad=False)
        self.register_buffer("scaling", torch.tensor(list(scalings), **factory).view(-1, 1, 1), persistent=False)
        # The base weight is already initialised and the LoRA slots are filled from adapters: never re-initialise.
        self._is_hf_initialized = True

    @property
    def num_adapters(self) -> int:
        return len(self.ranks)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.shape[0] % self.num_adapters:
            raise ValueError(f"LoraBankLinear expects the {self.num_adapters} adapter streams stacked on dim 0, got "
                             f"a leading size of {hidden_states.shape[0]}.")
        output = F.linear(hidden_states, self.weight, self.bias)
        streams = hidden_states.reshape(self.num_adapters, -1, self.in_features)
        down = torch.bmm(streams, self.lora_A.transpose(1, 2)).mul_(self.scaling)
        # Added in place (the base product is not saved for backward): no delta-sized temporary. In-place ops skip
        # autocast, so the factors take the output's dtype.
        lora_B = self.lora_B.transpose(1, 2).to(output.dtype)
        output.view(self.num_adapters, -1, self.out_features).baddbmm_(down.to(output.dtype), lora_B)
        return output

    @torch.no_grad()
    def set_adapter(self, index: int, lora_A: torch.Tensor, lora_B: torch.Tensor) -> None:
        """Write adapter `index`'s A `(r, in)` and B `(out, r)` into its slot."""
        rank = self.ranks[index]
        self.lora_A[index].zero_()
        self.lora_B[index].zero_()
        self.lora_A[index, :rank].copy_(lora_A)
        self.lora_B[index, :, :rank].copy_(lora_B)

    def get_adapter(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapter `index`'s A `(r, in)` and B `(out, r)`, unpadded."""
        rank = self.ranks[index]
        return self.lora_A[index, :rank], self.lora_B[index, :, :rank]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ranks={self.ranks}"


def targeted_linears(model: nn.Module, target_modules: list[str] | str) -> set[str]:
    """The names of the linears of `model` a LoRA with `target_modules` adapts, by PEFT's own rule
    (`check_target_module_exists`: a regex string matches the whole name, a list entry the name or its suffix)."""
    config = LoraConfig(target_modules=target_modules)
    return {name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and check_target_module_exists(config, name)}


def install_lora_bank(base: nn.Module, layers_path: str, specs: Sequence[AdapterSpec]) -> dict[str, LoraBankLinear]:
    """Replace the linears the adapters target with `LoraBankLinear`s; returns them by module name.

    All adapters must target the same linears, and those linears must sit inside the transformer blocks (the
    streams only exist there).
    """
    targeted = {spec.name: targeted_linears(base, spec.target_modules) for spec in specs}
    first = specs[0].name
    for spec in specs:
        if not targeted[spec.name]:
            raise CheckpointError(f"Adapter {spec.name!r}: target_modules {spec.target_modules!r} match no linear "
                                  f"layer of the base model ({type(base).__name__}); it was trained on another "
                                  "architecture.")
        if targeted[spec.name] != targeted[first]:
            only_here = sorted(targeted[spec.name] - targeted[first])[:4]
            only_first = sorted(targeted[first] - targeted[spec.name])[:4]
            raise CheckpointError(
                f"Adapter {spec.name!r} targets different modules than adapter {first!r} "
                f"({spec.target_modules!r} vs {specs[0].target_modules!r}; e.g. only in {spec.name!r}: {only_here}, "
                f"only in {first!r}: {only_first}). X-Cross needs every source adapter on the same target modules."
            )
    outside = sorted(name for name in targeted[first] if not name.startswith(f"{layers_path}."))
    if outside:
        raise CheckpointError(f"Adapters target {outside[:4]}, outside the transformer blocks ({layers_path}.*); "
                              "X-Cross runs adapter streams only inside the blocks, so train source adapters on block "
                              "linears.")

    ranks = [spec.r for spec in specs]
    scalings = [spec.scaling for spec in specs]
    banks = {}
    for name in sorted(targeted[first]):
        banks[name] = LoraBankLinear(base.get_submodule(name), ranks, scalings)
        base.set_submodule(name, banks[name])
    return banks


def _bank_name_for(adapter_path: str, banks: dict[str, LoraBankLinear]) -> str | None:
    """The bank module an adapter's module path refers to: equal, or the path ends with `.<bank name>` (adapters
    trained on a wrapper of the base carry the wrapper's prefix)."""
    if adapter_path in banks:
        return adapter_path
    parts = adapter_path.split(".")
    for start in range(1, len(parts)):
        candidate = ".".join(parts[start:])
        if candidate in banks:
            return candidate
    return None


def load_adapter_into_bank(banks: dict[str, LoraBankLinear], index: int, adapter: LoraAdapter) -> None:
    """Fill slot `index` of every bank module with `adapter`'s weights, refusing any mismatch with the base."""
    name = adapter.spec.name
    covered = set()
    for adapter_path, (lora_A, lora_B) in adapter.weights.items():
        bank_name = _bank_name_for(adapter_path, banks)
        if bank_name is None:
            raise CheckpointError(f"Adapter {name!r} has weights for {adapter_path!r}, which is not a target linear "
                                  "of this base model: the adapter was trained on another base or with other target "
                                  "modules.")
        bank = banks[bank_name]
        expected_A = (bank.ranks[index], bank.in_features)
        expected_B = (bank.out_features, bank.ranks[index])
        if tuple(lora_A.shape) != expected_A or tuple(lora_B.shape) != expected_B:
            raise CheckpointError(
                f"Adapter {name!r} does not fit the base at {bank_name}: lora_A {tuple(lora_A.shape)} and lora_B "
                f"{tuple(lora_B.shape)}, but the base layer needs {expected_A} and {expected_B} "
                f"(in_features={bank.in_features}, out_features={bank.out_features}, r={bank.ranks[index]}). It was "
                "trained on a base of other sizes."
            )
        bank.set_adapter(index, lora_A, lora_B)
        covered.add(bank_name)
    uncovered = sorted(set(banks) - covered)
    if uncovered:
        raise CheckpointError(f"Adapter {name!r} has no weights for {uncovered[:4]} although its target_modules "
                              "select them; its adapter_model.safetensors does not match its adapter_config.json.")


def check_stored_ranks(banks: dict[str, LoraBankLinear], names: Sequence[str], source: str) -> None:
    """Refuse loaded bank weights whose ranks are not the declared ones: an `r` edited in config.json changes the
    scaling alpha / r and which rows count, so the model would load and silently give other logits. The stored
    rank of an adapter is its last non-zero lora_A row (the rows past its rank are zero padding)."""
    for index, name in enumerate(names):
        declared = next(iter(banks.values())).ranks[index]
        stored = 0
        for bank in banks.values():
            rows = bank.lora_A[index].abs().sum(dim=1).nonzero()
            stored = max(stored, int(rows.max()) + 1 if len(rows) else 0)
        if stored != declared:
            raise CheckpointError(f"{source}: adapter {name!r} is declared with r={declared} in config.json, but its "
                                  f"stored LoRA weights have rank {stored}. Was `r` edited? Restore it (r={stored}).")
