"""The ``generate`` recipe end to end through the CLI: one prompt, interactive chat,
errors, and a base checkpoint plus a PEFT adapter versus the merged checkpoint."""

from __future__ import annotations

import re

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.data import Message

SPEED = re.compile(r"(\d+) tokens in \d+\.\d\d s \(\d+\.\d tokens/s\)$", re.MULTILINE)


def _run(directory, *overrides, input=None):
    args = ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={directory}"]
    return CliRunner().invoke(cli, [*args, *overrides], input=input)


def test_shipped_config_opens_with_its_command():
    from tunesmith.config import find_config

    path, recipe = find_config("generation")
    assert recipe == "generate"
    first = path.read_text().splitlines()[:4]
    assert first[0].startswith("# ")
    assert any(
        "tunesmith run generate --config generation checkpointer.checkpoint_dir=" in line
        for line in first
    )
    result = CliRunner().invoke(cli, ["validate", "generation"])
    assert result.exit_code == 0, result.output


def test_one_prompt_prints_the_answer_and_the_speed(checkpoints, loaded):
    model, tokenizer = loaded("llama3_2")
    result = _run(
        checkpoints["llama3_2"],
        "prompt.user=Tell me a joke.",
        "prompt.system=Be brief.",
        "temperature=0",
        "max_new_tokens=12",
    )
    assert result.exit_code == 0, result.output
    want = tunesmith.generate(
        model, tokenizer, "Tell me a joke.", system="Be brief.", max_new_tokens=12
    )
    assert result.stdout == want + "\n"
    [count] = SPEED.findall(result.stderr)
    assert 1 <= int(count) <= 12


def test_sampling_settings_reach_the_sampler(checkpoints, loaded):
    model, tokenizer = loaded("llama3_2")
    overrides = [
        "prompt.user=Hi",
        "temperature=1.0",
        "top_k=40",
        "top_p=0.9",
        "seed=7",
        "max_new_tokens=10",
    ]
    first = _run(checkpoints["llama3_2"], *overrides)
    again = _run(checkpoints["llama3_2"], *overrides, "enable_kv_cache=false")
    assert first.exit_code == again.exit_code == 0, first.output + again.output
    want = tunesmith.generate(
        model, tokenizer, "Hi", max_new_tokens=10, temperature=1.0, top_k=40, top_p=0.9, seed=7
    )
    assert first.stdout == want + "\n"
    assert again.stdout == first.stdout


SAMPLING_FILES = [
    # generation_config.json's sampling keys -> what transformers' generate() samples with
    ({}, (0.0, 50, None)),
    ({"temperature": 0.6, "top_p": 0.9}, (0.0, 50, 0.9)),  # no do_sample: greedy
    ({"do_sample": True, "temperature": 0.6, "top_p": 0.9}, (0.6, 50, 0.9)),
    ({"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8}, (0.7, 20, 0.8)),
    ({"do_sample": True, "top_k": 0, "top_p": 1.0}, (1.0, None, None)),
    # Qwen 2.5's: the repetition penalty applies (to greedy decoding too), as min_p would.
    ({"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
      "repetition_penalty": 1.05}, (0.7, 20, 0.8)),
    ({"repetition_penalty": 1.5, "min_p": 0.1}, (0.0, 50, None)),
]  # fmt: skip


@pytest.mark.parametrize(("sampling", "expected"), SAMPLING_FILES)
def test_null_sampling_keys_take_the_checkpoints_generation_config_as_transformers(
    tmp_path, checkpoints, loaded, sampling, expected
):
    import json
    import shutil

    from transformers import GenerationConfig

    from tunesmith.generation import checkpoint_sampling

    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoints["llama3_2"], directory)
    path = directory / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **sampling}))
    file = GenerationConfig.from_pretrained(directory)
    theirs = {  # the file over generate()'s defaults for what it leaves unset
        key: value if (value := getattr(file, key)) is not None else default
        for key, default in GenerationConfig._get_default_generation_params().items()
    }
    temperature = theirs["temperature"] if theirs["do_sample"] else 0.0
    top_k = theirs["top_k"] or None
    top_p = theirs["top_p"] if theirs["top_p"] < 1 else None
    assert (temperature, top_k, top_p) == expected  # the table is transformers' reading
    found = checkpoint_sampling(directory)
    assert (found["temperature"], found["top_k"], found["top_p"]) == expected
    extra = {
        "min_p": file.min_p or None,  # (no generate() default: off)
        "repetition_penalty": theirs["repetition_penalty"] if theirs["repetition_penalty"] != 1 else None,
    }
    assert {key: found[key] for key in extra} == extra

    model, tokenizer = loaded("llama3_2")
    result = _run(directory, "prompt.user=Hi", "max_new_tokens=8")
    assert result.exit_code == 0, result.output
    temperature, top_k, top_p = expected
    want = tunesmith.generate(model, tokenizer, "Hi", max_new_tokens=8, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=1234, **extra)  # fmt: skip
    assert result.stdout == want + "\n"
    line = result.stderr.splitlines()[0]
    assert line.startswith("greedy decoding" if not temperature else "sampling: temperature ")
    assert ("repetition_penalty" in line) == bool(extra["repetition_penalty"])
    assert line.endswith("(from the checkpoint's generation_config.json, as transformers' generate)")
    # What is set wins; what is left null still comes from the file.
    result = _run(directory, "prompt.user=Hi", "max_new_tokens=8", "temperature=0.5")
    line = result.stderr.splitlines()[0]
    assert line.startswith("sampling: temperature 0.5")
    assert "(top_k, top_p, min_p, repetition_penalty from the checkpoint's" in line


