import copy

import pytest
import torch
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.training import activation_offloading, apply_activation_checkpointing


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)
        self.drop = nn.Dropout(0.2)
        self.calls = 0

    def forward(self, x, *, scale=1.0):
        self.calls += 1
        return x + self.drop(torch.relu(self.fc(self.norm(x)))) * scale


class Net(nn.Module):
    def __init__(self, dim=16, n=3):
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.layers = nn.ModuleList(Block(dim) for _ in range(n))
        self.out = nn.Linear(dim, 4)

    def forward(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x, scale=0.5)
        return self.out(x)


def _grads(model, x, seed=0):
    torch.manual_seed(seed)  # same dropout masks in both runs
    model(x).pow(2).sum().backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def test_checkpointing_keeps_grads_and_keys_and_recomputes():
    torch.manual_seed(0)
    model = Net()
    ckpt = copy.deepcopy(model)
    assert apply_activation_checkpointing(ckpt, layer_types={Block}) == 3

    assert list(ckpt.state_dict()) == list(model.state_dict())
    assert [n for n, _ in ckpt.named_modules()] == [n for n, _ in model.named_modules()]
    assert all(type(m) is Block for m in ckpt.layers)

    x = torch.randn(5, 16)
    ref = _grads(model, x)
    got = _grads(ckpt, x)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    # Forward ran once in the forward pass and again during backward.
    assert [b.calls for b in model.layers] == [1, 1, 1]
    assert [b.calls for b in ckpt.layers] == [2, 2, 2]

    # Checkpoints load across the two, both ways.
    ckpt.load_state_dict(model.state_dict())
    model.load_state_dict(ckpt.state_dict())


def test_no_recompute_without_grad_and_idempotent_and_by_name():
    model = Net()
    assert apply_activation_checkpointing(model, layer_types="Block") == 3
    assert apply_activation_checkpointing(model, layer_types=["Block"]) == 3  # no double wrap
    with torch.no_grad():
        model(torch.randn(2, 16))
    assert [b.calls for b in model.layers] == [1, 1, 1]
    model(torch.randn(2, 16)).sum().backward()
    assert [b.calls for b in model.layers] == [3, 3, 3]


def test_deepcopy_of_checkpointed_model_runs_its_own_weights():
    model = Net()
    apply_activation_checkpointing(model, layer_types={Block})
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.parameters():
            p.zero_()
    x = torch.randn(2, 16, requires_grad=True)
    assert torch.equal(clone(x), torch.zeros(2, 4))
    assert not torch.equal(model(x), torch.zeros(2, 4))


def test_no_match_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        apply_activation_checkpointing(Net(), layer_types="Blok")
    msg = str(e.value)
    assert "found no module of type ['Blok'] in Net" in msg
    assert "did you mean 'Block'" in msg


def test_activation_offloading_gives_same_grads():
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(3, 16)
    ref = _grads(model, x)
    model.zero_grad()
    offload = activation_offloading(True)
    assert isinstance(offload, torch.autograd.graph.save_on_cpu)
    with offload:
        loss = model(x).pow(2).sum()
    loss.backward()
    for k, p in model.named_parameters():
        assert torch.equal(p.grad, ref[k]), k
    with activation_offloading(False) as ctx:
        assert ctx is None


def test_offloading_combines_with_checkpointing():
    torch.manual_seed(0)
    model = Net()
    ckpt = copy.deepcopy(model)
    apply_activation_checkpointing(ckpt, layer_types={Block})
    x = torch.randn(3, 16)
    ref = _grads(model, x)
    torch.manual_seed(0)
    with activation_offloading(True):
        loss = ckpt(x).pow(2).sum()
    loss.backward()
    for k, p in ckpt.named_parameters():
        assert torch.equal(p.grad, ref[k]), k
