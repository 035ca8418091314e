"""The checkpointer a recipe uses: read any supported format, write the output layout."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from tunesmith._components import CheckpointAdapter
from tunesmith.checkpoint._dtypes import record_dtype, resolve_dtype, stored_dtype
from tunesmith.checkpoint._files import atomic_directory, atomic_write, copy_support_files
from tunesmith.checkpoint._hf import (
    _read_json,
    describe_dir,
    find_hf_weight_files,
    load_hf_state_dict,
    read_hf_config,
    require_dir,
    save_hf_state_dict,
)
from tunesmith.checkpoint._keys import detect_key_layout
from tunesmith.checkpoint._meta import find_meta_files, is_meta_checkpoint, load_meta_checkpoint
from tunesmith.checkpoint._weights import load_model_weights
from tunesmith.errors import CheckpointError

__all__ = ["Checkpointer", "detect_format", "find_adapter"]

#: HF keys that are recomputed buffers, not weights (stored by older transformers):
#: rotary frequencies, from config.json (some families store a second set, rotary_emb_local).
HF_IGNORED_KEYS = (r"rotary_emb\w*\.(original_)?inv_freq$",)
RECIPE_STATE_DIR = "recipe_state"
#: Keys of the ``recipe_state.pt`` torchtune's recipes write (``training.EPOCHS_KEY``,
#: ``TOTAL_EPOCHS_KEY``, ``MAX_STEPS_KEY``), which tunesmith's state never holds.
_TORCHTUNE_STATE_KEYS = frozenset({"epochs_run", "total_epochs", "max_steps_per_epoch"})


def detect_format(
    checkpoint_dir: str | os.PathLike, checkpoint_files: Any = None
) -> tuple[Path, str]:
    """``(directory, "hf" | "meta")`` for a checkpoint directory.

    Raises:
        CheckpointError: the directory is missing, empty, or holds neither format; the
            message lists what it holds and what is expected.
    """
    path = require_dir(checkpoint_dir)
    names = [os.fspath(f) for f in checkpoint_files] if isinstance(checkpoint_files, list) else []
    if names and all(n.endswith(".pth") for n in names):
        return path, "meta"
    if (path / "config.json").is_file():
        find_hf_weight_files(path, checkpoint_files)  # fail now, naming what is missing
        return path, "hf"
    if is_meta_checkpoint(path):
        return path, "meta"
    if (path / "adapter_config.json").is_file():
        base = _read_json(path / "adapter_config.json").get("base_model_name_or_path")
        raise CheckpointError(
            f"{path} holds only a PEFT adapter (adapter_config.json), not a model: pass it as "
            f"adapter={path} with its base as checkpointer.checkpoint_dir="
            f"{base or '<base model directory>'}, or merge them with `tunesmith merge-adapter`"
        )
    hint = ""
    if is_meta_checkpoint(path / "original"):
        hint = f" (its original/ holds a Meta checkpoint: use {path / 'original'})"
    elif find_meta_files(path):
        hint = " (consolidated.*.pth without params.json: copy params.json beside it)"
    raise CheckpointError(
        f"{path} is not a checkpoint directory{hint}: it holds {describe_dir(path)}; expected "
        "a Hugging Face model (config.json + model*.safetensors) or a Meta checkpoint "
        "(consolidated.00.pth + params.json) — point checkpointer.checkpoint_dir at one "
        "(`tunesmith download <hf-repo>` fetches one)"
    )


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_")


def find_adapter(
    model_type: str, *, source: str = "checkpoint", registry: Any = None
) -> CheckpointAdapter:
    """The installed checkpoint adapter for an HF ``model_type``, a family name or an
    alias a family declares (torchtune's ``LLAMA3_2``).

    Matching is exact (case-insensitive, ``-`` and ``_`` alike): a ``gemma2``
    checkpoint never gets the ``gemma`` adapter.

    Raises:
        CheckpointError: no installed plugin reads it; the message names the installed
            families and the package to install.
    """
    if registry is None:
        from tunesmith.registry import get_registry

        registry = get_registry()
    adapters: list[CheckpointAdapter] = registry.values("checkpoint_adapters")
    wanted = _normalize(model_type)
    for names in (
        lambda a: a.model_types,
        lambda a: (a.family,),
        lambda a: a.aliases,
    ):
        for adapter in adapters:
            if wanted in {_normalize(n) for n in names(adapter)}:
                return adapter
    installed = ", ".join(sorted(a.family for a in adapters)) or "none"
    guess = re.match(r"[a-z]+", wanted)
    package = f"tunesmith-{guess.group(0) if guess else wanted}"
    raise CheckpointError(
        f"no installed plugin reads model_type '{model_type}' ({source}); installed "
        f"checkpoint families: {installed} — install the family's plugin "
        f"(`pip install {package}`), or set checkpointer.model_type to one of the installed "
        "families if the architecture is the same"
    )


def refuse_quantized(directory: Path, hf_config: Mapping[str, Any]) -> None:
    """Refuse a pre-quantized Hugging Face checkpoint (GPTQ, AWQ, fp8, torchao, ...): it
    stores packed tensors and scales, not the weights a model trains or converts from.

    Raises:
        CheckpointError: ``config.json`` names a ``quantization_config``.
    """
    quantization = hf_config.get("quantization_config")
    if not isinstance(quantization, Mapping) or not quantization.get("quant_method"):
        return
    method = quantization["quant_method"]
    also = (
        "; generate and evaluate load it as it is (tunesmith.load_pretrained)"
        if method == "torchao"
        else ""
    )
    raise CheckpointError(
        f"{directory} holds {method}-quantized weights (config.json's quantization_config), "
        "which tunesmith does not train, merge or convert: start from the full-precision "
        f"model it came from{also}"
    )


def _passthrough(hf: Mapping[str, torch.Tensor], adapter: CheckpointAdapter) -> dict:
    patterns = [re.compile(p) for p in adapter.passthrough]
    return {k: v for k, v in hf.items() if any(p.search(k) for p in patterns)}


class Checkpointer:
    """Reads a Hugging Face or Meta checkpoint and writes ``output_dir/epoch_N``.

    The format is detected: a Hugging Face model directory (``config.json`` +
    ``*.safetensors``) or a Meta one (``consolidated.00.pth`` + ``params.json``).
    The family's :class:`~tunesmith.CheckpointAdapter` is found through the registry
    from ``config.json``'s ``model_type`` (or ``model_type=``).

    Args:
        checkpoint_dir: The checkpoint to read.
        output_dir: Where ``epoch_N/`` and ``recipe_state/`` go; only needed to save.
        checkpoint_files: Weight files to read instead of discovering them (HF names
            relative to ``checkpoint_dir``, or torchtune's ``filename_format`` mapping).
        model_type: Family name or HF ``model_type``, overriding ``config.json`` (needed
            for Meta checkpoints when several installed families read them).

    Raises:
        CheckpointError: the directory is missing or not a checkpoint, or no installed
            plugin reads its model type.

    Example:
        >>> ckpt = Checkpointer("models/Llama-3.2-1B", "runs/lora")
        >>> model = ckpt.build_model()
        >>> load_model_weights(model, ckpt.load_state_dict())
        >>> ckpt.save_epoch(0, model.state_dict())
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike,
        output_dir: str | os.PathLike | None = None,
        *,
        checkpoint_files: Sequence[str] | Mapping[str, Any] | None = None,
        model_type: str | None = None,
    ) -> None:
        self.checkpoint_dir, self.format = detect_format(checkpoint_dir, checkpoint_files)
        self.output_dir = Path(output_dir).expanduser() if output_dir is not None else None
        self.checkpoint_files = checkpoint_files
        self.adapter: CheckpointAdapter = self._find_adapter(model_type)
        #: HF tensors of ``adapter.passthrough`` read by :meth:`load_state_dict`.
        self.passthrough: dict[str, torch.Tensor] = {}
        #: The ``adapter.key_layouts`` entry the weights were stored in (``None``: the
        #: adapter's own names); :meth:`to_hf` writes the same.
        self.key_layout: Mapping[str, str] | None = None
        self._source_read = False

    def _find_adapter(self, model_type: str | None) -> CheckpointAdapter:
        if model_type:
            return find_adapter(model_type, source="checkpointer.model_type")
        if self.format == "hf":
            config_type = self.hf_config.get("model_type")
            if not config_type:
                raise CheckpointError(
                    f"config.json in {self.checkpoint_dir} names no model_type: set "
                    "checkpointer.model_type to the model family (e.g. llama)"
                )
            return find_adapter(str(config_type), source=f"config.json in {self.checkpoint_dir}")
        from tunesmith.registry import get_registry

        readers = [a for a in get_registry().values("checkpoint_adapters") if a.meta_to_native]
        if len(readers) == 1:
            return readers[0]
        installed = ", ".join(a.family for a in readers) or "none"
        raise CheckpointError(
            f"{self.checkpoint_dir} is a Meta checkpoint, which does not say its family, and "
            f"the installed families that read Meta checkpoints are: {installed} — set "
            "checkpointer.model_type (e.g. llama), installing its plugin if needed"
        )

    # ---- reading ---------------------------------------------------------

    @cached_property
    def meta_params(self) -> dict[str, Any]:
        """``params.json`` of a Meta checkpoint (empty for HF)."""
        if self.format != "meta":
            return {}
        params = _read_json(self.checkpoint_dir / "params.json")
        if not isinstance(params, dict):
            raise CheckpointError(f"{self.checkpoint_dir / 'params.json'} is not a JSON object")
        return params

    @cached_property
    def hf_config(self) -> dict[str, Any]:
        """The checkpoint's ``config.json`` (for Meta checkpoints, the one its adapter
        derives from ``params.json``)."""
        if self.format == "hf":
            return read_hf_config(self.checkpoint_dir)
        convert = self.adapter.hf_config_from_meta_params
        if convert is None:
            raise CheckpointError(
                f"the {self.adapter.family} plugin cannot describe a Meta checkpoint as a "
                "config.json: use the model's Hugging Face repository instead"
            )
        return dict(convert(self.meta_params))

    def build_model(self, **overrides: Any) -> torch.nn.Module:
        """The architecture the checkpoint describes (``model: {_component_: auto}``),
        randomly initialized on the current default device and dtype.

        Args:
            **overrides: Builder arguments replacing the checkpoint's (``max_seq_len``).
        """
        build_meta = self.adapter.build_from_meta_params
        if self.format == "meta" and build_meta is not None:
            return build_meta(self.meta_params, **overrides)
        return self.adapter.build_from_hf_config(self.hf_config, **overrides)

    def load_model(
        self,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> torch.nn.Module:
        """:meth:`build_model` built directly on ``device`` in ``dtype`` (no fp32 CPU copy
        of a large model on the way), with the checkpoint's weights loaded.

        Raises:
            CheckpointError: the weights do not fit the architecture.
        """
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                model = self.build_model(**overrides)
        finally:
            torch.set_default_dtype(previous)
        load_model_weights(model, self.load_state_dict())
        return model

    def load_state_dict(self, *, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The checkpoint's weights under native names.

        Raises:
            CheckpointError: a damaged file, or keys the family's adapter cannot name.
        """
        source = f"checkpoint in {self.checkpoint_dir}"
        if self.format == "hf":
            refuse_quantized(self.checkpoint_dir, self.hf_config)
            hf = load_hf_state_dict(self.checkpoint_dir, self.checkpoint_files, device=device)
            self.passthrough = _passthrough(hf, self.adapter)
            self.key_layout = detect_key_layout(hf, self.adapter)
            self._source_read = True
            return self.adapter.hf_to_native_state_dict(
                hf, self.hf_config, ignore=HF_IGNORED_KEYS, source=source
            )
        if self.adapter.meta_to_native is None:
            raise CheckpointError(
                f"the {self.adapter.family} plugin does not read Meta checkpoints "
                f"({self.checkpoint_dir}): use the model's Hugging Face repository instead"
            )
        state_dict, params = load_meta_checkpoint(self.checkpoint_dir)
        native = self.adapter.meta_to_native(state_dict, params)
        return {k: v.to(device) for k, v in native.items()}

    # ---- writing ---------------------------------------------------------

    def _output(self) -> Path:
        if self.output_dir is None:
            raise CheckpointError(
                "this Checkpointer has no output_dir: set checkpointer.output_dir to save"
            )
        return self.output_dir

    def _read_source_layout(self) -> None:
        """:attr:`passthrough` and :attr:`key_layout` of an HF source whose weights this
        checkpointer did not load (a save from a model loaded elsewhere): only the key
        names and the passthrough tensors are read."""
        self._source_read = True
        if self.format != "hf" or not (self.adapter.passthrough or self.adapter.key_layouts):
            return
        from safetensors import safe_open

        patterns = [re.compile(p) for p in self.adapter.passthrough]
        keys: list[str] = []
        for path in find_hf_weight_files(self.checkpoint_dir, self.checkpoint_files):
            if path.suffix != ".safetensors":  # pytorch_model*.bin: no lazy reading
                hf = load_hf_state_dict(self.checkpoint_dir, self.checkpoint_files)
                self.passthrough = _passthrough(hf, self.adapter)
                self.key_layout = detect_key_layout(hf, self.adapter)
                return
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    keys.append(key)
                    if any(p.search(key) for p in patterns):
                        self.passthrough[key] = f.get_tensor(key)
        self.key_layout = detect_key_layout(keys, self.adapter)

    def to_hf(self, native_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Native names -> Hugging Face names through the family's adapter, in the
        source's key layout, with the source's passthrough tensors beside them."""
        if not self._source_read:
            self._read_source_layout()
        state = dict(native_state_dict)
        out, emb = state.get("output.weight"), state.get("tok_embeddings.weight")
        if (
            self.hf_config.get("tie_word_embeddings")
            and out is not None
            and emb is not None
            and out.data_ptr() == emb.data_ptr()
        ):
            del state["output.weight"]  # transformers re-ties it from the embedding
        try:
            hf = self.adapter.native_to_hf_state_dict(state, self.hf_config, layout=self.key_layout)
        except CheckpointError as exc:
            raise CheckpointError(
                f"cannot name the model's weights in Hugging Face format ({exc}) — merge "
                "PEFT adapters into the base weights before saving full weights"
            ) from None
        # Tensors the native model does not hold (a vision tower) go back unchanged.
        return {**self.passthrough, **hf}

    def write_support_files(self, directory: Path) -> None:
        """Copy the source's non-weight files (config.json, tokenizer, ...) into
        ``directory``; for a Meta source, write ``config.json`` from :attr:`hf_config`."""
        exclude = [self.output_dir] if self.output_dir is not None else []
        if self.format == "hf":
            copy_support_files(self.checkpoint_dir, directory, exclude=exclude)
            return
        copy_support_files(self.checkpoint_dir, directory, exclude=exclude, skip=["params.json"])
        text = json.dumps(self.hf_config, indent=2, sort_keys=True) + "\n"
        (directory / "config.json").write_text(text, encoding="utf-8")

    def epoch_dir(self, epoch: int) -> Path:
        return self._output() / f"epoch_{epoch}"

    def save_epoch(
        self,
        epoch: int,
        native_state_dict: Mapping[str, torch.Tensor] | None,
        *,
        extra: Callable[[Path], None] | None = None,
        max_shard_size: int | str = "5GB",
        dtype: torch.dtype | str | None = None,
    ) -> Path:
        """Write ``output_dir/epoch_{epoch}/`` atomically, in Hugging Face format.

        It holds the full weights (``model*.safetensors`` + index), the source's support
        files (``config.json`` declaring the dtype the weights were written in, as
        transformers' ``save_pretrained`` does), and whatever ``extra`` writes. It
        appears complete or not at all; an existing ``epoch_{epoch}`` is replaced.

        Args:
            epoch: The epoch number in the directory name.
            native_state_dict: The model's weights under native names (merged, if PEFT);
                ``None`` writes no full weights (a PEFT run saving its adapter only).
            extra: Called with the temporary directory before it is renamed into place,
                to add files (a PEFT adapter's ``adapter_model.safetensors``).
            max_shard_size: See :func:`save_hf_state_dict`.
            dtype: Cast floating-point weights to this dtype; ``None`` keeps them.

        Returns:
            The epoch directory.
        """
        target = self.epoch_dir(epoch)
        hf_state = self.to_hf(native_state_dict) if native_state_dict is not None else None
        with atomic_directory(target) as tmp:
            if hf_state is not None:
                save_hf_state_dict(hf_state, tmp, max_shard_size=max_shard_size, dtype=dtype)
            self.write_support_files(tmp)
            if hf_state is not None:
                record_dtype(tmp, resolve_dtype(dtype) if dtype else stored_dtype(hf_state))
            if extra is not None:
                extra(tmp)
        return target

    def training_state_path(self, name: str = "recipe_state.pt") -> Path:
        return self._output() / RECIPE_STATE_DIR / name

    def save_training_state(self, state: dict[str, Any], *, name: str = "recipe_state.pt") -> Path:
        """Write resumable training state (optimizer, step, RNG, ...) to
        ``output_dir/recipe_state/{name}``, atomically.

        Returns:
            The file written.
        """
        path = self.training_state_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load_training_state(
        self, *, name: str = "recipe_state.pt", mmap: bool = False
    ) -> dict[str, Any]:
        """The state written by :meth:`save_training_state` (``mmap``: its tensors read
        only when used, for a look at its small entries).

        Raises:
            CheckpointError: no such state in ``output_dir``.
        """
        path = self.training_state_path(name)
        if not path.is_file():
            raise CheckpointError(
                f"no training state in {self._output()} (expected {path}): run without "
                "resume_from_checkpoint or point output_dir at the interrupted run"
            )
        # weights_only: tensors, numbers, strings and containers only, which is all a
        # state file holds (RNG states are stored as tensors), so a planted pickle never
        # runs code.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:  # UnpicklingError for code; others for a damaged file
            raise CheckpointError(
                f"{path} is not a training state tunesmith wrote ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:120]}); it was not loaded: delete it, or resume "
                "from an output_dir whose recipe_state you trust"
            ) from None
        if not isinstance(state, dict):
            raise CheckpointError(
                f"{path} is not a training state tunesmith wrote: delete it, or resume from "
                "another output_dir"
            )
        if _TORCHTUNE_STATE_KEYS <= set(state):
            raise CheckpointError(
                f"{path} is torchtune's recipe state (its own format: optimizer and data "
                "position, no weights), which tunesmith cannot resume from: continue as a "
                f"new run from its weights (checkpointer.checkpoint_dir={self._last_epoch()} "
                "and another output_dir), or finish the run with torchtune"
            )
        return state

    def _last_epoch(self) -> str:
        epochs = [p for p in self._output().glob("epoch_*") if re.fullmatch(r"epoch_\d+", p.name)]
        if not epochs:
            return f"{self._output()}/epoch_N"
        return str(max(epochs, key=lambda p: int(p.name.removeprefix("epoch_"))))
