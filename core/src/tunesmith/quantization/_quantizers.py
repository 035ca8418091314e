"""The built-in post-training quantizers: torchao weight quantization of every ``nn.Linear``.

Each class is a quantizer builder (``quantizer: {_component_: int4_weight_only,
groupsize: 64}`` calls ``Int4WeightOnly(groupsize=64)``) whose ``quantize(model,
device)`` swaps the weights of the model's ``nn.Linear`` layers, in place, for torchao
tensor subclasses. Embeddings, norms and a head tied to the embeddings (not an
``nn.Linear``) keep their dtype. Importing this module is cheap: torch and torchao
load when ``quantize`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tunesmith.errors import ConfigError
from tunesmith.quantization._torchao import import_torchao

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "Int4WeightOnly",
    "Int8DynamicActivationInt4Weight",
    "Int8DynamicActivationInt8Weight",
    "Int8WeightOnly",
    "TorchaoQuantizer",
]


class TorchaoQuantizer:
    """Base of the built-in quantizers: one torchao config applied with ``quantize_``.

    Subclasses set :attr:`name` and implement :meth:`torchao_config`.
    """

    #: The registry name.
    name: ClassVar[str] = ""

    def args(self) -> dict[str, Any]:
        """The builder arguments, as written to ``quantization_config.json``."""
        return {}

    def torchao_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        """The torchao config for a model whose linear weights are ``dtype`` on ``device``.

        Raises:
            ConfigError: the quantizer cannot run there (the message says what to change).
        """
        raise NotImplementedError

    def check(self, model: nn.Module) -> None:
        """Raise :class:`ConfigError` if a layer cannot be quantized as asked."""

    def portable(self, device: torch.device) -> bool:
        """Whether weights quantized on ``device`` run on another device type too."""
        return True

    def quantize(self, model: nn.Module, device: str | torch.device) -> nn.Module:
        """Quantize ``model``'s ``nn.Linear`` weights in place, but the output head's
        (transformers' ``TorchAoConfig`` leaves ``lm_head`` so, and vLLM's torchao
        layers quantize no head); the model must already be on ``device``.

        Returns:
            ``model``.

        Raises:
            ConfigError: the model or device does not suit this quantizer.
            TunesmithError: torchao is not installed.
        """
        import torch

        import_torchao()
        from torchao.quantization import quantize_

        linears = _linears(model)
        if not linears:
            raise ConfigError(f"{self.name}: the model has no nn.Linear layers to quantize")
        config = self.torchao_config(
            torch.device(device), next(iter(linears.values())).weight.dtype
        )
        self.check(model)
        quantize_(model, config, filter_fn=lambda module, fqn: fqn in linears)
        return model

    def describe(self, device: str | torch.device) -> dict[str, Any]:
        """What ``quantization_config.json`` records about this quantizer on ``device``."""
        import torch

        device = torch.device(device)
        return {
            "quantizer": self.name,
            "args": self.args(),
            "portable": self.portable(device),
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.args().items())
        return f"{self.name}({args})" if args else self.name


#: The core decoder's output head (``lm_head`` in Hugging Face names).
_HEAD = "output"


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers a quantizer quantizes: all but the output head."""
    from torch import nn

    return {
        name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name != _HEAD
    }


class Int8WeightOnly(TorchaoQuantizer):
    """int8 weights with one scale per output channel; activations stay in the model's
    dtype (torchao ``Int8WeightOnlyConfig``). Linear weights take ~1/4 of their fp32
    size (1/2 of bf16); logits move by well under 1%. Runs on CPU and CUDA.
    """

    name = "int8_weight_only"

    def __init__(self) -> None:
        pass

    def torchao_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        from torchao.quantization import Int8WeightOnlyConfig

        return Int8WeightOnlyConfig()


class Int8DynamicActivationInt8Weight(TorchaoQuantizer):
    """int8 weights (per output channel) and int8 activations quantized per token at run
    time, so matmuls can run in int8 (torchao ``Int8DynamicActivationInt8WeightConfig``).
    Same size as :class:`Int8WeightOnly`, somewhat larger error. Runs on CPU and CUDA.
    """

    name = "int8_dynamic_activation_int8_weight"

    def __init__(self) -> None:
        pass

    def torchao_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        return Int8DynamicActivationInt8WeightConfig()


#: Group sizes torchao's CUDA int4 (tinygemm) kernel supports.
_CUDA_GROUPSIZES = (32, 64, 128, 256)


def _positive_groupsize(quantizer: str, groupsize: Any, example: int) -> int:
    if isinstance(groupsize, bool) or not isinstance(groupsize, int) or groupsize < 1:
        raise ConfigError(
            f"{quantizer}: groupsize must be a positive integer, not {groupsize!r} "
            f"(e.g. quantizer.groupsize={example})"
        )
    return groupsize


