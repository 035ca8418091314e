"""PEFT adapter settings beyond plain LoRA/DoRA, on adapters PEFT itself writes: those
whose logits are plain LoRA's load with PEFT's logits; each of the others is refused in
one line that names the setting and what to do, instead of loading as plain LoRA (which
gave other logits than PEFT's, without a word)."""

from __future__ import annotations

import json

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from tunesmith import CheckpointError  # noqa: E402
from tunesmith.checkpoint import Checkpointer  # noqa: E402
from tunesmith.peft import transform_for_adapter  # noqa: E402
from tunesmith.testing import reference_checkpoint  # noqa: E402
from tunesmith_llama import tiny_llama_config  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _peft_adapter(root, settings: dict, *, variant="llama3_1", save: dict | None = None):
    """A tiny Llama, a PEFT adapter of it (non-zero B) and PEFT's logits with it."""
    config = tiny_llama_config(variant)
    reference_checkpoint(root / "base", config)
    base = transformers.AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.float32)
    torch.manual_seed(0)
    model = peft.get_peft_model(base, peft.LoraConfig(task_type="CAUSAL_LM", **settings))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(root / "adapter", **(save or {}))
    tokens = torch.randint(0, config["vocab_size"], (2, 12), generator=generator)
    fresh = transformers.AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.float32)
    with torch.no_grad():
        expected = peft.PeftModel.from_pretrained(fresh, root / "adapter").eval()(tokens).logits
    return tokens, expected


def _load(root):
    checkpointer = Checkpointer(root / "base")
    model = checkpointer.load_model().eval()
    directory, transform = transform_for_adapter(root / "adapter")
    transform.load_adapter(model, directory, adapter=checkpointer.adapter)
    return model.eval()


@pytest.mark.parametrize(
    "settings, save",
    [
        # PEFT's default save_embedding_layers also writes lm_head.base_layer.weight.
        ({"target_modules": ["q_proj", "lm_head"]}, None),
        # VeLoRA changes only the backward pass; its projections are not needed.
        ({"target_modules": _LINEAR, "velora_config": peft.tuners.lora.config.VeloraConfig()},
         None),
    ],
    ids=["lm_head-with-base-copy", "velora"],
)  # fmt: skip
def test_adapters_that_compute_plain_lora_load_with_peft_logits(tmp_path, settings, save):
    tokens, expected = _peft_adapter(tmp_path, {"r": 4, "lora_alpha": 8, **settings}, save=save)
    with torch.no_grad():
        torch.testing.assert_close(_load(tmp_path)(tokens), expected, atol=1e-5, rtol=0)


def test_a_base_copy_unlike_the_model_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _peft_adapter(tmp_path, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "lm_head"]})
    path = tmp_path / "adapter" / "adapter_model.safetensors"
    tensors = load_file(path)
    key = "base_model.model.lm_head.base_layer.weight"
    tensors[key] = tensors[key] + 1.0  # as if trained on another base
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"carries base weights for lm_head .*differ"):
        _load(tmp_path)


_LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}


@pytest.mark.parametrize(
    "settings, variant, message",
    [
        ({**_LORA, "init_lora_weights": "pissa"}, "llama3_1",
         r"init_lora_weights='pissa', which also rewrites the base model's weights.*"
         r"merge_and_unload"),
        ({**_LORA, "init_lora_weights": "olora"}, "llama3_1", r"init_lora_weights='olora'"),
        ({**_LORA, "alora_invocation_tokens": [5, 6]}, "llama3_1",
         r"activated LoRA \(alora_invocation_tokens.*use it with PEFT"),
        ({**_LORA, "layer_replication": [[0, 2], [1, 2]]}, "llama3_1", r"layer_replication"),
        ({**_LORA, "trainable_token_indices": [3, 4]}, "llama3_1",
         r"trainable token embeddings"),
        ({**_LORA, "target_modules": ["q_proj", "embed_tokens"]}, "llama3_1",
         r"adapts embedding layers \(model\.embed_tokens: lora_embedding_A/B\)"),
        ({**_LORA, "target_modules": ["q_proj", "lm_head"]}, "llama3_2",
         r"adapts output, the output layer, which this model ties to its token embeddings"),
    ],
    ids=["pissa", "olora", "alora", "layer_replication", "trainable_tokens", "embedding",
         "tied-head"],
)  # fmt: skip
def test_settings_tunesmith_does_not_compute_are_refused_in_one_line(
    tmp_path, settings, variant, message
):
    _peft_adapter(tmp_path, settings, variant=variant)
    with pytest.raises(CheckpointError, match=message) as error:
        _load(tmp_path)
    assert "\n" not in str(error.value)


def test_several_such_settings_get_a_line_each(tmp_path):
    _peft_adapter(tmp_path, _LORA)
    path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "lora_bias": True, "init_lora_weights": "corda"}))
    with pytest.raises(CheckpointError) as error:
        _load(tmp_path)
    lines = str(error.value).splitlines()
    assert len(lines) == 3 and "lora_bias" in lines[1] and "'corda'" in lines[2]
