"""A mistake a user can make fails through ``tunesmith run`` with one message that names
the file, row or key and the fix — no traceback, and no ``epoch_N`` or half-written
folder left in ``output_dir``."""

from __future__ import annotations

import json
import shutil

import pytest

from .helpers import losses, run_cli


def _fails(recipe, config, *overrides) -> str:
    """Run, check the failure is a clean one, and return its message."""
    result = run_cli(recipe, config, *overrides)
    assert result.exit_code not in (0, None), result.output
    # The CLI turned the error into a message and an exit code: nothing escaped.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    err = result.stderr
    assert err.count("error:") == 1, err
    start = err.index("error:")
    # After a newline, or after the carriage return of a progress bar that erased itself.
    assert start == 0 or err[start - 1] in "\n\r", f"not on a line of its own: {err!r}"
    if err[start - 1 : start] == "\r":
        erased = err[: start - 1].rpartition("\r")[2]
        assert erased.strip() == "", f"the progress bar was not erased: {err!r}"
    message = err[start:].rstrip("\n")
    assert "\r" not in message, f"a progress bar is mixed into the message: {err!r}"
    return message


def _nothing_written(output_dir) -> None:
    if not output_dir.exists():
        return
    names = sorted(p.name for p in output_dir.iterdir())
    assert not [n for n in names if n.startswith(("epoch_", "."))], names
    assert not list(output_dir.rglob(".*")), list(output_dir.rglob(".*"))
    assert not (output_dir / "recipe_state").exists()


FULL = "full_finetune_single_device"


def test_missing_checkpoint_dir(make_config, tmp_path):
    missing = tmp_path / "no-such-model"
    config, out = make_config(checkpointer={"checkpoint_dir": str(missing)})
    message = _fails(FULL, config)
    assert message == (
        f"error: checkpoint directory {missing} does not exist: point "
        "checkpointer.checkpoint_dir at a downloaded model directory "
        "(`tunesmith download <hf-repo>` fetches one)"
    )
    _nothing_written(out)


def test_checkpoint_dir_without_weights(make_config, tmp_path, base_dir):
    empty = tmp_path / "config-only"
    empty.mkdir()
    shutil.copy(base_dir / "config.json", empty / "config.json")
    config, out = make_config(checkpointer={"checkpoint_dir": str(empty)})
    message = _fails(FULL, config)
    assert message.startswith(f"error: no weights in {empty}: expected model.safetensors")
    assert "but it holds config.json" in message and "\n" not in message
    _nothing_written(out)


def test_checkpoint_that_does_not_fit_the_config(make_config, tmp_path, base_dir):
    wrong = tmp_path / "wrong-width"
    shutil.copytree(base_dir, wrong)
    config_json = json.loads((wrong / "config.json").read_text())
    config_json.update(hidden_size=32, head_dim=8)
    (wrong / "config.json").write_text(json.dumps(config_json))
    config, out = make_config(checkpointer={"checkpoint_dir": str(wrong)})
    message = _fails(FULL, config)
    assert message.startswith("error: the checkpoint does not match the model: ")
    assert "layers.0.attn.q_proj.weight: checkpoint [64, 64] vs model [32, 32]" in message
    assert "\n" not in message
    _nothing_written(out)


def test_model_builder_that_does_not_fit_the_checkpoint(make_config, base_dir):
    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    model = {
        "_component_": "tunesmith_llama.llama",
        "vocab_size": vocab, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
        "embed_dim": 32, "intermediate_dim": 64, "max_seq_len": 256, "norm_eps": 1e-5,
        "rope_base": 500000.0, "tie_word_embeddings": True,
    }  # fmt: skip
    config, out = make_config(model=model)
    message = _fails(FULL, config)
    assert message.startswith("error: the checkpoint does not match the model: ")
    assert "tok_embeddings.weight: checkpoint [" in message and ", 64] vs model [" in message
    assert "model: {_component_: auto}" in message  # the fix
    _nothing_written(out)


