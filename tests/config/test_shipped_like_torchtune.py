"""Each shipped config named as one of torchtune 0.6.1's trains as torchtune's does.

``tests/fixtures/torchtune_config_values.json`` holds the settings of torchtune's own
fine-tuning configs (recorded from its wheel by ``make_torchtune_config_values.py``).
A config a torchtune user names (``llama3_2/1B_lora_single_device``, ``qwen2/7B_lora``)
must give the same batches, learning rate, schedule, adapter, data, memory settings and
seed as torchtune's. Not compared, on purpose (README, "Coming from torchtune"):
``device``/``dtype`` (``auto``: bf16 on a GPU that has it, as torchtune's ``bf16``),
the tokenizer's component (``auto`` finds the files the checkpoint has), the optimizer's
class (torch's AdamW where torchtune names bitsandbytes' or torchao's 8-bit one) and the
checkpointer's file lists (found in the checkpoint directory).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.config._load import config_source
from tunesmith.errors import NotFoundError
from tunesmith.registry import get_registry

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torchtune_config_values.json"
RECORDED = json.loads(FIXTURE.read_text())["configs"]
_ABSENT = object()

#: torchtune key -> (tunesmith key, the value torchtune's recipe or builder uses when the
#: config leaves it out). Dataset, scheduler and the QLoRA base are compared on their own.
SAME_KEYS = {
    "batch_size": ("batch_size", _ABSENT),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", 1),
    "epochs": ("epochs", _ABSENT),
    "max_steps_per_epoch": ("max_steps_per_epoch", None),
    "clip_grad_norm": ("clip_grad_norm", None),
    "seed": ("seed", None),
    "shuffle": ("shuffle", True),
    "compile": ("compile", False),
    "enable_activation_checkpointing": ("enable_activation_checkpointing", False),
    "enable_activation_offloading": ("enable_activation_offloading", False),
    "optimizer.lr": ("optimizer.lr", _ABSENT),
    "optimizer.weight_decay": ("optimizer.weight_decay", 0.01),  # torch's AdamW default
    "tokenizer.max_seq_len": ("tokenizer.max_seq_len", None),
}
FULL_KEYS = {"optimizer_in_bwd": ("optimizer_in_bwd", False)}
LORA_KEYS = {
    "save_adapter_weights_only": ("save_adapter_weights_only", False),
    "model.lora_attn_modules": ("peft.lora_attn_modules", _ABSENT),
    "model.apply_lora_to_mlp": ("peft.apply_lora_to_mlp", False),
    "model.apply_lora_to_output": ("peft.apply_lora_to_output", False),
    "model.lora_rank": ("peft.lora_rank", _ABSENT),
    "model.lora_alpha": ("peft.lora_alpha", _ABSENT),
    "model.lora_dropout": ("peft.lora_dropout", 0.0),
    "model.use_dora": ("peft.use_dora", False),
}
#: The recipe's own defaults, for keys a shipped config leaves out.
OURS_ABSENT = {
    "optimizer_in_bwd": False,
    "save_adapter_weights_only": False,
    "optimizer.weight_decay": 0.01,
    "peft.use_dora": False,
    "peft.lora_dropout": 0.0,
    "compile": False,
}
DATASETS = {
    "torchtune.datasets.alpaca_dataset": "tatsu-lab/alpaca",
    "torchtune.datasets.alpaca_cleaned_dataset": "yahma/alpaca-cleaned",
}


def _get(config: dict, dotted: str, default: Any = _ABSENT) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _shipped(name: str) -> dict | None:
    try:
        text = config_source(name)[0]
    except NotFoundError:
        return None
    return yaml.safe_load(text)


def differences(name: str, theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """One line per setting in which the shipped config trains otherwise than torchtune's."""
    lora = "lora_" in str(theirs.get("model._component_", ""))
    keys = {**SAME_KEYS, **(LORA_KEYS if lora else FULL_KEYS)}
    found = []
    for key, (our_key, their_default) in keys.items():
        want = theirs.get(key, their_default)
        have = _get(ours, our_key, OURS_ABSENT.get(our_key, _ABSENT))
        if want is _ABSENT or not _same(want, have):
            found.append(f"{name}: {our_key} is {have!r}, torchtune's {key} is {want!r}")
    scheduled = "lr_scheduler._component_" in theirs
    if scheduled != bool(_get(ours, "lr_scheduler", None)):
        found.append(f"{name}: lr_scheduler {'missing' if scheduled else 'set'}")
    elif scheduled:
        warmup = _get(ours, "lr_scheduler.num_warmup_steps")
        if warmup != theirs["lr_scheduler.num_warmup_steps"]:
            found.append(f"{name}: num_warmup_steps {warmup!r}, torchtune's "
                         f"{theirs['lr_scheduler.num_warmup_steps']!r}")  # fmt: skip
    source = DATASETS[theirs["dataset._component_"]]
    data = (_get(ours, "dataset._component_"), _get(ours, "dataset.source"))
    if data != ("alpaca", source):
        found.append(f"{name}: dataset {data}, torchtune's alpaca from {source}")
    for key, default in (("dataset.train_on_input", True), ("dataset.packed", False)):
        if _get(ours, key, _ABSENT) != theirs.get(key, default):
            found.append(f"{name}: {key} {_get(ours, key)!r}, torchtune's "
                         f"{theirs.get(key, default)!r}")  # fmt: skip
    if lora:
        builder = theirs["model._component_"]
        quantized = "qlora_" in builder or bool(theirs.get("model.quantize_base"))
        if (_get(ours, "peft._component_") == "qlora") != quantized:
            found.append(f"{name}: peft {_get(ours, 'peft._component_')!r} against {builder}")
    elif _get(ours, "peft", None) is not None:
        found.append(f"{name}: has peft, torchtune's is full fine-tuning")
    return found


def _comparable() -> dict[str, dict]:
    families = {name.split("/")[0] for name in get_registry().tables["configs"]}
    return {name: record for name, record in RECORDED.items() if name.split("/")[0] in families}


def test_every_torchtune_config_of_a_shipped_family_is_shipped_under_its_name():
    missing = [name for name in _comparable() if _shipped(name) is None]
    assert missing == []
    # The families torchtune has and tunesmith ships: all but Llama 3.2 Vision.
    assert {name.split("/")[0] for name in RECORDED} - {
        name.split("/")[0] for name in _comparable()
    } == {"llama3_2_vision"}


def test_shipped_configs_train_as_torchtunes_of_the_same_name():
    found = [
        line
        for name, record in sorted(_comparable().items())
        for line in differences(name, record["values"], _shipped(name))
    ]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("llama3_2/1B_lora_single_device", "peft.lora_rank", 64),
        ("llama3_2/1B_lora_single_device", "dataset.train_on_input", True),
        ("llama3_2/1B_full_single_device", "optimizer_in_bwd", True),
        ("gemma/2B_lora", "optimizer.lr", 2.0e-5),
        ("qwen2/0.5B_lora", "optimizer.lr", 2.0e-3),
    ],
)
def test_examples_of_torchtunes_settings(name, key, value):
    """A few of the recorded facts, read straight from the shipped files (so a fixture
    recorded wrong cannot make both sides agree)."""
    assert _same(_get(_shipped(name), key), value)
