"""Fused optimizer defaults and the optimizer step inside backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunesmith.training import OptimizerInBackward, cosine_with_warmup, fused_default


def test_fused_default_only_where_safe():
    params = [nn.Parameter(torch.zeros(3))]
    cpu = torch.device("cpu")
    assert fused_default(torch.optim.AdamW, {"lr": 1e-3}, cpu, params) == {"fused": True}
    # The config's own choice wins; optimizers without a fused kernel get nothing.
    assert fused_default(torch.optim.AdamW, {"foreach": True}, cpu, params) == {}
    assert fused_default(torch.optim.AdamW, {"fused": False}, cpu, params) == {}
    assert fused_default(torch.optim.Adagrad, {}, torch.device("meta"), params) == {}
    assert fused_default(torch.optim.RMSprop, {}, cpu, params) == {}
    assert fused_default(object, {}, cpu, params) == {}
    ints = [torch.zeros(3, dtype=torch.long)]
    assert fused_default(torch.optim.AdamW, {}, cpu, ints) == {}


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


def test_optimizer_in_backward_equals_the_normal_step():
    reference, model = _model(), _model()
    x, y = torch.randn(5, 6), torch.randn(5, 4)
    opt = torch.optim.AdamW(reference.parameters(), lr=1e-2, fused=True)
    sched = cosine_with_warmup(opt, num_warmup_steps=1, num_training_steps=4)
    in_bwd = OptimizerInBackward(
        model.named_parameters(), lambda group: torch.optim.AdamW(group, lr=1e-2, fused=True)
    )
    sched_bwd = cosine_with_warmup(in_bwd, num_warmup_steps=1, num_training_steps=4)
    for _ in range(4):
        nn.functional.mse_loss(reference(x), y).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        nn.functional.mse_loss(model(x), y).backward()
        assert all(p.grad is None for p in model.parameters())  # stepped and freed in backward
        in_bwd.step()
        sched_bwd.step()
    assert in_bwd.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for a, b in zip(reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    # Its state round-trips, per parameter name.
    state = in_bwd.state_dict()
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    fresh = OptimizerInBackward(model.named_parameters(), lambda g: torch.optim.AdamW(g, lr=1))
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == in_bwd.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="saved without optimizer_in_bwd"):
        fresh.load_state_dict(opt.state_dict())


def test_optimizer_in_backward_skips_a_non_finite_gradient_and_records_it():
    model = _model()
    in_bwd = OptimizerInBackward(
        model.named_parameters(), lambda g: torch.optim.SGD(g, lr=0.1)
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model[2].weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    model(torch.randn(2, 6)).sum().backward()
    assert in_bwd.nonfinite == ["2.weight"]
    after = dict(model.named_parameters())
    assert torch.equal(after["2.weight"], before["2.weight"])  # not applied
    assert not torch.equal(after["0.weight"], before["0.weight"])
