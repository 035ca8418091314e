"""load_model_weights: one clear error when a checkpoint does not fit the model."""

from __future__ import annotations

import pytest
import torch

from tunesmith import CheckpointError
from tunesmith.checkpoint import load_model_weights

from .ckpt_fakes import CONFIG, build_from_hf_config


def _weights(model):
    return {
        k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(".cache")
    }


def _model(**overrides):
    return build_from_hf_config({**CONFIG, **overrides})


def test_copies_weights():
    torch.manual_seed(0)
    source = _weights(_model())
    target = _model()
    result = load_model_weights(target, source)
    assert result.missing == [] and result.unexpected == []
    for key, value in source.items():
        assert torch.equal(target.state_dict()[key], value)


def test_casts_into_the_model_dtype():
    source = {k: v.bfloat16() for k, v in _weights(_model()).items()}
    target = _model()
    load_model_weights(target, source)
    assert target.norm.weight.dtype == torch.float32
    assert torch.equal(target.norm.weight, source["norm.weight"].float())


def test_shape_mismatch_message():
    source = _weights(_model(hidden_size=16))
    with pytest.raises(CheckpointError) as err:
        load_model_weights(_model(), source)
    message = str(err.value)
    assert message.startswith("the checkpoint does not match the model: ")
    assert "layers.0.attn.q_proj.weight: checkpoint [16, 16] vs model [8, 8]" in message
    assert "tok_embeddings.weight: checkpoint [32, 16] vs model [32, 8]" in message
    assert "more)" in message  # only the first few are listed
    assert message.endswith(
        "— build the model from the checkpoint with model: {_component_: auto}, or choose "
        "the builder that matches the checkpoint's config.json"
    )


def test_missing_and_unexpected_in_one_error():
    source = _weights(_model(num_hidden_layers=3))
    del source["norm.weight"]
    with pytest.raises(CheckpointError) as err:
        load_model_weights(_model(), source)
    message = str(err.value)
    assert "1 key(s) the model needs are missing (norm.weight)" in message
    assert (
        "4 unexpected key(s) in the checkpoint (layers.2.attn.output_proj.weight, "
        "layers.2.attn.q_proj.weight, layers.2.mlp.w3.weight, layers.2.sa_norm.weight)"
    ) in message


def test_not_strict_reports_instead():
    source = _weights(_model())
    source["extra.weight"] = torch.zeros(1)
    del source["norm.weight"]
    result = load_model_weights(_model(), source, strict=False)
    assert result.missing == ["norm.weight"]
    assert result.unexpected == ["extra.weight"]
    source["layers.0.sa_norm.weight"] = torch.zeros(3)
    with pytest.raises(
        CheckpointError, match=r"layers.0.sa_norm.weight: checkpoint \[3\] vs model \[8\]"
    ):
        load_model_weights(_model(), source, strict=False)


def test_tied_model_needs_no_output_weight():
    torch.manual_seed(0)
    source = _weights(_model(tie_word_embeddings=True))
    del source["output.weight"]
    target = _model(tie_word_embeddings=True)
    load_model_weights(target, source)
    assert target.output.weight is target.tok_embeddings.weight
    assert torch.equal(target.output.weight, source["tok_embeddings.weight"])


def test_tied_model_accepts_the_output_weight_stored_twice():
    source = _weights(_model(tie_word_embeddings=True))
    source["output.weight"] = source["tok_embeddings.weight"].clone()
    target = _model(tie_word_embeddings=True)
    load_model_weights(target, source)
    assert torch.equal(target.output.weight, source["tok_embeddings.weight"])


def test_tied_model_loads_through_the_output_name():
    source = _weights(_model(tie_word_embeddings=True))
    source["output.weight"] = source.pop("tok_embeddings.weight")
    target = _model(tie_word_embeddings=True)
    load_model_weights(target, source)
    assert torch.equal(target.tok_embeddings.weight, source["output.weight"])


class _TiedHead(torch.nn.Module):
    """A model whose output layer reuses the embedding without a parameter of its own."""

    def __init__(self):
        super().__init__()
        self.tok_embeddings = torch.nn.Embedding(4, 2)


def test_checkpoint_with_separate_output_for_a_tied_head():
    source = {"tok_embeddings.weight": torch.ones(4, 2), "output.weight": torch.ones(4, 2)}
    load_model_weights(_TiedHead(), source)  # the same values: fine
    source["output.weight"] = torch.zeros(4, 2)
    with pytest.raises(
        CheckpointError,
        match="ties its output layer to the embedding but the checkpoint has its own output weight",
    ):
        load_model_weights(_TiedHead(), source)


def test_untied_model_missing_output():
    source = _weights(_model())
    del source["output.weight"]
    with pytest.raises(CheckpointError, match=r"missing \(output.weight\)"):
        load_model_weights(_model(), source)


def test_meta_device_model_receives_the_tensors_and_stays_tied():
    source = _weights(_model(tie_word_embeddings=True))
    del source["output.weight"]
    with torch.device("meta"):
        target = _model(tie_word_embeddings=True)
    load_model_weights(target, source)
    assert not target.tok_embeddings.weight.is_meta
    assert target.output.weight is target.tok_embeddings.weight
    assert torch.equal(target.norm.weight, source["norm.weight"])
