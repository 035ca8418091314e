"""Gemma 3 4B-27B checkpoints (Gemma3ForConditionalGeneration): the language model is
read from either key layout, equals transformers' text model, trains, and is written
back in the source's layout beside a byte-identical vision tower and projector."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tunesmith import CheckpointError
from tunesmith.checkpoint import Checkpointer, load_hf_state_dict
from tunesmith.testing import reference_checkpoint
from tunesmith_gemma import tiny_gemma3_config

transformers = pytest.importorskip("transformers")

# transformers 4.52-4.57 saved the model under these prefixes; the Hub files and
# transformers 5 use language_model.model.*, vision_tower.*, multi_modal_projector.*.
_NEWER = {
    "language_model.model.": "model.language_model.",
    "language_model.lm_head.": "lm_head.",
    "vision_tower.": "model.vision_tower.",
    "multi_modal_projector.": "model.multi_modal_projector.",
}
_VISION = ("vision_tower.", "multi_modal_projector.")


def _relayout(directory) -> None:
    tensors = load_file(directory / "model.safetensors")
    renamed = {}
    for key, value in tensors.items():
        old = next((o for o in _NEWER if key.startswith(o)), None)
        renamed[_NEWER[old] + key[len(old) :] if old else key] = value
    save_file(renamed, str(directory / "model.safetensors"), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def hub_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gemma3-hub")
    reference_checkpoint(directory, tiny_gemma3_config(), seed=3)
    keys = set(load_file(directory / "model.safetensors"))
    assert any(k.startswith("language_model.model.") for k in keys)  # the Hub's layout
    assert any(k.startswith(_VISION) for k in keys)
    return directory


def _copy(source, target, *, newer: bool):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    if newer:
        _relayout(target)
    return target


def _tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(3, 512, (2, 20), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("newer", [False, True], ids=["hub-layout", "transformers-4.52-layout"])
def test_train_and_save_keeps_layout_and_vision_tower(tmp_path, hub_checkpoint, newer):
    source = _copy(hub_checkpoint, tmp_path / "in", newer=newer)
    original = load_hf_state_dict(source)
    checkpointer = Checkpointer(source, tmp_path / "out")
    model = checkpointer.load_model()
    reference = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, atol=1e-4, rtol=0)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(tokens).logsumexp(-1).mean().backward()
    optimizer.step()
    epoch = checkpointer.save_epoch(0, model.state_dict())

    written = load_hf_state_dict(epoch)
    assert set(written) == set(original)  # same names, same layout
    vision = [k for k in original if k.startswith(_VISION) or k.startswith("model.vision")
              or k.startswith("model.multi_modal")]  # fmt: skip
    assert vision and all(
        written[k].dtype == original[k].dtype and torch.equal(written[k], original[k])
        for k in vision
    )
    text = [k for k in original if k not in vision]
    assert any(not torch.equal(written[k], original[k]) for k in text)  # it did train
    again = transformers.AutoModelForCausalLM.from_pretrained(epoch, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(again(tokens).logits, model(tokens), atol=1e-4, rtol=0)


def test_language_model_equals_transformers_text_model(tmp_path, hub_checkpoint):
    """The native model of a 4B-style checkpoint is Gemma3ForCausalLM of its text_config."""
    config = json.loads((hub_checkpoint / "config.json").read_text())
    text = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**config["text_config"]))
    weights = {
        k.removeprefix("language_model."): v
        for k, v in load_file(hub_checkpoint / "model.safetensors").items()
        if k.startswith("language_model.")
    }
    missing, unexpected = text.load_state_dict(weights, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected  # lm_head is tied
    text.tie_weights()
    model = Checkpointer(hub_checkpoint).load_model().eval()
    tokens = _tokens(2)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), text.eval()(tokens).logits, atol=1e-4, rtol=0)


def test_an_adapter_of_the_vision_tower_is_refused(tmp_path, hub_checkpoint):
    from tunesmith.peft import transform_for_adapter

    directory = tmp_path / "adapter"
    directory.mkdir()
    name = "base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj"
    save_file(
        {f"{name}.lora_A.weight": torch.zeros(2, 32), f"{name}.lora_B.weight": torch.zeros(32, 2)},
        str(directory / "adapter_model.safetensors"),
    )
    (directory / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4,
        "target_modules": ["q_proj"], "base_model_name_or_path": str(hub_checkpoint),
    }))  # fmt: skip
    checkpointer = Checkpointer(hub_checkpoint)
    model = checkpointer.load_model()
    adapter_dir, loader = transform_for_adapter(directory)
    with pytest.raises(CheckpointError, match="keeps unchanged .*trains only its language model"):
        loader.load_adapter(model, adapter_dir, adapter=checkpointer.adapter)


def test_adapter_of_older_transformers_module_names_loads(tmp_path, hub_checkpoint):
    """PEFT on transformers < 4.52 named the modules language_model.model.layers...; such
    adapters load onto the same layers as the current names."""
    from tunesmith.peft import transform_for_adapter

    checkpointer = Checkpointer(hub_checkpoint)
    directory = tmp_path / "adapter"
    directory.mkdir()
    name = "base_model.model.language_model.model.layers.1.self_attn.q_proj"
    a, b = torch.randn(2, 64), torch.randn(128, 2)
    save_file({f"{name}.lora_A.weight": a, f"{name}.lora_B.weight": b},
              str(directory / "adapter_model.safetensors"))  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 2,
        "target_modules": ["q_proj"], "base_model_name_or_path": str(hub_checkpoint),
    }))  # fmt: skip
    model = checkpointer.load_model()
    adapter_dir, loader = transform_for_adapter(directory)
    loader.load_adapter(model, adapter_dir, adapter=checkpointer.adapter)
    merged = loader.merged_state_dict(model)
    base = checkpointer.load_model().state_dict()
    delta = merged["layers.1.attn.q_proj.weight"] - base["layers.1.attn.q_proj.weight"]
    torch.testing.assert_close(delta, b @ a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("top, text", [(False, True), (True, False)], ids=["untied", "tied"])
def test_the_top_level_tie_decides_the_head(tmp_path, top, text):
    """transformers 5 writes text_config.tie_word_embeddings too, but the model ties its
    head by the top-level value: a checkpoint where the two differ loads as transformers
    reads it (an untied one with its own head weights, a tied one without)."""
    config = {**tiny_gemma3_config(tie_word_embeddings=text), "tie_word_embeddings": top}
    reference = reference_checkpoint(tmp_path, config, seed=4)
    with_head = any(k.endswith("lm_head.weight") for k in load_file(tmp_path / "model.safetensors"))
    assert with_head is not top
    model = Checkpointer(tmp_path).load_model().eval()
    tokens = _tokens(3)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, atol=1e-4, rtol=0)
