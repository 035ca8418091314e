import logging
import math

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.training import constant_with_warmup, cosine_with_warmup, linear_with_warmup

BASE_LR = 2.0


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_cosine_warmup_ramp_midpoint_and_end():
    opt = _optimizer()
    sched = cosine_with_warmup(opt, num_warmup_steps=10, num_training_steps=110)
    lrs = _lrs(sched, opt, 111)
    # Linear ramp: step / warmup.
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(BASE_LR * 0.5)
    assert lrs[9] == pytest.approx(BASE_LR * 0.9)
    assert lrs[10] == pytest.approx(BASE_LR)  # peak at the end of warmup
    # Half way through the decay the half-period cosine is at half the peak.
    assert lrs[60] == pytest.approx(BASE_LR * 0.5)
    assert lrs[35] == pytest.approx(BASE_LR * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lrs[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))


def test_cosine_full_cycle_returns_to_peak():
    opt = _optimizer()
    sched = cosine_with_warmup(opt, num_warmup_steps=0, num_training_steps=100, num_cycles=1.0)
    lrs = _lrs(sched, opt, 101)
    assert lrs[0] == pytest.approx(BASE_LR)
    assert lrs[50] == pytest.approx(0.0, abs=1e-12)
    assert lrs[100] == pytest.approx(BASE_LR)


def test_linear_with_warmup():
    opt = _optimizer()
    sched = linear_with_warmup(opt, num_warmup_steps=4, num_training_steps=14)
    lrs = _lrs(sched, opt, 16)
    assert lrs[:5] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert lrs[9] == pytest.approx(BASE_LR * 0.5)
    assert lrs[14] == 0.0 and lrs[15] == 0.0  # clamped, never negative


def test_constant_with_warmup_accepts_num_training_steps():
    opt = _optimizer()
    sched = constant_with_warmup(opt, num_warmup_steps=2, num_training_steps=999)
    assert _lrs(sched, opt, 6) == pytest.approx([0.0, 1.0, 2.0, 2.0, 2.0, 2.0])


def test_resume_with_last_epoch_matches_uninterrupted():
    opt = _optimizer()
    sched = cosine_with_warmup(opt, num_warmup_steps=3, num_training_steps=20)
    full = _lrs(sched, opt, 20)

    opt2 = _optimizer()  # a fresh optimizer: no "initial_lr" yet
    sched2 = cosine_with_warmup(opt2, num_warmup_steps=3, num_training_steps=20, last_epoch=6)
    assert _lrs(sched2, opt2, 13) == pytest.approx(full[7:])


def test_state_dict_round_trip():
    opt = _optimizer()
    sched = linear_with_warmup(opt, num_warmup_steps=2, num_training_steps=10)
    _lrs(sched, opt, 5)
    state = sched.state_dict()
    opt2 = _optimizer()
    sched2 = linear_with_warmup(opt2, num_warmup_steps=2, num_training_steps=10)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_bad_steps_are_config_errors(caplog):
    with pytest.raises(ConfigError, match="num_warmup_steps must be >= 0"):
        cosine_with_warmup(_optimizer(), num_warmup_steps=-1, num_training_steps=10)
    with pytest.raises(ConfigError, match="num_training_steps must be >= 1.*dataset"):
        linear_with_warmup(_optimizer(), num_warmup_steps=0, num_training_steps=0)
    with pytest.raises(ConfigError, match="must be an integer"):
        constant_with_warmup(_optimizer(), num_warmup_steps=1.5)
    with caplog.at_level(logging.WARNING):
        cosine_with_warmup(_optimizer(), num_warmup_steps=50, num_training_steps=10)
    assert "never reaches its peak" in caplog.text
