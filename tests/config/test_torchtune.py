"""Translating torchtune 0.6 configs: what maps to what, what is dropped, what is refused."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from tunesmith.cli import cli
from tunesmith.config._load import _read
from tunesmith.config._torchtune import (
    is_torchtune_config,
    recipe_from_comments,
    translate_torchtune_config,
)

pytest.importorskip("tunesmith_llama")
pytest.importorskip("tunesmith_lora")

CONFIGS = Path(__file__).resolve().parent.parent / "fixtures" / "torchtune"


def _translate(name: str, **changes):
    raw = _read(CONFIGS / f"{name}.yaml", [])
    raw.update(changes)
    text = (CONFIGS / f"{name}.yaml").read_text()
    return translate_torchtune_config(raw, recipe=recipe_from_comments(text))


def test_every_fixture_translates_and_names_its_recipe():
    for path in sorted(CONFIGS.rglob("*.yaml")):
        name = str(path.relative_to(CONFIGS).with_suffix(""))
        assert is_torchtune_config(yaml.safe_load(path.read_text())), name
        assert recipe_from_comments(path.read_text()) is not None, name
        translation = _translate(name)
        # torchtune's single-device full configs name bitsandbytes' paged optimizer: its
        # 8-bit form needs bitsandbytes or torchao
        needs = [p for p in translation.problems if "pip install bitsandbytes" not in p]
        assert needs == [], name
        assert "profiler" not in translation.config


def test_lora_builder_becomes_the_registered_model_and_a_peft_block():
    t = _translate("llama3_2/1B_lora_single_device")
    assert t.config["model"] == {"_component_": "llama3_2_1b"}
    assert t.config["peft"] == {
        "_component_": "lora",
        "lora_attn_modules": ["q_proj", "v_proj", "output_proj"],
        "apply_lora_to_mlp": True,
        "apply_lora_to_output": False,  # torchtune's default, filled in
        "lora_rank": 64,
        "lora_alpha": 128,
        "lora_dropout": 0.0,
        "use_dora": False,
        "quantize_base": False,
    }
    assert any(line.startswith("model._component_: torchtune.models") for line in t.notes)


def test_qlora_builder_quantizes_the_base():
    t = _translate("llama3_2/1B_qlora_single_device")
    assert t.config["peft"]["_component_"] == "qlora"
    assert t.config["peft"]["quantize_base"] is True


def test_component_builder_with_arguments_builds_from_the_checkpoint():
    t = _translate(
        "llama3_2/1B_full_single_device",
        model={"_component_": "torchtune.models.llama3_2.llama3_2", "vocab_size": 556},
    )
    assert t.config["model"] == {"_component_": "auto"}


def test_checkpointer_dataset_loss_scheduler_logger():
    t = _translate("llama3/8B_lora")
    assert t.config["checkpointer"] == {
        "checkpoint_dir": "/tmp/Meta-Llama-3-8B-Instruct/original/",
        "checkpoint_files": ["consolidated.00.pth"],
        "output_dir": "${output_dir}",
        "model_type": "LLAMA3",
    }
    # torchtune's alpaca trains on the prompt by default
    assert t.config["dataset"] == {
        "_component_": "alpaca",
        "source": "yahma/alpaca-cleaned",
        "train_on_input": True,
        "split": "train",
        "packed": False,
    }
    assert t.config["loss"] == {"_component_": "tunesmith.training.ChunkedCrossEntropyLoss"}
    assert t.config["lr_scheduler"] == {
        "_component_": "tunesmith.training.cosine_with_warmup",
        "num_warmup_steps": 100,
    }
    assert t.config["metric_logger"]["_component_"] == "tunesmith.training.DiskLogger"
    assert t.config["optimizer"]["_component_"] == "torch.optim.AdamW"  # passes through
    assert any("recipe_checkpoint: dropped" in line for line in t.notes)


def test_loss_keeps_its_ignore_index_and_refuses_what_would_change_it():
    chunked = {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"}
    t = _translate("llama3/8B_lora", loss={**chunked, "ignore_index": -1, "num_output_chunks": 4})
    assert t.config["loss"] == {
        "_component_": "tunesmith.training.ChunkedCrossEntropyLoss",
        "ignore_index": -1,
        "num_output_chunks": 4,
    }
    t = _translate("llama3/8B_lora", loss={**chunked, "label_smoothing": 0.1})
    assert t.problems == [
        "loss.label_smoothing: 0.1: CEWithChunkedOutputLoss takes num_output_chunks and "
        "ignore_index only: remove it"
    ]


def test_dropped_keys_are_said_once_each():
    t = _translate("llama3_2/1B_full_single_device")
    assert [n for n in t.notes if n.startswith("profiler")] == [
        "profiler: dropped (tunesmith has no profiler hook: wrap a run in torch.profiler yourself)"
    ]
    # tunesmith steps the optimizer inside backward too (training.OptimizerInBackward)
    assert not any(n.startswith("optimizer_in_bwd") for n in t.notes)
    assert t.config["optimizer_in_bwd"] is True


def _hide(monkeypatch, *packages: str) -> None:
    """Make ``packages`` look uninstalled to the importability checks."""
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name.split(".")[0] in packages else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def _bnb(name: str, **args):
    return _translate(
        "llama3_2/1B_full_single_device",
        optimizer={"_component_": f"bitsandbytes.optim.{name}", **args},
    )


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("PagedAdamW", "torch.optim.AdamW"),
        ("PagedAdamW32bit", "torch.optim.AdamW"),
        ("AdamW", "torch.optim.AdamW"),
        ("PagedAdamW8bit", "torchao.optim.AdamW8bit"),
        ("AdamW8bit", "torchao.optim.AdamW8bit"),
    ],
)
def test_bitsandbytes_adamw_without_bitsandbytes_becomes_torchs_or_torchaos(
    monkeypatch, name, target
):
    _hide(monkeypatch, "bitsandbytes")
    t = _bnb(name, lr=2e-5, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1, is_paged=True,
             percentile_clipping=100)  # fmt: skip
    assert t.problems == []
    assert t.config["optimizer"] == {
        "_component_": target, "lr": 2e-5, "betas": [0.9, 0.95], "eps": 1e-8,
        "weight_decay": 0.1,
    }  # fmt: skip
    [line] = [n for n in t.notes if n.startswith("optimizer._component_")]
    assert line.startswith(
        f"optimizer._component_: bitsandbytes.optim.{name} -> {target} (bitsandbytes is "
        "not installed; "
    )
    assert ("paging only moves optimizer state" in line) == name.startswith("Paged")
    assert [n for n in t.notes if n.startswith("optimizer.")] == [
        line,
        f"optimizer.is_paged: dropped (a bitsandbytes setting {target} does not take)",
        f"optimizer.percentile_clipping: dropped (a bitsandbytes setting {target} does not take)",
    ]


def test_bitsandbytes_adamw_with_optim_bits_8_is_the_8bit_one(monkeypatch):
    _hide(monkeypatch, "bitsandbytes")
    t = _bnb("AdamW", lr=2e-5, optim_bits=8)
    assert t.config["optimizer"] == {"_component_": "torchao.optim.AdamW8bit", "lr": 2e-5}
    assert "optimizer.optim_bits: dropped" in "\n".join(t.notes)


def test_8bit_adamw_without_bitsandbytes_or_torchao_names_both_installs(monkeypatch):
    _hide(monkeypatch, "bitsandbytes", "torchao")
    assert _bnb("PagedAdamW8bit", lr=2e-5).problems == [
        "optimizer: bitsandbytes.optim.PagedAdamW8bit needs bitsandbytes, or torchao for the "
        "same 8-bit AdamW: pip install bitsandbytes, or pip install 'tunesmith[quantize]'"
    ]
    assert _bnb("PagedAdamW", lr=2e-5).problems == []  # torch's AdamW needs neither
    # other bitsandbytes optimizers have no stand-in
    [problem] = _bnb("Lion8bit", lr=2e-5).problems
    assert problem.startswith("optimizer: bitsandbytes.optim.Lion8bit needs the bitsandbytes")


def test_bitsandbytes_optimizer_is_kept_where_bitsandbytes_is_installed(monkeypatch):
    real = importlib.util.find_spec
    installed = importlib.machinery.ModuleSpec("bitsandbytes", None)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: installed if name == "bitsandbytes" else real(name, *args),
    )
    t = _bnb("PagedAdamW8bit", lr=2e-5, percentile_clipping=100)
    assert t.problems == []
    assert t.config["optimizer"] == {
        "_component_": "bitsandbytes.optim.PagedAdamW8bit", "lr": 2e-5,
        "percentile_clipping": 100,
    }  # fmt: skip
    assert not any(n.startswith("optimizer") for n in t.notes)


def test_translated_8bit_adamw_builds_as_the_recipe_builds_it_and_trains(monkeypatch):
    pytest.importorskip("torchao")
    from tunesmith.config import instantiate, resolve_component
    from tunesmith.training import fused_default

    _hide(monkeypatch, "bitsandbytes")
    node = _bnb("PagedAdamW8bit", lr=1e-2, weight_decay=0.0).config["optimizer"]
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64, bias=False)  # 4096 weights: torchao quantizes its state
    reference = torch.nn.Linear(64, 64, bias=False)
    reference.load_state_dict(model.state_dict())
    target = resolve_component(node["_component_"], key="optimizer")
    extra = fused_default(target, node, torch.device("cpu"), model.parameters())
    assert extra == {}  # no fused=True for a class that does not take it
    optimizer = instantiate(node, model.parameters(), key="optimizer", **extra)
    adamw = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.0)
    start = model.weight.detach().clone()
    x = torch.randn(32, 64)
    # eager: torchao compiles its step, which takes ~20 s on CPU the first time
    with torch.compiler.set_stance("force_eager"):
        for _ in range(5):
            for module, opt in ((model, optimizer), (reference, adamw)):
                loss = (module(x) - x).square().mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
    state = optimizer.state[model.weight]["exp_avg"]
    assert type(state).__name__ == "OptimState8bit"
    moved = (reference.weight - start).abs().max()
    assert (model.weight - reference.weight).abs().max() < 0.2 * moved  # AdamW's update


def test_every_problem_is_listed_at_once():
    t = _translate(
        "llama3_2/1B_lora_single_device",
        dataset={"_component_": "torchtune.datasets.samsum_dataset"},
        loss={"_component_": "torchtune.modules.loss.SomeOtherLoss"},
        lr_scheduler={"_component_": "torchtune.training.lr_schedulers.get_rex_scheduler"},
        tensor_parallel_dim=2,
    )
    joined = "\n".join(t.problems)
    assert len(t.problems) == 4
    for part in ("samsum_dataset", "SomeOtherLoss", "get_rex_scheduler", "tensor_parallel_dim"):
        assert part in joined


def test_unknown_model_names_the_plugin_to_install():
    model = {"_component_": "torchtune.models.deepseek_v3.deepseek_v3_671b"}
    t = _translate("llama3_2/1B_lora", model=model)
    [problem] = t.problems
    assert "pip install tunesmith-deepseek" in problem and "deepseek_v3_671b" in problem


def test_torchtune_only_recipes_are_refused_naming_them(tmp_path):
    dpo = tmp_path / "dpo.yaml"
    raw = yaml.safe_load((CONFIGS / "llama3_2/1B_lora_single_device.yaml").read_text())
    raw["loss"] = {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": 0.1}
    dpo.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(
        cli, ["validate", str(dpo), "--recipe", "lora_finetune_single_device"]
    )
    assert result.exit_code != 0 and "DPO" in result.output
    result = CliRunner().invoke(cli, ["run", "lora_dpo_single_device", "--config", str(dpo)])
    assert result.exit_code != 0
    assert (
        "lora_dpo_single_device (DPO (preference optimization)) has no equivalent" in result.output
    )
    result = CliRunner().invoke(
        cli, ["run", "knowledge_distillation_single_device", "--config", str(dpo)]
    )
    assert "knowledge distillation" in result.output


def test_validate_reads_the_recipe_from_the_comment_and_prints_translations():
    result = CliRunner().invoke(
        cli, ["validate", str(CONFIGS / "llama3_1/8B_lora_single_device.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "Config is valid for recipe lora_finetune_single_device." in result.output
    assert (
        "torchtune config: model._component_: torchtune.models.llama3_1.lora_llama3_1_8b -> llama3_1_8b"
        in result.output
    )


def test_overrides_of_torchtune_keys_apply_before_translation():
    result = CliRunner().invoke(
        cli,
        ["validate", str(CONFIGS / "llama3_2/1B_lora_single_device.yaml"), "model.lora_rank=4",
         "model.use_dora=true", "optimizer.lr=abc"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "optimizer.lr" in result.output  # the translated config is still validated
    result = CliRunner().invoke(
        cli,
        ["validate", str(CONFIGS / "llama3_2/1B_lora_single_device.yaml"), "model.lora_rank=4"],
    )
    assert result.exit_code == 0, result.output
    assert "lora_rank: 4" in result.output


def test_convert_config_writes_the_tunesmith_form(tmp_path):
    target = tmp_path / "lora.yaml"
    source = CONFIGS / "llama3_2/1B_lora.yaml"
    result = CliRunner().invoke(cli, ["convert-config", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert "tunesmith run lora_finetune_distributed --config" in result.output
    written = yaml.safe_load(target.read_text())
    assert written["model"] == {"_component_": "llama3_2_1b"}
    assert written["peft"]["lora_rank"] == 64
    assert written["optimizer"]["lr"] == 3e-4  # a float, as torchtune reads it
    assert not is_torchtune_config(written)
    result = CliRunner().invoke(
        cli, ["validate", str(target), "--recipe", "lora_finetune_distributed"]
    )
    assert result.exit_code == 0, result.output
    assert "torchtune config:" not in result.output
    again = CliRunner().invoke(cli, ["convert-config", str(source), str(target)])
    assert again.exit_code != 0 and "--force" in again.output


def test_cat_prints_a_shipped_config():
    result = CliRunner().invoke(cli, ["cat", "llama3_2/1B_lora_single_device"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["peft"]["_component_"] == "lora"


def test_cat_sort_orders_keys_at_every_level_as_torchtunes():
    plain = CliRunner().invoke(cli, ["cat", "llama3_2/1B_lora_single_device"])
    result = CliRunner().invoke(cli, ["cat", "llama3_2/1B_lora_single_device", "--sort"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == yaml.safe_load(plain.output)  # the same config
    top = [line.split(":")[0] for line in result.output.splitlines() if line[:1].isalpha()]
    peft = re.search(r"^peft:\n((?:  .*\n)+)", result.output, re.M).group(1)
    assert top == sorted(top) and top[0] == "batch_size"
    assert [line.split(":")[0].strip() for line in peft.splitlines() if ":" in line] == [
        "_component_", "apply_lora_to_mlp", "apply_lora_to_output", "lora_alpha",
        "lora_attn_modules", "lora_dropout", "lora_rank",
    ]  # fmt: skip
    assert "#" not in result.output


def test_torchtune_generation_config_validates_for_generate(tmp_path):
    config = tmp_path / "generation.yaml"
    config.write_text(
        "output_dir: ./\n"
        "model: {_component_: torchtune.models.llama2.llama2_7b}\n"
        "checkpointer:\n"
        "  _component_: torchtune.training.FullModelHFCheckpointer\n"
        "  checkpoint_dir: /tmp/Llama-2-7b-hf/\n"
        "  checkpoint_files: [pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin]\n"
        "  output_dir: ${output_dir}\n"
        "  model_type: LLAMA2\n"
        "device: cuda\ndtype: bf16\nseed: 1234\n"
        "tokenizer:\n"
        "  _component_: torchtune.models.llama2.llama2_tokenizer\n"
        "  path: /tmp/Llama-2-7b-hf/tokenizer.model\n"
        "  max_seq_len: null\n"
        "  prompt_template: {user: ['Q: ', ' A:']}\n"
        "prompt: {system: null, user: Tell me a joke.}\n"
        "max_new_tokens: 300\ntemperature: 0.6\ntop_k: 300\nenable_kv_cache: true\nquantizer: null\n"
    )
    raw = _read(config, [])
    t = translate_torchtune_config(raw, recipe="generate")
    assert t.problems == []
    assert t.config["prompt_template"] == {"user": ["Q: ", " A:"]}
    assert "model" not in t.config and "output_dir" not in t.config
    assert t.config["enable_kv_cache"] is True
    # torchtune samples with its temperature and top_k and no top-p cut, whatever the
    # checkpoint's generation_config.json says (tunesmith's null would read it).
    assert (t.config["temperature"], t.config["top_k"], t.config["top_p"]) == (0.6, 300, 1.0)


# torchtune 0.6.1's own configs (unchanged) for recipes and sizes the loss fixtures do
# not train: each must validate as torchtune's `tune validate` would accept it.
OTHERS = Path(__file__).resolve().parent.parent / "fixtures" / "torchtune_validate_only"


def _validate(*args: str):
    return CliRunner().invoke(cli, ["validate", *args])


def test_torchtune_names_of_distributed_configs_resolve():
    result = _validate("llama3_2/1B_lora")
    assert result.exit_code == 0, result.output
    assert "Config is valid for recipe lora_finetune_distributed." in result.output
    ours = CliRunner().invoke(cli, ["cat", "llama3_2/1B_full_distributed"]).output
    assert CliRunner().invoke(cli, ["cat", "llama3_2/1B_full"]).output == ours
    unknown = _validate("llama3_2/1B_nope")
    assert unknown.exit_code != 0 and "unknown config 'llama3_2/1B_nope'" in unknown.output
    # torchtune's per-family evaluation configs: tunesmith's one config serves every family
    evaluation = _validate("qwen2_5/evaluation")
    assert evaluation.exit_code != 0
    assert (
        "unknown config 'qwen2_5/evaluation': tunesmith ships one evaluation config for every "
        "family, eleuther_evaluation" in evaluation.output
    )


def test_torchtune_names_of_dora_configs_resolve_to_lora_configs_with_use_dora():
    for name, recipe, method in [
        ("llama3/8B_dora", "lora_finetune_distributed", "lora"),
        ("llama3/8B_dora_single_device", "lora_finetune_single_device", "lora"),
        ("llama3/8B_qdora_single_device", "qlora_finetune_single_device", "qlora"),
    ]:
        result = _validate(name)
        assert result.exit_code == 0, result.output
        assert f"Config is valid for recipe {recipe}." in result.output
        peft = yaml.safe_load(CliRunner().invoke(cli, ["cat", name]).output)["peft"]
        assert (peft["_component_"], peft["use_dora"]) == (method, True), name
    # torchtune's own files for them say the same (lora_llama3_8b with use_dora)
    for path in sorted((OTHERS / "llama3").glob("*dora*.yaml")):
        result = _validate(str(path))
        assert result.exit_code == 0, result.output
        assert "use_dora: true" in result.output, path.name


def test_resume_from_checkpoint_is_dropped_only_where_the_recipe_does_not_read_it():
    result = _validate(str(OTHERS / "llama3_2/evaluation.yaml"))
    assert result.exit_code == 0, result.output
    assert "Config is valid for recipe eleuther_eval." in result.output
    assert (
        "resume_from_checkpoint: dropped (only fine-tuning resumes; eleuther_eval does not "
        "read it)" in result.output
    )
    lora = _translate("llama3_2/1B_lora_single_device", resume_from_checkpoint=True)
    kept = translate_torchtune_config(
        lora.config | {"model": {"_component_": "torchtune.models.llama3_2.llama3_2_1b"}},
        recipe="lora_finetune_single_device",
        known=("resume_from_checkpoint", "model"),
    )
    assert kept.config["resume_from_checkpoint"] is True
    assert not is_torchtune_config({"resume_from_checkpoint": True, "epochs": 1})


def test_torchtunes_fsdp_block_is_dropped():
    result = _validate(str(OTHERS / "llama2/7B_qlora.yaml"))
    assert result.exit_code == 0, result.output
    assert "torchtune config: fsdp: dropped" in result.output


def test_torchtune_builder_names_of_llama3_3_and_mistral_7b():
    t = _translate(
        "llama3_2/1B_lora", model={"_component_": "torchtune.models.llama3_3.lora_llama3_3_70b"}
    )
    assert t.problems == [] and t.config["model"] == {"_component_": "llama3_3_70b"}
    pytest.importorskip("tunesmith_mistral")
    result = _validate(str(CONFIGS / "mistral/7B_lora_single_device.yaml"))
    assert result.exit_code == 0, result.output
    assert "lora_mistral_7b -> mistral_7b" in result.output
    import tunesmith_mistral

    assert tunesmith_mistral.mistral_7b.__doc__.startswith("Mistral 7B v0.1")


def test_generate_v2_runs_as_generate_and_its_distributed_form_is_refused(tmp_path):
    result = _validate(str(OTHERS / "llama2/generation_v2.yaml"))
    assert result.exit_code == 0, result.output
    assert "Config is valid for recipe generate." in result.output
    target = tmp_path / "generation.yaml"
    result = CliRunner().invoke(
        cli, ["convert-config", str(OTHERS / "llama2/generation_v2.yaml"), str(target)]
    )
    assert result.exit_code == 0, result.output
    assert "tunesmith run generate --config" in result.output
    assert yaml.safe_load(target.read_text())["prompt"]["user"] == "What is the capital of France?"
    # generate_v2's message form of a turn: {text: ...}; images have no equivalent
    raw = _read(OTHERS / "llama3_1/70B_generation_distributed.yaml", [])
    turns = translate_torchtune_config(
        raw | {"prompt": {"system": None, "user": {"text": "Hi."}}}, recipe="generate"
    )
    assert turns.config["prompt"] == {"system": None, "user": "Hi."}
    image = translate_torchtune_config(
        raw | {"prompt": {"user": {"image": "cat.png", "text": "What is it?"}}}, recipe="generate"
    )
    assert image.problems == [
        "prompt.user.image: tunesmith's generate takes text prompts only: remove it"
    ]
    refused = _validate(str(OTHERS / "llama3_1/70B_generation_distributed.yaml"))
    assert refused.exit_code != 0
    assert (
        "torchtune's recipe dev/generate_v2_distributed (tensor-parallel generation) has no "
        "equivalent in tunesmith: generate on one device with `tunesmith run generate`"
    ) in refused.output


# Each validate-only fixture -> the recipe its header comment names (None: refused).
_VALIDATE_ONLY = {
    "gemma2/2B_lora_single_device": "lora_finetune_single_device",
    "llama2/70B_lora": "lora_finetune_distributed",  # `#   # tune run ...`
    "llama2/7B_qlora": "lora_finetune_distributed",
    "llama2/generation_v2": "generate",
    "llama3/70B_lora": "lora_finetune_distributed",  # `#   # tune run ...`
    "llama3/8B_dora": "lora_finetune_distributed",
    "llama3/8B_qdora_single_device": "lora_finetune_single_device",
    "llama3_1/405B_qlora": "lora_finetune_distributed",  # `#   # tune run ...`
    "llama3_1/70B_generation_distributed": None,
    "llama3_2/evaluation": "eleuther_eval",
    "llama3_3/70B_full_multinode": "full_finetune_distributed",  # `sbatch <script>.slurm`
    "llama3_3/70B_lora": "lora_finetune_distributed",
    "mistral/evaluation": "eleuther_eval",
    "quantization": "quantize",
}


def test_every_validate_only_fixture_but_the_refused_one_validates():
    pytest.importorskip("tunesmith_mistral")
    names = sorted(str(p.relative_to(OTHERS).with_suffix("")) for p in OTHERS.rglob("*.yaml"))
    assert names == sorted(_VALIDATE_ONLY)
    for name, recipe in _VALIDATE_ONLY.items():
        result = _validate(str(OTHERS / f"{name}.yaml"))
        assert (result.exit_code == 0) == (recipe is not None), (name, result.output)
        if recipe is not None:
            assert f"Config is valid for recipe {recipe}." in result.output, name


def test_recipe_from_comments_reads_nested_tune_run_and_torchtunes_slurm_script():
    assert (
        recipe_from_comments(
            "# This config needs 8 GPUs to run\n"
            "#   # tune run --nproc_per_node 8 lora_finetune_distributed --config llama2/70B_lora\n"
        )
        == "lora_finetune_distributed"
    )
    # torchtune's full_finetune_multinode.slurm runs `tune run ... full_finetune_distributed`
    assert (
        recipe_from_comments(
            "# To launch on 2 nodes w/ 8 devices on a SLURM cluster, run the following command:\n"
            "#   sbatch full_finetune_multinode.slurm\n"
        )
        == "full_finetune_distributed"
    )
    assert recipe_from_comments("#   sbatch my_own_job.slurm\n") is None  # runs who knows what
    assert recipe_from_comments("model: {}\n# tune run is mentioned\n") is None


def _quantizer(node):
    raw = _read(OTHERS / "quantization.yaml", []) | {"quantizer": node}
    return translate_torchtune_config(raw, recipe="quantize", known=("quantizer",))


def test_torchtunes_post_training_quantizers_become_tunesmiths():
    prefix = "torchtune.training.quantization."
    t = _quantizer({"_component_": f"{prefix}Int8DynActInt4WeightQuantizer", "groupsize": 256})
    assert t.problems == []
    assert t.config["quantizer"] == {
        "_component_": "int8_dynamic_activation_int4_weight",
        "groupsize": 256,
    }
    assert (
        f"quantizer._component_: {prefix}Int8DynActInt4WeightQuantizer -> "
        "int8_dynamic_activation_int4_weight (per-token int8 activations, 4-bit weights with "
        "a symmetric scale per group)"
    ) in t.notes
    t = _quantizer(
        {"_component_": f"{prefix}Int4WeightOnlyQuantizer", "groupsize": 64, "inner_k_tiles": 8}
    )
    assert t.problems == []
    assert t.config["quantizer"] == {"_component_": "int4_weight_only", "groupsize": 64}
    assert [n for n in t.notes if n.startswith("quantizer")] == [
        f"quantizer._component_: {prefix}Int4WeightOnlyQuantizer -> int4_weight_only (4-bit "
        "weights, a scale per group)",
        "quantizer.inner_k_tiles: dropped (torchao 0.18's tile-packed layout picks its own tiling)",
    ]
    # torchtune's defaults are tunesmith's (128, 256): nothing to fill in
    assert _quantizer({"_component_": f"{prefix}Int4WeightOnlyQuantizer"}).config["quantizer"] == {
        "_component_": "int4_weight_only"
    }
    other = _quantizer({"_component_": f"{prefix}SomeOtherQuantizer"})
    assert other.problems == [
        f"quantizer: {prefix}SomeOtherQuantizer: name a tunesmith quantizer instead "
        "(int8_weight_only, int4_weight_only, ...; `tunesmith ls --all`)"
    ]
    qat = _quantizer({"_component_": f"{prefix}Int8DynActInt4WeightQATQuantizer"})
    assert len(qat.problems) == 1 and "quantization-aware training (QAT)" in qat.problems[0]


def test_torchtunes_quantization_config_validates_for_quantize():
    result = _validate(str(OTHERS / "quantization.yaml"))
    assert result.exit_code == 0, result.output
    assert "Config is valid for recipe quantize." in result.output
    assert (
        "seed: dropped (a recipe that draws no random numbers has no seed; quantize does not "
        "read it)"
    ) in result.output
    assert "Int8DynActInt4WeightQuantizer -> int8_dynamic_activation_int4_weight" in result.output


def test_a_list_of_torchtune_datasets_becomes_a_list_of_tunesmith_datasets():
    t = _translate(
        "llama3_2/1B_lora_single_device",
        dataset=[
            {"_component_": "torchtune.datasets.alpaca_cleaned_dataset", "packed": False},
            {"_component_": "torchtune.datasets.slimorca_dataset"},
            {"_component_": "torchtune.datasets.samsum_dataset"},
        ],
    )
    first, second, third = t.config["dataset"]
    assert first["_component_"] == "alpaca" and first["source"] == "yahma/alpaca-cleaned"
    assert second["_component_"] == "chat" and second["conversation_style"] == "sharegpt"
    assert third is None
    assert t.problems == [
        "dataset.2: torchtune.datasets.samsum_dataset: no tunesmith equivalent; use alpaca, "
        "instruct, chat or text_completion with your own source"
    ]
    assert any(
        n.startswith("dataset.1._component_: torchtune.datasets.slimorca_dataset") for n in t.notes
    )


@pytest.mark.parametrize("given, split", [({}, True), ({"split_across_pack": False}, False)])
def test_torchtune_text_datasets_split_across_packs_unless_told_not_to(given, split):
    """torchtune's text_completion_dataset defaults split_across_pack to true (its SFT
    builders to false); the translation keeps torchtune's meaning either way."""
    node = {"_component_": "torchtune.datasets.text_completion_dataset", "source": "json",
            "data_files": "t.json", "column": "body", "packed": True, **given}  # fmt: skip
    t = _translate("llama3_2/1B_lora_single_device", dataset=node)
    assert t.config["dataset"]["split_across_pack"] is split
    assert t.config["dataset"]["column_map"] == {"text": "body"} and not t.problems
