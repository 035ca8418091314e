"""``LoRALinear``: a low-rank adapter (LoRA, DoRA, QLoRA) around one ``nn.Linear``.

The wrapper takes over the base layer's ``weight`` and ``bias`` parameters under
the same attribute names, so a model's native state-dict keys do not change when
it is wrapped (``layers.0.attn.q_proj.weight`` stays put) and the adapter adds
``lora_a.weight``, ``lora_b.weight`` and, for DoRA, ``magnitude`` beside them.

The maths follows PEFT exactly, so adapters move between the two without drift:
``y = W x + b + scaling * B A dropout(x)`` with ``scaling = alpha / rank`` (rank-stabilised,
rsLoRA: ``alpha / sqrt(rank)``), ``A``
kaiming-uniform and ``B`` zero at start; DoRA rescales each output row by
``magnitude / ||W + scaling * B A||`` (the norm detached from the graph).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NF4_BLOCK_SIZE",
    "LoRALinear",
    "is_nf4",
    "merge_weight",
    "nf4_shards_evenly",
    "to_nf4_weight",
]

#: Values per NF4 quantization block (a quantized weight's size must be a multiple).
NF4_BLOCK_SIZE = 64
_NF4_SCALER_BLOCK = 256


def is_nf4(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a torchao ``NF4Tensor`` (without importing torchao)."""
    return type(tensor).__name__ == "NF4Tensor"


