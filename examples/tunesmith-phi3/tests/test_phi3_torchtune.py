"""torchtune's Phi-3 and Phi-4 configs (``fixtures/torchtune/phi3``, ``.../phi4``:
torchtune 0.6.1's own files, unchanged) translate to this plugin's models and train the
tiny checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.config._load import _read
from tunesmith.config._torchtune import recipe_from_comments, translate_torchtune_config
from tunesmith_phi3 import phi3_mini_4k

TORCHTUNE = Path(__file__).resolve().parent / "fixtures" / "torchtune"


def _translate(name: str, family: str = "phi3", **changes):
    path = TORCHTUNE / family / f"{name}.yaml"
    raw = {**_read(path, []), **changes}
    return translate_torchtune_config(raw, recipe=recipe_from_comments(path.read_text()))


def _train_lora(config: Path, checkpoint_dir: Path, data: Path, out: Path, *extra: str):
    """``tunesmith run lora_finetune_single_device`` on one of torchtune's LoRA configs,
    pointed at a tiny checkpoint as torchtune's own configs are in the core's tests: the
    builder swapped for the component builder (the architecture from config.json)."""
    arch = json.loads((checkpoint_dir / "config.json").read_text())
    overrides = [
        "model._component_=torchtune.models.phi3.lora_phi3",
        f"model.vocab_size={arch['vocab_size']}",
        f"model.num_layers={arch['num_hidden_layers']}",
        f"checkpointer.checkpoint_dir={checkpoint_dir}",
        "checkpointer.checkpoint_files=[model.safetensors]",
        f"checkpointer.output_dir={out}",
        f"output_dir={out}",
        "tokenizer.max_seq_len=256",
        "dataset.source=json",
        f"dataset.data_files={data}",
        "device=cpu",
        "dtype=fp32",
        "batch_size=2",
        "max_steps_per_epoch=2",
        "gradient_accumulation_steps=1",
        "enable_activation_checkpointing=False",
        "lr_scheduler.num_warmup_steps=0",
        *extra,
    ]
    result = CliRunner().invoke(
        cli, ["run", "lora_finetune_single_device", "--config", str(config), *overrides]
    )
    assert result.exit_code == 0, result.output
    assert "model._component_: torchtune.models.phi3.lora_phi3 -> auto" in result.output
    adapter = out / "epoch_0" / "adapter"
    # q, v and the output projection, and the MLP, as HF's fused modules (PEFT's names)
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["target_modules"] == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]
    return result.output, adapter


def test_torchtunes_phi3_mini_is_the_4k_model():
    model = tunesmith.get_registry().get("models", "phi3_mini")
    assert model.builder is phi3_mini_4k
    assert (model.family, model.hf_repo) == ("phi3", "microsoft/Phi-3-mini-4k-instruct")


#: torchtune's config folder -> the model, checkpointer model_type and a dropped key.
_EXPECTED = {
    "phi3": ("phi3_mini", "PHI3_MINI", "tokenizer.path"),
    "phi4": ("phi4_14b", "PHI4", "tokenizer.merges_path"),
}


@pytest.mark.parametrize(
    ("family", "name", "recipe", "peft"),
    [
        ("phi3", "mini_full_low_memory", "full_finetune_single_device", None),
        ("phi3", "mini_lora_single_device", "lora_finetune_single_device", "lora"),
        ("phi3", "mini_qlora_single_device", "lora_finetune_single_device", "qlora"),
        ("phi4", "14B_full", "full_finetune_distributed", None),
        ("phi4", "14B_full_low_memory", "full_finetune_single_device", None),
        ("phi4", "14B_lora", "lora_finetune_distributed", "lora"),
        ("phi4", "14B_lora_single_device", "lora_finetune_single_device", "lora"),
        ("phi4", "14B_qlora_single_device", "lora_finetune_single_device", "qlora"),
    ],
)
def test_torchtunes_configs_translate_to_this_plugins_models(family, name, recipe, peft):
    """phi3_mini_tokenizer's tokenizer.model and phi4_tokenizer's vocab.json + merges.txt
    become the download's tokenizer.json (``tokenizer: auto``)."""
    model, model_type, dropped = _EXPECTED[family]
    assert recipe_from_comments((TORCHTUNE / family / f"{name}.yaml").read_text()) == recipe
    t = _translate(name, family)
    assert t.problems == []
    assert t.config["model"] == {"_component_": model}
    assert t.config["checkpointer"]["model_type"] == model_type
    assert t.config["tokenizer"] == {"_component_": "auto", "max_seq_len": None}
    assert any(n.startswith(f"{dropped}: dropped") for n in t.notes), t.notes
    if peft is None:
        assert "peft" not in t.config
    else:
        block = t.config["peft"]
        assert block["_component_"] == peft
        assert block["lora_attn_modules"] == ["q_proj", "v_proj", "output_proj"]
        settings = (block["apply_lora_to_mlp"], block["lora_rank"], block["lora_alpha"])
        assert settings == (True, 8, 16)


