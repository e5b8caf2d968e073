"""Saving and loading X-Cross models: the standard `from_pretrained` arguments, device maps, the base model and its
tokenizer, the checkpoint's tensors and the remote-code files. The model classes delegate here, as `push_to_hub`
delegates to `hub.py`; `modeling_xcross.checkpoint` says what a checkpoint holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import cached_file, logging
from transformers.utils.hub import extract_commit_hash

from configuration_xcross import XCrossConfig

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, WeightGroup, atomic_write, read_safetensors, weight_group
from .families import bare_base_model
from .hub import push_xcross
from .load_options import LoadOptions
from .lora_bank import check_stored_ranks
from .packaged_models import PACKAGED_MODELS, resolve_model_path
from .remote_code import AUTO_MAP, remote_code_files

# Under the `transformers` logger, so that `transformers.logging.set_verbosity_*` and TRANSFORMERS_VERBOSITY reach it.
# The model files share it.
logger = logging.get_logger(f"transformers.{__name__}")

TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
def load_base_model(name_or_path: str, revision: str | None = None, dtype: torch.dtype | None = None,
                    **hub_kwargs) -> PreTrainedModel:
    """The bare transformer of a base checkpoint; packaged backbones resolve to their local copy."""
    # AutoModel looks for a PEFT adapter_config.json with `adapter_kwargs` only: give it the cache settings too.
    adapter_kwargs = {key: hub_kwargs[key] for key in ("cache_dir", "local_files_only") if key in hub_kwargs}
    model = AutoModel.from_pretrained(resolve_model_path(name_or_path), revision=revision,
                                      dtype=dtype or torch.float32, adapter_kwargs=adapter_kwargs, **hub_kwargs)
    return bare_base_model(model)


def base_model_commit(name_or_path: str, revision: str | None = None, **hub_kwargs) -> str | None:
    """The commit `revision` of a Hub base resolves to (None for local and packaged bases), so it is recorded."""
    if name_or_path in PACKAGED_MODELS or Path(name_or_path).exists():
        return revision
    config_file = cached_file(name_or_path, CONFIG_NAME, revision=revision, **hub_kwargs)
    return extract_commit_hash(config_file, None) or revision


def base_tokenizer(model):
    """`model.tokenizer`, else the base's tokenizer read from its reference (None, with a warning, when the base has
    none); what `save_xcross` writes."""
    if model.tokenizer is None:
        config = model.config
        name, revision = resolve_model_path(config.base_model_name_or_path), config.base_model_revision
        # transformers 5 builds an empty tokenizer from a bare config, so the base must have tokenizer files. A save
        # (a Trainer checkpoint too) never fails for want of a tokenizer: it warns.
        try:
            if not cached_file(name, TOKENIZER_CONFIG_NAME, revision=revision,
                               _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False):
                raise OSError(f"no {TOKENIZER_CONFIG_NAME} found")
            model.tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        except (OSError, ValueError, ImportError) as error:
            logger.warning_once(f"No tokenizer saved: the base {config.base_model_name_or_path!r} gives none "
                                f"({error}). Set model.tokenizer or pass save_pretrained(..., tokenizer=...) so "
                                "that AutoTokenizer loads the saved directory.")
    return model.tokenizer


def _warn_if_not_portable(config: XCrossConfig, include_base: bool, include_adapters: bool) -> None:
    local = [] if include_base else [config.base_model_name_or_path]
    local += [] if include_adapters else [spec.source for spec in config.adapter_specs]
    local = [name for name in local if name and name not in PACKAGED_MODELS and Path(name).exists()]
    if local:
        logger.warning_once(
            f"This X-Cross model refers to {local} by local path: the saved directory loads only where those "
            "paths exist. Save with include_base=True (and include_adapters=True) for a portable checkpoint, or "
            "build the model from Hub ids.")


def _save_remote_code(model, directory: Path) -> None:
    """`auto_map` in the config and the flat code files beside it, generated from this package; a model loaded with
    trust_remote_code (package absent) copies its own already-flat files, as transformers does."""
    try:
        files = remote_code_files()
    except RuntimeError:
        custom_object_save(model, directory, config=model.config)
        return
    model.config.auto_map = dict(AUTO_MAP)
    for name, source in files.items():
        atomic_write(directory / name, lambda path, source=source: path.write_text(source))


def save_xcross(model, save_directory: str | os.PathLike, is_main_process: bool = True,
                state_dict: dict | None = None, push_to_hub: bool = False, include_base: bool = False,
                include_adapters: bool = True, tokenizer=None, **kwargs) -> None:
    """See `XCrossSerializationMixin.save_pretrained`."""
    if kwargs.get("safe_serialization") is False:
        raise ValueError("X-Cross checkpoints are saved with safetensors only.")
    if push_to_hub:
        raise NotImplementedError("Use model.push_to_hub(repo_id) to publish an X-Cross model.")
    if not is_main_process:
        return
    _warn_if_not_portable(model.config, include_base, include_adapters)
    skipped = set() if include_base else set(model._keys_to_ignore_on_save)
    state_dict = model.state_dict() if state_dict is None else state_dict
    tensors = {key: tensor.detach().contiguous() for key, tensor in state_dict.items() if key not in skipped
               and (include_adapters or weight_group(key) is not WeightGroup.ADAPTERS)}
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    if model._auto_class is not None:
        _save_remote_code(model, directory)
    atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG_NAME, lambda path: model.config.to_json_file(path))
    tokenizer = tokenizer if tokenizer is not None else base_tokenizer(model)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)


def load_xcross(cls, pretrained_model_name_or_path: str | os.PathLike, model_args: tuple,
                config: XCrossConfig | None, dtype: torch.dtype | str | None,
                device_map: str | int | torch.device | dict | None, attn_implementation: str | None,
                output_loading_info: bool, kwargs: dict):
    """See `XCrossSerializationMixin.from_pretrained`."""
    if model_args:
        raise TypeError(f"Unexpected positional arguments {model_args}.")
    kwargs = dict(kwargs)
    arguments = LoadOptions.take(kwargs, cls.__name__, dtype, device_map)
    if config is None:
        config, kwargs = XCrossConfig.from_pretrained(pretrained_model_name_or_path, return_unused_kwargs=True,
                                                      **arguments.hub_kwargs, **kwargs)
    if kwargs:
        raise TypeError(f"Unexpected arguments for {cls.__name__}.from_pretrained: {sorted(kwargs)}.")
    weights_file = cached_file(pretrained_model_name_or_path, WEIGHTS_NAME, **arguments.hub_kwargs)
    state_dict = read_safetensors(weights_file)
    groups = {weight_group(key) for key in state_dict}
    # AutoModel hands attn_implementation to the config, which passes it on to base_config.
    attn_implementation = attn_implementation or config._attn_implementation
    backbone_kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    if WeightGroup.BASE in groups:
        backbone = AutoModel.from_config(config.base_config, dtype=arguments.dtype, **backbone_kwargs)
    else:
        backbone = load_base_model(config.base_model_name_or_path, revision=config.base_model_revision,
                                   dtype=arguments.dtype, **arguments.download_kwargs, **backbone_kwargs)
    model = cls(config, backbone=backbone)
    if WeightGroup.ADAPTERS not in groups:
        model.load_adapters(**arguments.download_kwargs)
    loading_info = load_checkpoint_state(model, state_dict, weights_file)
    model = model.to(dtype=arguments.dtype, device=arguments.device).eval()
    model.name_or_path = str(pretrained_model_name_or_path)  # as transformers records it
    model.loaded_commit = extract_commit_hash(weights_file, None)  # a Hub repo's commit: its tokenizer is read there
    return (model, loading_info) if output_loading_info else model


def load_checkpoint_state(model, state_dict: dict[str, torch.Tensor], source: str) -> dict:
    """Load the checkpoint's tensors into `model`, refusing any that do not fit; the loading info transformers
    reports."""
    own = model.state_dict()
    ignored = [re.compile(pattern) for pattern in model._keys_to_ignore_on_load_unexpected]
    state_dict = {key: tensor for key, tensor in state_dict.items()
                  if key in own or not any(pattern.search(key) for pattern in ignored)}
    unexpected = sorted(set(state_dict) - set(own))
    missing = sorted(key for key in own if weight_group(key) is WeightGroup.INTEGRATOR and key not in state_dict)
    if unexpected or missing:
        raise ValueError(f"{source} does not match this X-Cross architecture: unexpected keys {unexpected[:5]}, "
                         f"missing integrator keys {missing[:5]}. Was it saved from a model with other adapters or "
                         "integrated layers than its config.json says?")
    mismatched = [key for key, tensor in state_dict.items() if tensor.shape != own[key].shape]
    if mismatched:
        key = mismatched[0]
        raise ValueError(f"{source}: {key} has shape {tuple(state_dict[key].shape)}, the model expects "
                         f"{tuple(own[key].shape)}.")
    model.load_state_dict(state_dict, strict=False)
    if any(weight_group(key) is WeightGroup.ADAPTERS for key in state_dict):
        check_stored_ranks(model.lora_banks, model.adapter_names, source)
    return {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}


class XCrossSerializationMixin:
    """`save_pretrained`, `from_pretrained`, `push_to_hub` and `base_tokenizer` of the X-Cross models, which hold
    their own checkpoint format (see `modeling_xcross.checkpoint`)."""

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: dict | None = None, push_to_hub: bool = False, include_base: bool = False,
                        include_adapters: bool = True, tokenizer=None, **kwargs) -> None:
        """Save everything a user needs: `config.json` (with the prompt settings and, while `_auto_class` is set,
        `auto_map`), `model.safetensors` (see `modeling_xcross.checkpoint`), the flat code files and the tokenizer.

        Args:
            include_base: Also store the frozen base weights, for a checkpoint that needs nothing else.
            include_adapters: Store the adapter bank (default); without it, loading reads the adapter sources.
            tokenizer: The tokenizer to save; by default `model.tokenizer`, else the base's, read from its reference.
        """
        save_xcross(self, save_directory, is_main_process, state_dict, push_to_hub, include_base, include_adapters,
                    tokenizer, **kwargs)

    def base_tokenizer(self):
        """`model.tokenizer`, else the base's tokenizer read from its reference (None, with a warning, when the base
        has none); what save_pretrained writes."""
        return base_tokenizer(self)

    def push_to_hub(self, repo_id: str, *, self_contained: bool = False, include_adapters: bool | None = None,
                    metrics: Mapping[str, float] | None = None, commit_message: str = "Upload X-Cross model",
                    revision: str | None = None, private: bool | None = None, token: str | None = None):
        """Publish to a Hub repo: config (with `auto_map`), safetensors weights, remote code files and a model card.

        By default the repo refers to the base and to adapters downloaded from the Hub by repo id and commit, and
        stores only what has no such reference; `self_contained=True` stores the base and the bank too.
        `include_adapters` forces the bank in or out. Returns the `CommitInfo` (its `oid` is the new commit).
        """
        return push_xcross(self, repo_id, self_contained=self_contained, include_adapters=include_adapters,
                           metrics=metrics, commit_message=commit_message, revision=revision, private=private,
                           token=token)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args,
                        config: XCrossConfig | None = None, dtype: torch.dtype | str | None = None,
                        device_map: str | int | torch.device | dict | None = None,
                        attn_implementation: str | None = None, output_loading_info: bool = False, **kwargs):
        """Load a saved X-Cross model: its config, then the base it refers to (unless the checkpoint holds it), then
        the adapter bank (from the checkpoint, else the adapter sources), then the integrator.

        The standard arguments apply as in transformers: `revision`, `token`, `cache_dir`, `local_files_only`,
        `force_download`, `subfolder` (the checkpoint; `token`, `cache_dir`, `local_files_only` also reach the base and
        adapters, which keep their recorded revisions), `dtype`, `attn_implementation` (the backbone's attention),
        `device_map` (one device: the n streams run together; `"auto"` picks the first GPU, else the CPU),
        `output_loading_info` (returns `(model, info)`) and `low_cpu_mem_usage` (ignored, as by transformers 5).
        """
        return load_xcross(cls, pretrained_model_name_or_path, model_args, config, dtype, device_map,
                           attn_implementation, output_loading_info, kwargs)
