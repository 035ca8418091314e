"""The objects a plugin hands the core, as ``typing.Protocol`` classes.

Every builder a plugin registers returns one of these: a model builder a
:class:`NativeModel`, a tokenizer builder a :class:`ModelTokenizer`, a PEFT method
a :class:`PeftTransform`, an evaluator a :class:`ModelEvaluator`, a quantizer a
:class:`ModelQuantizer` (a :class:`TorchaoConfiguredQuantizer` to be saved in the
Hugging Face layout), a dataset builder a :class:`TrainingDataset`. They are
runtime-checkable, so ``isinstance(obj, NativeModel)`` checks that the names exist;
``tunesmith.testing`` checks what they do. docs/plugins.md states exactly these
members (a test compares the two).

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tunesmith.data._messages import Message, ModelTokenizer

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunesmith._components import CheckpointAdapter

__all__ = [
    "PROTOCOLS",
    "Message",
    "ModelEvaluator",
    "ModelQuantizer",
    "ModelTokenizer",
    "NativeModel",
    "PeftTransform",
    "TorchaoConfiguredQuantizer",
    "TrainingDataset",
]


@runtime_checkable
class NativeModel(Protocol):
    """A decoder-only language model as recipes, generation, evaluation and PEFT use it.

    An ``nn.Module`` (``tunesmith.modules.TransformerDecoder`` is the reference
    implementation). Besides the members below, the core relies on these conventions:

    - State-dict keys are native names: ``tok_embeddings.weight``,
      ``layers.{i}.attn.{q_proj,k_proj,v_proj,output_proj}``,
      ``layers.{i}.mlp.{w1,w2,w3}`` (gate, down, up), ``norm.weight``,
      ``output.weight``. A model with tied embeddings has no ``output.weight``: its
      head reads ``tok_embeddings.weight``. The family's checkpoint adapter maps these
      names to Hugging Face's.
    - Projections a PEFT method may wrap are plain ``nn.Linear`` leaves under those
      names; a tied head is not an ``nn.Linear``.
    - ``layers`` holds the residual blocks: activation checkpointing, FSDP2 sharding
      and ``compile`` work per element.
    - Builders (``Model.builder``, ``CheckpointAdapter.build_from_hf_config``) create
      parameters with torch's defaults: the core calls them inside
      ``torch.set_default_dtype(dtype)`` and ``with torch.device(device)`` so a large
      model is built once, where and how it will run. Do not move or cast inside.
    """

    layers: nn.ModuleList
    max_seq_len: int

    def __call__(
        self,
        tokens: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(b, s)`` token ids -> ``(b, s, vocab)`` logits.

        ``mask`` is ``(b, s, kv_len)`` bool, True where a query may attend a key
        (``None``: causal); ``input_pos`` ``(b, s)`` rotary positions (``None``: the
        slot indices). With caches enabled, ``kv_len`` is the cache length.
        """
        ...

    def setup_caches(
        self, batch_size: int, dtype: torch.dtype, *, max_seq_len: int | None = None
    ) -> None:
        """Allocate a KV cache per attention layer (``max_seq_len`` slots, default
        the model's own)."""
        ...

    def reset_caches(self) -> None:
        """Empty the caches, keeping their memory."""
        ...

    def caches_are_enabled(self) -> bool:
        """Whether ``setup_caches`` was called (and not ``remove_caches``)."""
        ...

    def remove_caches(self) -> None:
        """Drop the caches: back to full-sequence forward passes."""
        ...


@runtime_checkable
class PeftTransform(Protocol):
    """What ``PeftMethod.builder(**peft_block)`` returns: it adapts any family's model.

    It must find its layers by the native names (see :class:`NativeModel`), never by
    family; adapter files are written in PEFT's format through the family's
    checkpoint adapter so ``peft.PeftModel.from_pretrained`` loads them.
    """

    def apply(self, model: nn.Module) -> None:
        """Wrap the configured layers in place and freeze everything else."""
        ...

    def trainable_params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The parameters the optimizer trains, by native state-dict name."""
        ...

    def merged_state_dict(
        self, model: nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The state dict of the equivalent plain model (adapters folded in, no adapter
        keys), without changing ``model``. ``state_dict`` is the model's full state dict
        when its parameters are sharded (gathered from FSDP2)."""
        ...

    def merge(self, model: nn.Module) -> None:
        """Fold the adapters into the model in place: afterwards it is a plain model."""
        ...

    def save_adapter(
        self,
        model: nn.Module,
        directory: str | Path,
        *,
        adapter: CheckpointAdapter,
        base_model_name_or_path: str,
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` in PEFT's format
        (HF module names through ``adapter``); returns ``directory``."""
        ...

    def load_adapter(
        self, model: nn.Module, directory: str | Path, *, adapter: CheckpointAdapter
    ) -> None:
        """Load an adapter directory written by :meth:`save_adapter` (or by PEFT) into
        ``model``, in place."""
        ...


@runtime_checkable
class ModelEvaluator(Protocol):
    """What ``Evaluator.builder(**evaluator_block)`` returns."""

    def evaluate(self, model: nn.Module, tokenizer: ModelTokenizer) -> dict[str, Any]:
        """Score ``model``; returns metrics (JSON-serialisable values) by name."""
        ...


@runtime_checkable
class ModelQuantizer(Protocol):
    """What ``Quantizer.builder(**quantizer_block)`` returns."""

    def quantize(self, model: nn.Module, device: str | torch.device) -> nn.Module:
        """Quantize ``model`` (already on ``device``), in place or not; returns the model
        to use."""
        ...


@runtime_checkable
class TorchaoConfiguredQuantizer(ModelQuantizer, Protocol):
    """A :class:`ModelQuantizer` that applies one torchao config. The quantize recipe
    names that config in ``config.json`` and writes the Hugging Face layout, which
    transformers' ``from_pretrained`` loads; other quantizers' output is ``model.pt``,
    for tunesmith only."""

    def torchao_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        """The config ``quantize`` applies to a model on ``device`` whose linear
        weights are ``dtype`` (a ``torchao.core.config.AOBaseConfig``)."""
        ...


@runtime_checkable
class TrainingDataset(Protocol):
    """What ``Dataset.builder(tokenizer, **dataset_block)`` returns (a map-style
    ``torch.utils.data.Dataset``): ``len()`` samples, each
    ``{"tokens": list[int], "labels": list[int]}`` of equal length, labels equal to
    the tokens or ``-100`` where a token is not trained."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, list[int]]: ...


#: Each protocol with the record whose builder returns it.
PROTOCOLS: dict[str, type] = {
    "models": NativeModel,
    "tokenizers": ModelTokenizer,
    "peft_methods": PeftTransform,
    "evaluators": ModelEvaluator,
    "quantizers": ModelQuantizer,
    "datasets": TrainingDataset,
}