class _GroupwiseQuantizer(TorchaoQuantizer):
    """A quantizer whose weights share one scale per ``groupsize`` input columns."""

    groupsize: int

    def args(self) -> dict[str, Any]:
        return {"groupsize": self.groupsize}

    def check(self, model: nn.Module) -> None:
        """Raise :class:`ConfigError` naming the linear layers ``groupsize`` does not divide."""
        linears = _linears(model)
        bad = {n: m.in_features for n, m in linears.items() if m.in_features % self.groupsize}
        if bad:
            shown = ", ".join(f"{n} ({size})" for n, size in list(bad.items())[:3])
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            sizes = sorted({m.in_features for m in linears.values()})
            raise ConfigError(
                f"{self.name}: groupsize {self.groupsize} does not divide the input size of "
                f"{shown}{more}: choose a groupsize that divides {sizes} (e.g. 32 or 64)"
            )


class Int4WeightOnly(_GroupwiseQuantizer):
    """4-bit weights with one scale (and zero point) per ``groupsize`` input columns.

    The torchao config depends on the device, because torchao 0.18 has no 4-bit kernel
    that runs everywhere:

    - CUDA: ``Int4WeightOnlyConfig`` in the ``tile_packed_to_4d`` layout (PyTorch's
      tinygemm kernel; two values per byte, ~1/8 of fp32's size). Needs
      ``dtype: bf16`` and a GPU of compute capability >= 8.0; the packed weights only
      run on CUDA.
    - CPU: ``IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(groupsize))``.
      The values are 4-bit but stored one per int8 byte and dequantized on the fly, so
      the model is about as large as with int8 and not faster: it is for checking int4's
      accuracy on a CPU, and the weights run on CUDA too.

    Args:
        groupsize: Input columns sharing one scale; it must divide every linear layer's
            input size (on CUDA: 32, 64, 128 or 256). Smaller is more accurate and
            slightly larger.
    """

    name = "int4_weight_only"

    def __init__(self, *, groupsize: int = 128) -> None:
        self.groupsize = _positive_groupsize(self.name, groupsize, 128)

    def portable(self, device: torch.device) -> bool:
        return device.type != "cuda"  # tinygemm's packed layout is CUDA-only

    def torchao_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        import torch

        if device.type == "cuda":
            return self._cuda_config(device, dtype)
        from torchao.quantization import IntxWeightOnlyConfig, PerGroup

        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(self.groupsize))

    def _cuda_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        import torch
        from torchao.quantization import Int4WeightOnlyConfig

        if self.groupsize not in _CUDA_GROUPSIZES:
            raise ConfigError(
                f"int4_weight_only on CUDA takes groupsize {', '.join(map(str, _CUDA_GROUPSIZES))}, "
                f"not {self.groupsize}: set quantizer.groupsize=128 (or 64 for more accuracy)"
            )
        if dtype != torch.bfloat16:
            raise ConfigError(
                f"int4_weight_only on CUDA runs PyTorch's tinygemm kernel, which takes bfloat16, "
                f"and the model is {str(dtype).removeprefix('torch.')}: set dtype=bf16"
            )
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise ConfigError(
                f"int4_weight_only on CUDA needs compute capability >= 8.0 (Ampere or newer); "
                f"{torch.cuda.get_device_name(device)} has {major}.{minor}: use "
                "int8_weight_only, or quantize on the CPU (device=cpu)"
            )
        return Int4WeightOnlyConfig(
            group_size=self.groupsize, int4_packing_format="tile_packed_to_4d"
        )


class Int8DynamicActivationInt4Weight(_GroupwiseQuantizer):
    """int8 activations quantized per token at run time (asymmetric) and 4-bit weights
    with one symmetric scale per ``groupsize`` input columns: the scheme of torchtune's
    ``Int8DynActInt4WeightQuantizer`` ("8da4w", the one ExecuTorch runs on phones).

    torchao 0.18's ``Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
    weight_granularity=PerGroup(groupsize))`` stores the 4-bit values one per int8 byte
    and runs the layer as the quantized kernel would compute it, in plain torch ops
    (quantize-dequantize the activations, dequantize the weights): about int8's size,
    not faster, a little less accurate than :class:`Int4WeightOnly` (activations are
    rounded too). It is for checking 8da4w's accuracy before exporting; the weights run
    on CPU and CUDA alike, in any dtype.

    Args:
        groupsize: Input columns sharing one scale (torchtune's default, 256); it must
            divide every linear layer's input size. Smaller is more accurate and
            slightly larger.
    """

    name = "int8_dynamic_activation_int4_weight"

    def __init__(self, *, groupsize: int = 256) -> None:
        self.groupsize = _positive_groupsize(self.name, groupsize, 256)

    def torchao_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        import torch
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerGroup

        return Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(self.groupsize)
        )