def test_chat_keeps_the_conversation(checkpoints, loaded):
    model, tokenizer = loaded("llama3_2")
    result = _run(
        checkpoints["llama3_2"],
        "--chat",
        "temperature=0",
        "max_new_tokens=8",
        "prompt.system=Be kind.",
        input="Hello there\n\nHow are you?\nexit\nnever read\n",
    )
    assert result.exit_code == 0, result.output
    first = tunesmith.generate(model, tokenizer, "Hello there", system="Be kind.", max_new_tokens=8)
    second = tunesmith.generate(
        model,
        tokenizer,
        [
            Message("user", "Hello there"),
            Message("assistant", first),
            Message("user", "How are you?"),
        ],
        system="Be kind.",
        max_new_tokens=8,
    )
    assert result.stdout == f"{first}\n{second}\n"
    assert len(SPEED.findall(result.stderr)) == 2
    # prompt.interactive=true is the same, and EOF ends the chat too.
    again = _run(
        checkpoints["llama3_2"],
        "prompt.interactive=true",
        "temperature=0",
        "max_new_tokens=8",
        "prompt.system=Be kind.",
        input="Hello there\n",
    )
    assert again.exit_code == 0, again.output
    assert again.stdout == f"{first}\n"


def test_chat_reports_a_too_long_turn_and_goes_on(checkpoints):
    long = "the lighthouse keeper wrote in his logbook " * 40
    result = _run(
        checkpoints["llama3_2"],
        "--chat",
        "temperature=0",
        "max_new_tokens=4",
        input=f"{long}\nHi\n",
    )
    assert result.exit_code == 0, result.output
    assert "exceeds the model's max_seq_len of 256" in result.stderr
    assert len(SPEED.findall(result.stderr)) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prompt.user="], "the prompt is empty"),
        (["prompt.user=null"], "the prompt is empty"),
        (
            ["prompt.user=" + "the sea and the ships " * 60, "max_new_tokens=16"],
            "exceeds the model's max_seq_len",
        ),
        (["prompt.user=Hi", "top_p=2"], "'top_p' must be in (0, 1], not 2"),
        (["prompt.user=Hi", "max_new_tokens=0"], "'max_new_tokens' must be at least 1, not 0"),
        (["prompt.user=Hi", "temprature=0.5"], "did you mean 'temperature'"),
        # checkpointer.checkpoint_files is read, as by the fine-tuning recipes
        (
            ["prompt.user=Hi", "+checkpointer.checkpoint_files=[bogus.safetensors]"],
            "weight file(s) named by checkpointer.checkpoint_files are missing",
        ),
        (
            ["prompt.user=Hi", "compile=true", "enable_kv_cache=false"],
            "compile speeds up the KV-cached one-token steps: set enable_kv_cache=true",
        ),
    ],
)
def test_user_errors_are_one_clear_line(checkpoints, overrides, message):
    result = _run(checkpoints["llama3_2"], *overrides)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_base_plus_adapter_equals_merged_checkpoint(tmp_path, checkpoints, hf_loaded):
    peft = pytest.importorskip("peft")
    pytest.importorskip("tunesmith_lora")
    from tunesmith._pretrained import merge_adapter
    from tunesmith.generation import tokenize_prompt

    base_dir = checkpoints["llama3_1"]
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"
    )
    peft_model = peft.get_peft_model(hf, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    peft_model.save_pretrained(tmp_path / "adapter")

    # PEFT's own greedy answer is the reference.
    model, tokenizer = tunesmith.load_pretrained(
        base_dir, adapter=tmp_path / "adapter", dtype="fp32"
    )
    prompt = tokenize_prompt(tokenizer, "Tell me a joke.")
    with torch.no_grad():
        ref = (
            peft_model.eval()
            .generate(
                torch.tensor([prompt]),
                max_new_tokens=10,
                do_sample=False,
                pad_token_id=tokenizer.pad_id,
                eos_token_id=tokenizer.stop_tokens,
            )[0, len(prompt) :]
            .tolist()
        )
    want = tokenizer.decode([t for t in ref if t not in tokenizer.stop_tokens])
    assert tunesmith.generate(model, tokenizer, "Tell me a joke.", max_new_tokens=10) == want
    base_model, _ = tunesmith.load_pretrained(base_dir, dtype="fp32")
    assert tunesmith.generate(base_model, tokenizer, "Tell me a joke.", max_new_tokens=10) != want

    common = ["prompt.user=Tell me a joke.", "temperature=0", "max_new_tokens=10"]
    adapted = _run(base_dir, f"adapter={tmp_path / 'adapter'}", *common)
    assert adapted.exit_code == 0, adapted.output
    assert adapted.stdout == want + "\n"
    merged_dir = merge_adapter(base_dir, tmp_path / "adapter", tmp_path / "merged")
    merged = _run(merged_dir, *common)
    assert merged.exit_code == 0, merged.output
    assert merged.stdout == want + "\n"
