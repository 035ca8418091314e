"""The plugin's registrations: PEFT methods and the torchtune-named recipe aliases."""

from __future__ import annotations

import subprocess
import sys

import tunesmith_lora.plugin
from tunesmith.registry import load_registry


def _registry():
    return load_registry(builtins=False, entry_points=False, extra={"lora": tunesmith_lora.plugin})


def test_registers_lora_dora_qlora() -> None:
    registry = _registry()
    assert {"lora", "dora", "qlora"} <= set(registry.names("peft_methods"))
    lora = registry.get("peft_methods", "lora").builder(lora_attn_modules=["q_proj"])
    dora = registry.get("peft_methods", "dora").builder(lora_attn_modules=["q_proj"], lora_rank=4)
    qlora = registry.get("peft_methods", "qlora").builder(lora_attn_modules=["q_proj"])
    assert (lora.use_dora, lora.quantize_base) == (False, False)
    assert (dora.use_dora, dora.lora_rank) == (True, 4)
    assert qlora.quantize_base
    assert registry.get("peft_methods", "lora").origin.plugin == "lora"


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="tunesmith")}
    assert eps.get("lora") == "tunesmith_lora.plugin"


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = (
        "import sys, tunesmith_lora, tunesmith_lora.plugin\n"
        "from tunesmith.registry import load_registry\n"
        "r = load_registry(builtins=False, entry_points=False, extra={'lora': tunesmith_lora.plugin})\n"
        "assert 'lora_finetune_single_device' in r.names('recipes'), r.load_errors()\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registers_recipe_aliases_of_finetune() -> None:
    from tunesmith.recipes import FINETUNE_KEYS, FINETUNE_REQUIRED_KEYS, run_finetune

    registry = _registry()
    assert registry.load_errors() == {}
    expected = {
        "lora_finetune_single_device": ("lora", False),
        "lora_finetune_distributed": ("lora", True),
        "qlora_finetune_single_device": ("qlora", False),
    }
    for name, (method, distributed) in expected.items():
        recipe = registry.get("recipes", name)
        assert recipe.run is run_finetune
        assert recipe.run.recipe_module == "tunesmith.recipes.finetune"
        assert recipe.keys == FINETUNE_KEYS and recipe.required == FINETUNE_REQUIRED_KEYS
        assert recipe.defaults == {"peft": {"_component_": method}}
        assert recipe.distributed is distributed


def test_every_public_name_resolves() -> None:
    import tunesmith_lora

    for name in tunesmith_lora.__all__:
        assert getattr(tunesmith_lora, name) is not None, name
