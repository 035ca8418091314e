"""Adapters are loaded by the method their adapter_config.json declares, never by name."""

from __future__ import annotations

import json

import pytest

from tunesmith import CheckpointError, PeftMethod, TunesmithError, hookimpl
from tunesmith.peft import find_adapter_dir, peft_method_for, transform_for_adapter
from tunesmith.testing import plugin_registry


def _method(name, peft_type=None, **match):
    return PeftMethod(name=name, builder=dict, peft_type=peft_type, adapter_match=match,
                      from_adapter_config=lambda config, name=name: (name, config))  # fmt: skip


class _Methods:
    def __init__(self, *methods):
        self.methods = methods

    @hookimpl
    def register_peft_methods(self, register):
        for method in self.methods:
            register(method)


METHODS = _Methods(
    _method("plain", "LORA", use_dora=False, use_rslora=False),
    _method("decomposed", "LORA", use_dora=True),
    _method("stabilised", "LORA", use_rslora=True, use_dora=False),
    _method("training_variant"),  # declares no peft_type: never loads
    _method("prefix", "PREFIX_TUNING"),
)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"peft_type": "LORA"}, "plain"),  # missing fields count as false
        ({"peft_type": "LORA", "use_dora": False}, "plain"),
        ({"peft_type": "LORA", "use_dora": True}, "decomposed"),
        ({"peft_type": "LORA", "use_rslora": True}, "stabilised"),
        ({"peft_type": "PREFIX_TUNING"}, "prefix"),
    ],
)
def test_the_declared_fields_choose_the_method(config, expected):
    with plugin_registry({"methods": METHODS}) as registry:
        assert peft_method_for(config, registry=registry).name == expected


def test_no_method_ambiguity_and_missing_type_are_one_line_errors():
    with plugin_registry({"methods": METHODS}) as registry:
        with pytest.raises(
            TunesmithError,
            match="no installed PEFT method loads the adapter, "
            "of peft_type 'IA3' .installed: LORA, PREFIX_TUNING.",
        ):
            peft_method_for({"peft_type": "IA3"}, registry=registry)
        with pytest.raises(CheckpointError, match="names no peft_type"):
            peft_method_for({}, registry=registry)
    plain_only = _Methods(_method("plain", "LORA", use_dora=False))
    with plugin_registry({"methods": plain_only}) as registry:
        with pytest.raises(TunesmithError, match="of peft_type 'LORA' with these settings"):
            peft_method_for({"peft_type": "LORA", "use_dora": True}, registry=registry)
    twins = _Methods(_method("a", "LORA"), _method("b", "LORA"))
    with plugin_registry({"twins": twins}) as registry:
        with pytest.raises(CheckpointError, match="both 'a' .twins. and 'b' .twins. claim"):
            peft_method_for({"peft_type": "LORA"}, registry=registry)


def test_a_run_directory_or_its_adapter_folder(tmp_path):
    adapter = tmp_path / "epoch_0" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    assert find_adapter_dir(tmp_path / "epoch_0") == adapter == find_adapter_dir(adapter)
    with plugin_registry({"methods": METHODS}):
        directory, (name, config) = transform_for_adapter(tmp_path / "epoch_0")
    assert (directory, name, config) == (adapter, "plain", {"peft_type": "LORA"})
    with pytest.raises(CheckpointError, match="no adapter_config.json in"):
        find_adapter_dir(tmp_path)
