"""LoRALinear maths: identity at init, the low-rank update, DoRA as PEFT computes it,
dropout, merging, NF4 bases."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tunesmith_lora import LoRALinear


def _base(out_f: int = 48, in_f: int = 64, *, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_f, out_f, bias=bias)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7))


def test_zero_b_is_identical_to_base() -> None:
    base = _base()
    expected = base(_x(3, 5, 64))
    layer = LoRALinear(copy.deepcopy(base), rank=4, alpha=8)
    assert torch.count_nonzero(layer.lora_a.weight) > 0
    assert torch.count_nonzero(layer.lora_b.weight) == 0
    torch.testing.assert_close(layer(_x(3, 5, 64)), expected, rtol=0, atol=0)


def test_output_is_base_plus_scaled_low_rank_update() -> None:
    base = _base()
    layer = LoRALinear(copy.deepcopy(base), rank=4, alpha=12)
    with torch.no_grad():
        layer.lora_b.weight.normal_()
    a, b = layer.lora_a.weight, layer.lora_b.weight
    assert a.shape == (4, 64) and b.shape == (48, 4)
    assert layer.scaling == 3.0
    x = _x(2, 64)
    expected = base(x) + 3.0 * x @ a.T @ b.T
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_takes_over_base_parameters_and_keeps_their_keys() -> None:
    base = _base()
    weight, bias = base.weight, base.bias
    layer = LoRALinear(base, rank=2, alpha=4, use_dora=True)
    assert layer.weight is weight and layer.bias is bias
    assert set(layer.state_dict()) == {
        "weight",
        "bias",
        "magnitude",
        "lora_a.weight",
        "lora_b.weight",
    }
    assert not weight.requires_grad and not bias.requires_grad
    assert layer.adapter_params() == ["lora_a.weight", "lora_b.weight", "magnitude"]


def test_lora_a_is_kaiming_uniform_like_peft() -> None:
    layer = LoRALinear(_base(in_f=64), rank=256, alpha=1)
    # kaiming_uniform(a=sqrt(5)) on fan_in 64 -> U(-1/8, 1/8)
    bound = 1 / 8
    a = layer.lora_a.weight
    assert a.abs().max() <= bound
    assert a.abs().max() > 0.95 * bound
    assert abs(a.std().item() - bound / 3**0.5) < 0.01


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(_base(), rank=0, alpha=1)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(_base(), rank=2, alpha=1, dropout=1.0)


def test_dropout_only_in_training() -> None:
    layer = LoRALinear(_base(), rank=4, alpha=8, dropout=0.5)
    with torch.no_grad():
        layer.lora_b.weight.normal_()
    x = _x(4, 64)
    layer.eval()
    first, second = layer(x), layer(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    no_dropout = LoRALinear(_base(), rank=4, alpha=8)
    no_dropout.load_state_dict(layer.state_dict())
    torch.testing.assert_close(first, no_dropout(x), rtol=0, atol=0)
    layer.train()
    torch.manual_seed(0)
    trained = layer(x)
    assert not torch.allclose(trained, first)
    # dropout hits only the adapter path: the base part is unchanged
    base_part = nn.functional.linear(x, layer.weight, layer.bias)
    torch.manual_seed(0)
    mask_x = nn.functional.dropout(x, 0.5, training=True)
    expected = base_part + layer.scaling * layer.lora_b(layer.lora_a(mask_x))
    torch.testing.assert_close(trained, expected, rtol=1e-5, atol=1e-5)


def _peft_layer(base: nn.Linear, *, r: int, alpha: float, dropout: float, use_dora: bool):
    from peft import LoraConfig, get_peft_model

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = base

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=["proj"], use_dora=use_dora
    )
    return get_peft_model(Holder(), config).base_model.model.proj


@pytest.mark.parametrize("training", [False, True])
def test_dora_matches_peft(training: bool) -> None:
    pytest.importorskip("peft")
    base = _base(bias=True)
    ours = LoRALinear(copy.deepcopy(base), rank=4, alpha=8, dropout=0.25, use_dora=True)
    peft_layer = _peft_layer(copy.deepcopy(base), r=4, alpha=8, dropout=0.25, use_dora=True)
    # same initial magnitude: the row norms of W
    torch.testing.assert_close(
        ours.magnitude, peft_layer.lora_magnitude_vector["default"].weight, rtol=1e-6, atol=1e-6
    )
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        peft_layer.lora_B["default"].weight.normal_(generator=g)
        peft_layer.lora_magnitude_vector["default"].weight.mul_(1.5)
        ours.lora_a.weight.copy_(peft_layer.lora_A["default"].weight)
        ours.lora_b.weight.copy_(peft_layer.lora_B["default"].weight)
        ours.magnitude.copy_(peft_layer.lora_magnitude_vector["default"].weight)
    ours.train(training)
    peft_layer.train(training)
    x = _x(3, 64).requires_grad_()
    torch.manual_seed(11)
    expected = peft_layer(x)
    torch.manual_seed(11)
    got = ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # gradients agree too (the weight norm is detached in both)
    expected.square().sum().backward()
    peft_grads = [
        peft_layer.lora_A["default"].weight.grad,
        peft_layer.lora_B["default"].weight.grad,
        peft_layer.lora_magnitude_vector["default"].weight.grad,
    ]
    got.square().sum().backward()
    for ours_p, theirs in zip(
        [ours.lora_a.weight, ours.lora_b.weight, ours.magnitude], peft_grads, strict=True
    ):
        torch.testing.assert_close(ours_p.grad, theirs, rtol=1e-4, atol=1e-5)


def test_dora_reinitialised_magnitude_makes_layer_equal_base_plus_lora_direction() -> None:
    base = _base()
    layer = LoRALinear(copy.deepcopy(base), rank=4, alpha=8, use_dora=True)
    torch.testing.assert_close(layer.magnitude, base.weight.norm(dim=1), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        layer.lora_b.weight.normal_()
    layer.initialize_dora_magnitude()
    # with magnitude == ||W + sBA|| DoRA reduces to plain LoRA
    plain = LoRALinear(copy.deepcopy(base), rank=4, alpha=8)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "magnitude"})
    x = _x(2, 64)
    torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_dora", [False, True])
def test_merge_unmerge_restores_base(use_dora: bool) -> None:
    base = _base()
    original = base.weight.detach().clone()
    layer = LoRALinear(base, rank=4, alpha=8, use_dora=use_dora)
    with torch.no_grad():
        layer.lora_b.weight.normal_(std=0.1)
        if use_dora:
            layer.magnitude.mul_(1.3)
    x = _x(5, 64)
    expected = layer(x)
    merged = layer.merged_weight()
    assert not layer.merged
    torch.testing.assert_close(layer.weight, original, rtol=0, atol=0)  # non-mutating
    torch.testing.assert_close(
        nn.functional.linear(x, merged, layer.bias), expected, rtol=1e-5, atol=1e-5
    )
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer.weight.detach(), merged, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer.merge()  # idempotent
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.weight.detach(), original, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_to_linear_and_disabled() -> None:
    base = _base()
    reference = copy.deepcopy(base)
    layer = LoRALinear(base, rank=4, alpha=8)
    with torch.no_grad():
        layer.lora_b.weight.normal_()
    x = _x(2, 64)
    linear = layer.to_linear()
    assert type(linear) is nn.Linear
    torch.testing.assert_close(linear(x), layer(x), rtol=1e-5, atol=1e-5)
    layer.disabled = True
    torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=0)


# ---- QLoRA -----------------------------------------------------------------


def test_nf4_base_dequantizes_within_nf4_error() -> None:
    from torchao.quantization import NF4Tensor

    base = _base(out_f=64, in_f=64, bias=False)
    original = base.weight.detach().clone()
    layer = LoRALinear(base, rank=4, alpha=8, quantize_base=True)
    assert isinstance(layer.weight, NF4Tensor)
    assert not layer.weight.requires_grad
    assert layer.lora_a.weight.dtype == torch.float32
    dense = layer.merged_weight()  # B = 0: just the dequantized base
    assert type(dense) is torch.Tensor and dense.dtype == torch.float32
    rel = ((dense - original).norm() / original.norm()).item()
    assert 0 < rel < 0.11
    assert "nf4" in repr(layer)


def test_nf4_forward_backward_and_training_reduces_loss() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 64), rank=8, alpha=16, quantize_base=True)
    x = torch.randn(32, 64)
    target = torch.randn(32, 64)
    trainable = [p for p in layer.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(layer.lora_a.weight), id(layer.lora_b.weight)}
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    losses = []
    for _ in range(20):
        loss = nn.functional.mse_loss(layer(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert layer.lora_b.weight.grad is not None
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("use_dora", [False, True])
def test_nf4_merge_unmerge_restores_the_quantized_weight(use_dora: bool) -> None:
    layer = LoRALinear(
        _base(out_f=64, in_f=64), rank=4, alpha=8, use_dora=use_dora, quantize_base=True
    )
    with torch.no_grad():
        layer.lora_b.weight.normal_(std=0.1)
    nf4 = layer.weight
    x = _x(3, 64)
    expected = layer(x)
    layer.merge()
    assert type(layer.weight.data) is torch.Tensor
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)
    layer.unmerge()
    assert layer.weight is nf4


def test_nf4_rejects_unquantizable_size() -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        LoRALinear(nn.Linear(10, 3), rank=2, alpha=2, quantize_base=True)


def _torchao_splits(shape, shards):
    """Whether torchao splits an NF4 weight of ``shape`` into ``shards`` by rows."""
    from tunesmith_lora._layers import to_nf4_weight

    if shape[0] % shards:
        return False
    weight = to_nf4_weight(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    try:
        torch.split(weight, shape[0] // shards)
    except AssertionError:  # torchao's: a block or scale tensor does not divide
        return False
    return True


def test_nf4_shards_evenly_matches_what_torchao_can_split():
    pytest.importorskip("torchao")
    from tunesmith_lora._layers import nf4_shards_evenly

    cases = [((256, 256), 2), ((128, 256), 2), ((64, 64), 2), ((256, 256), 3),
             ((512, 256), 4), ((64, 256), 4)]  # fmt: skip
    for shape, shards in cases:
        assert nf4_shards_evenly(shape, shards) == _torchao_splits(shape, shards), (shape, shards)
    assert nf4_shards_evenly((256, 256), 2) and not nf4_shards_evenly((64, 64), 2)