def to_nf4_weight(weight: torch.Tensor) -> torch.Tensor:
    """Quantize a 2-D weight to torchao's NF4 (4-bit NormalFloat, double-quantized scales).

    Weights are quantized in blocks of 64 values; block scales are themselves
    quantized in groups of up to 256 blocks (fewer for small layers, whose block
    count need not be a multiple of 256).

    Raises:
        ValueError: the weight's size is not a multiple of 64.
    """
    from torchao.quantization import to_nf4

    numel = weight.numel()
    if numel % NF4_BLOCK_SIZE:
        raise ValueError(
            f"cannot quantize a {tuple(weight.shape)} weight to NF4: its size must be a "
            f"multiple of {NF4_BLOCK_SIZE}"
        )
    scaler_block = math.gcd(numel // NF4_BLOCK_SIZE, _NF4_SCALER_BLOCK)
    return to_nf4(weight.detach().contiguous(), NF4_BLOCK_SIZE, scaler_block)


def nf4_shards_evenly(shape: tuple[int, ...], shards: int) -> bool:
    """Whether FSDP2 can split an NF4 weight of ``shape`` (as :func:`to_nf4_weight`
    quantizes it) into ``shards`` along its rows: torchao splits the packed values, the
    block scales and their group scales alike, so each must divide evenly."""
    numel = math.prod(shape)
    blocks = numel // NF4_BLOCK_SIZE
    groups = blocks // math.gcd(blocks, _NF4_SCALER_BLOCK)
    return all(n % shards == 0 for n in (shape[0], numel // 2, blocks, groups))


def _dense(weight: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A plain tensor holding ``weight``'s values (dequantized if it is NF4)."""
    if is_nf4(weight):
        return weight.get_original_weight().to(dtype or weight.dtype)
    return weight if dtype is None else weight.to(dtype)


def scale_divisor(rank: int, use_rslora: bool) -> float:
    """What ``alpha`` is divided by: ``rank``, or ``sqrt(rank)`` for rsLoRA."""
    return math.sqrt(rank) if use_rslora else rank


@torch.no_grad()
def merge_weight(
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    *,
    scaling: float,
    magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """``W + scaling * B A`` (DoRA: rescaled to ``magnitude`` row norms), in ``W``'s
    compute dtype (an adapter kept in float32 over a bf16 base merges into bf16, as
    PEFT's ``merge_and_unload``).

    Takes plain tensors so that a recipe can merge from a gathered (e.g. FSDP full)
    state dict as well as from a live layer. ``weight`` may be an ``NF4Tensor``; the
    sum is formed in float32.
    """
    base = _dense(weight).float()
    delta = scaling * (lora_b.float() @ lora_a.float())
    merged = base + delta
    if magnitude is not None:
        norm = torch.linalg.norm(merged, dim=1)
        merged = (magnitude.float() / norm).view(-1, 1) * merged
    return merged.to(_dense(weight).dtype)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    Args:
        base: The layer to adapt. Its ``weight`` and ``bias`` parameters are taken
            over (same objects, frozen); ``base`` itself is not kept.
        rank: Rank ``r`` of the update ``B A`` (``A``: in -> r, ``B``: r -> out).
        alpha: Scale numerator: the update is multiplied by ``alpha / rank``.
        use_rslora: Rank-stabilised scaling ``alpha / sqrt(rank)`` (rsLoRA,
            https://arxiv.org/abs/2312.03732; PEFT's ``use_rslora``).
        dropout: Dropout probability applied to the adapter's input in training mode.
        use_dora: Learn a per-output-row magnitude as well (DoRA,
            https://arxiv.org/abs/2402.09353), initialised to the row norms of ``W``.
        quantize_base: Store the frozen weight as a torchao ``NF4Tensor`` (QLoRA). A
            base whose weight already is an ``NF4Tensor`` is kept as it is. Adapters
            are created in the weight's original (compute) dtype either way.

    An adapter may be cast to float32 over a bf16 or fp16 base (as PEFT keeps one by
    default, its ``autocast_adapter_dtype``): its path then runs in float32 as PEFT's
    does, and the layer's output is rounded to the base dtype once.

    Attributes:
        merged: Whether the update is currently folded into ``weight``.
        disabled: When true, the layer behaves like the bare base layer.
    """

    def __init__(
        self,
        base: nn.Linear,
        *,
        rank: int,
        alpha: float,
        use_rslora: bool = False,
        dropout: float = 0.0,
        use_dora: bool = False,
        quantize_base: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
        weight = base.weight
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        self.rank = rank
        self.alpha = float(alpha)
        self.use_rslora = bool(use_rslora)
        self.scaling = self.alpha / scale_divisor(rank, self.use_rslora)
        self.use_dora = bool(use_dora)
        self.merged = False
        self.disabled = False
        # (unmerge needs the DoRA factor of the moment of merging, and the NF4 original)
        self._merge_factor: torch.Tensor | None = None
        self._unmerged_nf4: torch.Tensor | None = None

        if quantize_base and not is_nf4(weight):
            weight = nn.Parameter(to_nf4_weight(weight), requires_grad=False)
        self.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
        self.weight.requires_grad_(False)
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)

        factory = {"device": weight.device, "dtype": weight.dtype}
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_a = nn.Linear(self.in_features, rank, bias=False, **factory)
        self.lora_b = nn.Linear(rank, self.out_features, bias=False, **factory)
        self.magnitude = (
            nn.Parameter(torch.empty(self.out_features, **factory)) if self.use_dora else None
        )
        self.reset_adapter()

    # ---- parameters --------------------------------------------------------

    def adapter_params(self) -> list[str]:
        """Names (relative to this module) of the trainable adapter parameters."""
        return ["lora_a.weight", "lora_b.weight"] + (["magnitude"] if self.use_dora else [])

    @torch.no_grad()
    def reset_adapter(self) -> None:
        """Re-initialise the adapter as PEFT does: ``A`` kaiming-uniform, ``B`` zero,
        DoRA magnitude = row norms of ``W`` (so the layer equals its base)."""
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)
        if self.use_dora:
            self.initialize_dora_magnitude()

    @torch.no_grad()
    def initialize_dora_magnitude(self) -> None:
        """Set the DoRA magnitude to the row norms of ``W + scaling * B A``."""
        if not self.use_dora:
            raise RuntimeError("initialize_dora_magnitude() needs a layer built with use_dora=True")
        if self.magnitude.device.type == "meta":
            return
        self.magnitude.copy_(self._weight_norm(self._base_weight(), self._delta()))

    # ---- maths -------------------------------------------------------------

    def _base_weight(self) -> torch.Tensor:
        """The unmerged base weight, dense, in the compute dtype."""
        if self.merged:
            raise RuntimeError("the base weight is not available while the adapter is merged")
        return _dense(self.weight)

    def _delta(self) -> torch.Tensor:
        """``scaling * B A`` in the adapter dtype, shaped like ``W`` (out, in)."""
        return self.scaling * (self.lora_b.weight @ self.lora_a.weight)

    @staticmethod
    def _weight_norm(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        # L2 norm of every output row: PEFT's "column-wise" norm of the transposed weight.
        combined = weight.to(delta.dtype) + delta
        return torch.linalg.norm(combined, dim=1).to(combined.dtype)

    def _linear(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``W x (+ bias)``; NF4 weights go through torchao's autograd function."""
        if is_nf4(self.weight):
            from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import linear_nf4

            out = linear_nf4(x, self.weight)
            return out if bias is None else out + bias
        return F.linear(x, self.weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer: ``x`` is ``(..., in_features)``, the result ``(..., out_features)``."""
        if self.merged or self.disabled:
            return self._linear(x, self.bias)
        if self.lora_a.weight.dtype != x.dtype:
            return self._forward_in_adapter_dtype(x)
        base = self._linear(x)
        dropping = self.training and isinstance(self.dropout, nn.Dropout)
        adapter_in = self.dropout(x) if dropping else x
        lora = self.lora_b(self.lora_a(adapter_in))
        if self.use_dora:
            # PEFT's formulation: the base output is rescaled through
            # (factor - 1) * W x' so that dropout, when active, hits only the DoRA term.
            weight_norm = self._weight_norm(self._base_weight(), self._delta().detach()).detach()
            factor = (self.magnitude / weight_norm).view(1, -1)
            base_in = self._linear(adapter_in) if dropping else base
            update = (factor - 1) * base_in + factor * lora * self.scaling
        else:
            update = lora * self.scaling
        out = base + update
        return out if self.bias is None else out + self.bias

    def _forward_in_adapter_dtype(self, x: torch.Tensor) -> torch.Tensor:
        """PEFT's forward for an adapter in another dtype than ``x`` (float32 over a
        bf16 base): the base layer's output, bias included, plus the adapter's term
        computed in the adapter dtype, the sum rounded to ``x``'s dtype."""
        result = self._linear(x, self.bias)
        adapter_in = x.to(self.lora_a.weight.dtype)
        dropping = self.training and isinstance(self.dropout, nn.Dropout)
        if dropping:
            adapter_in = self.dropout(adapter_in)
        lora = self.lora_b(self.lora_a(adapter_in))
        if not self.use_dora:
            return (result + lora * self.scaling).to(result.dtype)
        weight = self._base_weight().to(adapter_in.dtype)
        weight_norm = self._weight_norm(weight, self._delta().detach()).detach()
        factor = (self.magnitude / weight_norm).view(1, -1)
        if dropping:
            base = F.linear(adapter_in, weight)
        else:
            base = result if self.bias is None else result - self.bias
        update = (factor - 1) * base + factor * lora * self.scaling
        return (result + update).to(result.dtype)

    # ---- merging -----------------------------------------------------------

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """The weight of an equivalent plain ``nn.Linear``: dense, compute dtype, detached.

        Does not change the layer. Computed in float32 and cast back, so the result is
        as close to exact as the weight dtype allows.
        """
        if self.merged:
            return _dense(self.weight).detach().clone()
        return merge_weight(
            self.weight,
            self.lora_a.weight,
            self.lora_b.weight,
            scaling=self.scaling,
            magnitude=self.magnitude,
        )

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``weight`` in place; the forward then skips the adapter.

        An NF4 weight is replaced by the dense merged weight (the NF4 original is kept
        for :meth:`unmerge`). Merging twice is a no-op.
        """
        if self.merged:
            return
        if self.use_dora:
            weight = self._base_weight().float()
            delta = self._delta().float()
            self._merge_factor = (self.magnitude.float() / self._weight_norm(weight, delta)).view(
                -1, 1
            )
        merged = self.merged_weight()
        if is_nf4(self.weight):
            self._unmerged_nf4 = self.weight
            self.weight = nn.Parameter(merged, requires_grad=False)
        else:
            self.weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`: restore the base weight (exactly for NF4 bases, up to
        floating-point rounding otherwise). A no-op when not merged."""
        if not self.merged:
            return
        if self._unmerged_nf4 is not None:
            self.weight = self._unmerged_nf4
            self._unmerged_nf4 = None
        else:
            weight = self.weight.float()
            if self._merge_factor is not None:
                weight = weight / self._merge_factor
            self.weight.copy_(weight - self._delta().float())
        self._merge_factor = None
        self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes (merged, dense, frozen)."""
        weight = self.merged_weight()
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device="meta",
            dtype=weight.dtype,
        )
        linear.weight = nn.Parameter(weight, requires_grad=False)
        if self.bias is not None:
            linear.bias = nn.Parameter(self.bias.detach().clone(), requires_grad=False)
        return linear

    def extra_repr(self) -> str:
        kind = ("dora" if self.use_dora else "lora") + (" rslora" if self.use_rslora else "")
        nf4 = ", nf4" if is_nf4(self.weight) else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {kind} rank={self.rank}, alpha={self.alpha:g}{nf4}"
        )
