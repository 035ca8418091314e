import io
import random

import numpy as np
import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.training import rng_state, set_rng_state, set_seed


def _draw():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_set_seed_reproduces_every_generator():
    assert set_seed(1234) == 1234
    first = _draw()
    set_seed(1234)
    assert _draw() == first
    set_seed(1235)
    assert _draw() != first


def test_none_seed_is_random_logged_and_returned(caplog):
    caplog.set_level("INFO", logger="tunesmith.training._seed")
    seed = set_seed(None)
    assert 0 <= seed < 2**32
    assert f"random seed {seed}" in caplog.text
    first = _draw()
    set_seed(seed)
    assert _draw() == first


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "7", True])
def test_bad_seed_message(bad):
    with pytest.raises(ConfigError, match=r"seed must be an integer between 0 and 4294967295"):
        set_seed(bad)


def test_rng_state_round_trip_through_torch_save():
    set_seed(7)
    _draw()
    state = rng_state()
    buf = io.BytesIO()
    torch.save(state, buf)
    expected = [_draw() for _ in range(3)]

    set_seed(99)  # move every generator elsewhere
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))  # checkpoints load weights_only
    assert [_draw() for _ in range(3)] == expected
    assert set(state) >= {"python", "torch", "numpy"}
