"""Meta consolidated.*.pth + params.json."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith import CheckpointError
from tunesmith.checkpoint import load_meta_checkpoint


def _write(directory, shards=1):
    params = {"dim": 8, "n_layers": 1, "vocab_size": 16}
    (directory / "params.json").write_text(json.dumps(params))
    tensors = {"tok_embeddings.weight": torch.randn(16, 8), "rope.freqs": torch.ones(4)}
    for i in range(shards):
        torch.save(tensors, directory / f"consolidated.{i:02d}.pth")
    return tensors, params


def test_load(tmp_path):
    tensors, params = _write(tmp_path)
    state_dict, loaded_params = load_meta_checkpoint(tmp_path)
    assert loaded_params == params
    assert set(state_dict) == set(tensors)
    assert all(torch.equal(state_dict[k], tensors[k]) for k in tensors)


def test_model_parallel_shards_are_refused(tmp_path):
    _write(tmp_path, shards=2)
    with pytest.raises(CheckpointError) as err:
        load_meta_checkpoint(tmp_path)
    message = str(err.value)
    assert "holds 2 model-parallel shards (consolidated.00.pth … consolidated.01.pth)" in message
    assert "use the model's Hugging Face repository" in message
    assert "Meta's conversion script" in message


def test_missing_params(tmp_path):
    _write(tmp_path)
    (tmp_path / "params.json").unlink()
    with pytest.raises(
        CheckpointError, match=r"no params.json in .* \(it holds consolidated.00.pth\)"
    ):
        load_meta_checkpoint(tmp_path)


def test_missing_weights(tmp_path):
    (tmp_path / "params.json").write_text("{}")
    with pytest.raises(
        CheckpointError, match=r"no consolidated.\*.pth in .*consolidated.00.pth beside params.json"
    ):
        load_meta_checkpoint(tmp_path)


def test_code_in_pickle_is_refused(tmp_path):
    """weights_only=True: a pickle that would run code is an error, not executed."""
    _write(tmp_path)
    torch.save({"w": torch.zeros(1), "obj": _Evil()}, tmp_path / "consolidated.00.pth")
    with pytest.raises(CheckpointError, match="holds more than tensors .*so it was not loaded"):
        load_meta_checkpoint(tmp_path)


class _Evil:
    pass


def test_bad_params_json(tmp_path):
    _write(tmp_path)
    (tmp_path / "params.json").write_text("{")
    with pytest.raises(CheckpointError, match="params.json is not valid JSON"):
        load_meta_checkpoint(tmp_path)