def test_dataset_without_a_required_column(make_config, tmp_path):
    data = tmp_path / "answers.jsonl"
    rows = [{"instruction": f"Say {i}.", "answer": str(i)} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config, out = make_config(dataset={"source": str(data), "split": "train"})
    message = _fails(FULL, config)
    assert message == (
        f"error: column 'output' not found in {data}; its columns are: instruction, answer. "
        "Set dataset.column_map to say which column holds 'output', e.g. "
        "column_map={'output': '<your column>'}"
    )
    _nothing_written(out)


def test_malformed_json_row(make_config, tmp_path, data_file):
    data = tmp_path / "broken.jsonl"
    lines = data_file.read_text().splitlines()
    lines[4] = lines[4][:-5]  # line 5 loses its closing characters
    data.write_text("\n".join(lines) + "\n")
    config, out = make_config(dataset={"source": str(data)})
    message = _fails(FULL, config)
    assert message.startswith(f"error: {data}, line 5: invalid JSON")
    assert "fix or delete that line" in message and "\n" not in message
    _nothing_written(out)


def test_bad_cell_found_while_training(make_config, tmp_path, data_file):
    data = tmp_path / "null-answer.jsonl"
    rows = [json.loads(line) for line in data_file.read_text().splitlines()][:16]
    rows[9]["output"] = None
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config, out = make_config(dataset={"source": str(data)}, shuffle=False)
    message = _fails(FULL, config)
    # Row 9 counted from 0 (the 10th line), as datasets indexes rows.
    assert message == (
        f"error: {data}, row 9: column 'output' is empty (null): fill it in or filter the row out"
    )
    _nothing_written(out)
    assert sorted(losses(out)) == [1, 2]  # it failed in step 3, on the batch holding row 9


def test_typo_in_a_key(make_config, tmp_path):
    config, out = make_config()
    text = config.read_text().replace("\noptimizer:", "\noptimzer:")
    config.write_text(text)
    message = _fails(FULL, config)
    assert message.splitlines()[:2] == [
        "error: config has 2 problems:",
        "  - unknown key 'optimzer' for recipe full_finetune_single_device — "
        "did you mean 'optimizer' or 'optimizer_in_bwd'?",
    ]
    _nothing_written(out)


def test_typo_in_a_peft_key(make_config):
    config, out = make_config(peft={"_component_": "lora", "lora_attn_modules": ["q_proj"],
                                    "lora_rnak": 4})  # fmt: skip
    message = _fails("lora_finetune_single_device", config)
    assert message.splitlines() == [
        "error: config has 1 problem:",
        "  - peft: build_lora has no argument 'lora_rnak' — did you mean 'lora_rank' or "
        "'lora_alpha'?",
    ]
    _nothing_written(out)


@pytest.mark.parametrize("module", ["q_projj", "gate_proj"])
def test_lora_target_that_is_not_a_layer(make_config, module):
    config, out = make_config(peft={"_component_": "lora", "lora_attn_modules": [module]})
    message = _fails("lora_finetune_single_device", config)
    assert message.startswith(f"error: invalid LoRA target(s): '{module}' is not an attention")
    assert "Valid peft.lora_attn_modules: q_proj, k_proj, v_proj, output_proj." in message
    _nothing_written(out)


def test_diverging_loss(make_config):
    config, out = make_config(optimizer={"lr": float("inf")})
    message = _fails(FULL, config)
    assert message == (
        "error: loss became nan at step 2, so that step was not taken and nothing of it was "
        "saved: lower the learning rate or enable clip_grad_norm, then resume from the last "
        "saved state (resume_from_checkpoint=true) or start again"
    )
    _nothing_written(out)


def test_non_finite_weights_are_never_saved(make_config):
    # An infinite learning rate makes step 1's update non-finite; saving after it is refused.
    config, out = make_config(optimizer={"lr": float("inf")}, save_every_n_steps=1)
    message = _fails(FULL, config)
    assert message.startswith("error: the weights became non-finite (")
    assert "nothing was saved" in message
    _nothing_written(out)