def test_an_unregistered_phi3_builder_names_the_installed_plugin():
    t = _translate(
        "mini_full_low_memory", model={"_component_": "torchtune.models.phi3.phi3_mini_4"}
    )
    [problem] = t.problems
    assert "the installed tunesmith-phi3 registers no model 'phi3_mini_4'" in problem
    assert "phi3_mini" in problem.split("'phi3_mini_4'", 1)[1]  # the close names
    assert "pip install" not in problem


@pytest.mark.slow
def test_torchtunes_lora_config_trains_and_writes_the_fused_modules_adapter(
    phi3_dir, alpaca_file, tmp_path
):
    config = TORCHTUNE / "phi3" / "mini_lora_single_device.yaml"
    extra = f"tokenizer.path={phi3_dir / 'tokenizer.json'}"
    _, adapter_dir = _train_lora(config, phi3_dir, alpaca_file, tmp_path / "run", extra)
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    # the config's rank 8 and alpha 16 per part: q and v as one rank-16 LoRA of qkv_proj
    # (gate and up likewise), each part at alpha / r = 2
    for module, rank in (("self_attn.qkv_proj", 16), ("mlp.gate_up_proj", 16),
                         ("self_attn.o_proj", 8), ("mlp.down_proj", 8)):  # fmt: skip
        key = f"model.layers.1.{module}"
        r = adapter["rank_pattern"].get(key, adapter["r"])
        assert (r, adapter["alpha_pattern"].get(key, adapter["lora_alpha"]) / r) == (rank, 2), key


# ---- Phi-4 ---------------------------------------------------------------------------


def test_torchtunes_phi4_evaluation_config_translates():
    t = _translate("evaluation", "phi4")
    assert t.problems == []
    assert "model" not in t.config  # eleuther_eval builds it from the checkpoint
    assert t.config["checkpointer"]["model_type"] == "PHI4"
    assert t.config["tasks"] == ["truthfulqa_mc2"]


@pytest.mark.slow
def test_torchtunes_phi4_lora_config_trains_the_tiny_phi4(phi4_dir, alpaca_file, tmp_path):
    """Its tokenizer block as it is (vocab.json + merges.txt elsewhere): the download's
    tokenizer.json is read instead."""
    from safetensors.torch import load_file

    config = TORCHTUNE / "phi4" / "14B_lora_single_device.yaml"
    output, adapter_dir = _train_lora(config, phi4_dir, alpaca_file, tmp_path / "run")
    assert "tokenizer.vocab_path: dropped" in output
    # one key/value head: q's 64 rows, then k's 16 and v's 16; q and v adapted, k not
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    b = weights["base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight"]
    assert b.shape == (64 + 16 + 16, 16)
    assert b[64:80].abs().max() == 0 and b[:64].abs().max() > 0 and b[80:].abs().max() > 0


def test_torchtunes_phi_adapter_file_points_at_the_merged_weights(phi3_dir, tmp_path):
    """torchtune's Phi-3/Phi-4 LoRA runs write no PEFT adapter ("Saving Phi adapter weights
    to PEFT format is not supported"), only adapter_model.pt beside the merged weights:
    adapter= at that epoch directory names the way to load it, which works."""
    import shutil

    import torch

    from tunesmith.errors import CheckpointError

    epoch = tmp_path / "epoch_0"
    shutil.copytree(phi3_dir, epoch)  # merged weights in HF format, as torchtune writes them
    lora = {"layers.0.attn.q_proj.lora_a.weight": torch.zeros(8, 64)}
    torch.save(lora, epoch / "adapter_model.pt")
    for adapter in (epoch, epoch / "adapter_model.pt"):
        with pytest.raises(CheckpointError) as info:
            tunesmith.load_pretrained(phi3_dir, device="cpu", adapter=adapter)
        message = str(info.value)
        assert "\n" not in message
        assert "torchtune wrote no PEFT adapter beside it" in message
        assert f"load that directory as the checkpoint (checkpoint_dir={epoch})" in message
    merged, _ = tunesmith.load_pretrained(epoch, device="cpu")
    reference, _ = tunesmith.load_pretrained(phi3_dir, device="cpu")
    ids = torch.tensor([[1, 5, 9]])
    torch.testing.assert_close(merged(ids), reference(ids), atol=0, rtol=0)
