"""What a fine-tune writes besides weights: the prompt format travels with the checkpoint,
each epoch gets a model card and a loss curve, outputs are ready for the Hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.data import Message, alpaca_prompt, prompt_template
from tunesmith.generation import tokenize_prompt
from tunesmith.recipes._outputs import both_rope_layouts, vllm_problems
from tunesmith.testing import FakeHub, write_hf_tokenizer
from tunesmith.tokenizers import HFTokenizer, write_prompt_format

from .helpers import hf_logits, losses, our_logits, run_ok, sample_tokens

QUESTION = "Give three tips for staying healthy."
REPO = "acme/tiny-llama"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, base_dir, data_file):
    """A LoRA fine-tune on alpaca data of a base that `tunesmith download` fetched
    (it carries the download record)."""
    import yaml

    from .helpers import base_config, merge_config

    root = tmp_path_factory.mktemp("outputs")
    base = root / "base"
    shutil.copytree(base_dir, base)
    (base / "tunesmith_source.json").write_text(json.dumps({"repo_id": REPO, "files": []}))
    (base / "README.md").write_text("# the base model's card\n")
    output_dir = root / "run"
    config = merge_config(
        base_config(base, data_file, output_dir),
        {
            "peft": {"_component_": "lora", "lora_attn_modules": ["q_proj", "v_proj"]},
            "validation_dataset": {
                "_component_": "alpaca",
                "source": str(data_file),
                "split": "train[:4]",
            },
            "max_steps_per_epoch": 3,
            "tokenizer": {"max_seq_len": 256},
        },
    )
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_ok("lora_finetune_single_device", path)
    return base, output_dir, result.output


def test_prompt_format_travels_with_the_checkpoint(lora_run):
    base, output_dir, _ = lora_run
    epoch = output_dir / "epoch_0"
    saved = json.loads((epoch / "prompt_template.json").read_text())
    assert saved["name"] == "alpaca"
    # tunesmith's loader prompts a plain question as trained: the same ids as the
    # Alpaca prompt written by hand through the base model's tokenizer
    model, tokenizer = tunesmith.load_pretrained(epoch)
    base_tokenizer = HFTokenizer(base)
    by_hand = tokenize_prompt(base_tokenizer, alpaca_prompt(QUESTION))
    assert tokenize_prompt(tokenizer, QUESTION) == by_hand
    # ... and so does `tunesmith run generate` (greedy: the same answer)
    expected = tunesmith.generate(
        model, base_tokenizer, [Message("user", alpaca_prompt(QUESTION))], max_new_tokens=6
    )
    result = CliRunner().invoke(
        cli,
        ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={epoch}",
         f"prompt.user={QUESTION}", "temperature=0", "max_new_tokens=6", "device=cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == expected.strip()
    # transformers' apply_chat_template (what vLLM's llm.chat reads) renders it too
    from transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(str(epoch)).apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    theirs = AutoTokenizer.from_pretrained(str(base)).apply_chat_template(
        [{"role": "user", "content": alpaca_prompt(QUESTION)}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert ours == theirs and "### Instruction:\n" + QUESTION in ours


def test_generate_takes_torchtune_prompt_template(lora_run):
    base, output_dir, _ = lora_run
    args = ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={base}",
            f"prompt.user={QUESTION}", "temperature=0", "max_new_tokens=4", "device=cpu"]  # fmt: skip
    plain = CliRunner().invoke(cli, [*args, "prompt_template=alpaca"])
    custom = CliRunner().invoke(cli, [*args, "prompt_template={user: [PREFIX , ' SUFFIX']}"])
    bad = CliRunner().invoke(cli, [*args, "prompt_template=alpacca"])
    assert plain.exit_code == 0 and custom.exit_code == 0, plain.output + custom.output
    assert "did you mean 'alpaca'" in bad.output


def test_plain_chat_template_reproduces_training_tokens(tmp_path):
    # A tokenizer without a chat template trains on bos + prompt + answer + eos: the
    # template written for the fine-tune lays a prompt out the same way.
    write_hf_tokenizer(tmp_path, vocab_size=300, chat_template=None)
    before = HFTokenizer(tmp_path)
    write_prompt_format(tmp_path, prompt_template("alpaca"))
    after = HFTokenizer(tmp_path)
    assert before.chat_template is None and after.chat_template is not None
    messages = [Message("user", QUESTION)]
    hand = [Message("user", alpaca_prompt(QUESTION))]
    assert after.tokenize_messages(messages, add_generation_prompt=True) == (
        before.tokenize_messages(hand, add_generation_prompt=True)
    )


def test_every_epoch_has_a_model_card_with_the_logged_losses(lora_run):
    base, output_dir, output = lora_run
    epoch = output_dir / "epoch_0"
    card = (epoch / "README.md").read_text()
    assert "the base model's card" not in card
    assert f"base_model: {REPO}" in card and "library_name: transformers" in card
    steps = losses(output_dir)
    last = max(steps)
    assert f"| final train loss | {steps[last]:.4f} | {last} |" in card
    val = [r for r in _records(output_dir) if "val_loss" in r][-1]
    assert f"| final validation loss | {val['val_loss']:.4f} |" in card
    assert "![Train loss, validation loss and learning rate](loss_curve.png)" in card
    assert "PeftModel.from_pretrained" in card and "vllm" in card.lower()
    assert "tunesmith](https://pypi.org/project/tunesmith/) " + tunesmith.__version__ in card
    for picture in (epoch / "loss_curve.png", output_dir / "logs" / "loss_curve.png"):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Loss curve: {output_dir / 'logs' / 'loss_curve.png'}" in output
    assert "Metrics: " in output.split("Saved epoch")[0]  # said at the start


def _records(output_dir: Path) -> list[dict]:
    from .helpers import read_log

    return read_log(output_dir)


def test_adapter_names_the_downloaded_repo_and_config_has_both_rope_layouts(lora_run):
    base, output_dir, _ = lora_run
    epoch = output_dir / "epoch_0"
    adapter = json.loads((epoch / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == REPO
    assert not (epoch / "tunesmith_source.json").exists()
    config = json.loads((epoch / "config.json").read_text())
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]
    assert config["rope_scaling"]["rope_type"] == "llama3"
    tokens = sample_tokens(config["vocab_size"])
    torch.testing.assert_close(
        hf_logits(epoch, tokens), our_logits(epoch, tokens), atol=1e-4, rtol=0
    )


def test_rope_layouts_for_transformers_4_and_5():
    five = {"rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}}
    assert both_rope_layouts(five)["rope_theta"] == 5e5
    assert both_rope_layouts(five)["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}
    four = {"rope_theta": 1e4, "rope_scaling": None}
    assert both_rope_layouts(four) == four


def test_a_gemma3_config_in_the_transformers_4_layout_still_loads_in_transformers_5():
    # Gemma 3's -5 layout is per layer type; a flat rope_parameters made it unloadable.
    transformers = pytest.importorskip("transformers")
    hub = {"model_type": "gemma3_text", "rope_theta": 1e6, "rope_local_base_freq": 1e4,
           "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "hidden_size": 64,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100}  # fmt: skip
    want = transformers.AutoConfig.for_model(**hub).rope_parameters
    assert transformers.AutoConfig.for_model(**both_rope_layouts(hub)).rope_parameters == want
    assert want["full_attention"] == {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}


def test_vllm_limits_are_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"use_dora": True, "modules_to_save": ["lm_head"]})
    )
    problems = vllm_problems(tmp_path)
    assert len(problems) == 2 and "DoRA" in problems[0] and "lm_head" in problems[1]


def test_upload_keeps_the_card_and_no_local_path(lora_run, tmp_path):
    base, output_dir, _ = lora_run
    epoch = output_dir / "epoch_0"
    runner = CliRunner()
    with FakeHub() as hub:
        result = runner.invoke(cli, ["upload", str(epoch), "me/tiny-ft"])
        assert result.exit_code == 0, result.output
        files = hub.files("me/tiny-ft")
        adapter_only = runner.invoke(cli, ["upload", str(epoch / "adapter"), "me/tiny-ft-adapter"])
        assert adapter_only.exit_code == 0, adapter_only.output
        assert "holds only a PEFT adapter" in adapter_only.stderr
        assert f"used on top of its base model {REPO}" in adapter_only.stderr
        back = runner.invoke(
            cli, ["download", "me/tiny-ft", "--output-dir", str(tmp_path / "back")]
        )
        assert back.exit_code == 0, back.output
    assert {
        "README.md",
        "loss_curve.png",
        "prompt_template.json",
        "adapter/adapter_config.json",
    } <= set(files)
    assert not any(name.startswith(("logs/", "recipe_state/")) for name in files)
    for name, content in files.items():
        for local in (str(output_dir), str(base), str(tmp_path), "/tmp/"):
            assert local.encode() not in content, f"{name} names the local path {local}"
    assert (tmp_path / "back" / "README.md").read_bytes() == (epoch / "README.md").read_bytes()
    assert "Chat with it" in back.output or "Fine-tune it" in back.output


def test_adapter_only_checkpoint_dir_says_pass_it_as_adapter(lora_run, tmp_path):
    _, output_dir, _ = lora_run
    only = tmp_path / "epoch_0"
    shutil.copytree(
        output_dir / "epoch_0", only, ignore=shutil.ignore_patterns("model*.safetensors*")
    )
    result = CliRunner().invoke(
        cli,
        ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={only}",
         "prompt.user=hi", "device=cpu"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert f"pass it as adapter={only} with its base as checkpointer.checkpoint_dir={REPO}" in (
        result.output
    )


def test_plot_command(lora_run, tmp_path):
    _, output_dir, _ = lora_run
    target = tmp_path / "curve.png"
    result = CliRunner().invoke(cli, ["plot", str(output_dir / "logs"), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:4] == b"\x89PNG"
    empty = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert empty.exit_code != 0 and "no metrics in" in empty.output


def test_bare_adapter_as_checkpoint_dir_says_pass_it_as_adapter(lora_run):
    _, output_dir, _ = lora_run
    adapter = output_dir / "epoch_0" / "adapter"
    result = CliRunner().invoke(
        cli,
        ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={adapter}",
         "prompt.user=hi", "device=cpu"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert f"pass it as adapter={adapter} with its base as checkpointer.checkpoint_dir={REPO}" in (
        result.output
    )
