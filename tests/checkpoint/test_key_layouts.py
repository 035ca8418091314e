"""A multimodal-style checkpoint: the text model under a prefix that differs between
writers (``CheckpointAdapter.key_layouts``) and tensors the native model does not hold
(``CheckpointAdapter.passthrough``), both written back as they were read."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tunesmith import hookimpl
from tunesmith.checkpoint import Checkpointer, detect_key_layout, load_model_weights
from tunesmith.registry import load_registry, reset_registry

from .ckpt_fakes import CONFIG, FAKE_ADAPTER, build_from_hf_config, native_to_hf

# The table names the text model as the transformers modules do ("model.text." ...);
# an older writer stored it under "text_model.model." / "text_model.lm_head.".
_OLD = {"model.text.": "text_model.model.", "lm_head.": "text_model.lm_head."}
TABLE = {
    hf.replace("model.", "model.text.", 1) if hf.startswith("model.") else hf: native
    for hf, native in FAKE_ADAPTER.hf_to_native.items()
}
ADAPTER = dataclasses.replace(
    FAKE_ADAPTER,
    family="fakevlm",
    model_types=("fakevlm",),
    aliases=(),
    hf_to_native=TABLE,
    passthrough=(r"^(model\.)?vision\.",),
    key_layouts=(_OLD,),
)


class _Plugin:
    @hookimpl
    def register_checkpoint_adapters(self, register):
        register(ADAPTER)


@pytest.fixture(autouse=True)
def registry():
    registry = load_registry(builtins=False, entry_points=False, extra={"fakevlm": _Plugin()})
    reset_registry(registry)
    yield registry
    reset_registry(None)


def _write(directory, *, old_layout: bool) -> dict[str, torch.Tensor]:
    """A checkpoint in either layout, with two vision tensors; returns what it holds."""
    torch.manual_seed(0)
    model = build_from_hf_config(CONFIG)
    native = {k: v.detach().clone() for k, v in model.state_dict().items() if ".cache" not in k}
    hf = {k.replace("model.", "model.text.", 1): v for k, v in native_to_hf(native).items()}
    vision = "vision." if old_layout else "model.vision."
    hf[vision + "patch.weight"] = torch.randn(3, 5)
    hf[vision + "proj.bias"] = torch.randn(7).to(torch.bfloat16)
    if old_layout:
        hf = {
            next((new + k[len(old) :] for old, new in _OLD.items() if k.startswith(old)), k): v
            for k, v in hf.items()
        }
    directory.mkdir(parents=True)
    save_file(hf, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps({**CONFIG, "model_type": "fakevlm"}))
    return hf


@pytest.mark.parametrize("old_layout", [False, True])
def test_layout_and_passthrough_survive_a_save(tmp_path, old_layout):
    source = _write(tmp_path / "in", old_layout=old_layout)
    assert (detect_key_layout(source, ADAPTER) is not None) is old_layout
    checkpointer = Checkpointer(tmp_path / "in", tmp_path / "out")
    model = build_from_hf_config(CONFIG)
    load_model_weights(model, checkpointer.load_state_dict())
    assert sorted(checkpointer.passthrough) == sorted(k for k in source if "vision." in k)

    state = {k: v for k, v in model.state_dict().items() if ".cache" not in k}
    written = load_file(checkpointer.save_epoch(0, state) / "model.safetensors")
    assert set(written) == set(source)
    for key, tensor in source.items():  # same names, dtypes and bytes
        assert written[key].dtype == tensor.dtype
        assert torch.equal(written[key], tensor), key


def test_the_table_names_are_the_ones_adapters_use():
    # PEFT names modules as the transformers model does, whatever the files' layout.
    assert ADAPTER.hf_module("layers.0.attn.q_proj") == (
        "model.text.layers.0.self_attn.q_proj",
        None,
    )


@pytest.mark.parametrize("old_layout", [False, True])
def test_a_checkpointer_that_did_not_load_the_weights_saves_the_same(tmp_path, old_layout):
    # merge-adapter and friends load the model through one Checkpointer, save through another.
    source = _write(tmp_path / "in", old_layout=old_layout)
    model = build_from_hf_config(CONFIG)
    load_model_weights(model, Checkpointer(tmp_path / "in").load_state_dict())
    state = {k: v for k, v in model.state_dict().items() if ".cache" not in k}
    epoch = Checkpointer(tmp_path / "in", tmp_path / "out").save_epoch(0, state)
    written = load_file(epoch / "model.safetensors")
    assert set(written) == set(source)
    assert all(torch.equal(written[k], v) for k, v in source.items())
