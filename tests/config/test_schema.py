"""Recipe schemas: one list of keys (types, defaults, ranges, required) that validation,
``load_recipe_config`` and the recipe all read."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tunesmith import ConfigError, Recipe, hookimpl
from tunesmith.config import (
    Key,
    RecipeSchema,
    at_least,
    greater_than,
    in_range,
    load_config,
    load_recipe_config,
    validate,
)
from tunesmith.registry import load_registry, reset_registry

HERE = __name__


class Optimizer:
    """Stands in for torch.optim.*: numbers by default, no plain annotations."""

    def __init__(
        self, params=None, lr=1e-3, eps: float | complex | None = None, name: str | object = 0
    ):
        self.lr = lr


SCHEMA = RecipeSchema(
    (
        Key("output_dir", str, required=True, help="Where results go"),
        Key("optimizer", dict, required=True, help="{_component_: ...}"),
        Key("checkpointer", (dict, None), None),
        Key("batch_size", int, 1, check=at_least(1), help="Samples per step"),
        Key("epochs", int, 1, check=at_least(1)),
        Key("max_steps_per_epoch", (int, None), None, check=at_least(1)),
        Key("clip_grad_norm", (float, None), None, check=greater_than(0)),
        Key("top_p", (float, None), None, check=in_range(0, 1, low_open=True)),
        Key("prompt", (dict, None), {"user": None, "system": None}),
        Key("tasks", (list, str), help="No default: left out when the file leaves it out"),
    ),
    refused={"model": "it builds the model from checkpointer.checkpoint_dir: remove 'model'"},
)

RAN: list = []


class Parts:
    @hookimpl
    def register_recipes(self, register):
        register(Recipe(name="typed", run=RAN.append, schema=SCHEMA, defaults={"epochs": 2}))
        register(
            Recipe(
                name="legacy",
                run=RAN.append,
                keys=frozenset({"output_dir", "batch_size", "optimizer"}),
                required=frozenset({"output_dir"}),
                defaults={"batch_size": 4},
            )
        )


@pytest.fixture(autouse=True)
def registry():
    RAN.clear()
    registry = load_registry(builtins=False, entry_points=False, extra={"parts": Parts()})
    assert not registry.load_errors()
    reset_registry(registry)
    return registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BASE = f"""\
output_dir: /tmp/out
optimizer:
  _component_: {HERE}.Optimizer
  lr: 0.1
"""


def problems(error: pytest.ExceptionInfo) -> list[str]:
    lines = str(error.value).splitlines()
    assert lines[0].startswith("config has "), lines
    return [line.removeprefix("  - ") for line in lines[1:]]


# ------------------------------------------------------------------ records ---


def test_key_and_schema_records():
    key = SCHEMA.get("batch_size")
    assert key.describe() == ("int >= 1", "1")
    assert SCHEMA.get("max_steps_per_epoch").describe() == ("int >= 1 or null", "null")
    assert SCHEMA.get("output_dir").describe() == ("str", "required")
    assert SCHEMA.get("tasks").describe() == ("list or str", "unset")
    assert key.problem(0) == "'batch_size' must be at least 1, not 0"
    assert key.problem(True) == "'batch_size' must be int, not True"
    assert SCHEMA.get("clip_grad_norm").problem(1) is None  # an int is a float
    assert SCHEMA.get("clip_grad_norm").problem(float("inf")) is None
    # clip_grad_norm=inf on the command line is YAML's string 'inf'
    assert SCHEMA.get("clip_grad_norm").problem("inf") == (
        "'clip_grad_norm' must be float or null, not 'inf' (YAML writes it .inf)"
    )
    assert key.problem("nan") == "'batch_size' must be int, not 'nan'"  # no float: no hint
    assert SCHEMA.get("top_p").problem(0.0) == "'top_p' must be in (0, 1], not 0.0"
    assert SCHEMA.required == {"output_dir", "optimizer"}
    assert "tasks" not in SCHEMA.defaults()
    with pytest.raises(ValueError, match="required, so it cannot have a default"):
        Key("x", int, 1, required=True)
    with pytest.raises(ValueError, match="default 'a' is not int"):
        Key("x", int, "a")
    with pytest.raises(ValueError, match="appears twice"):
        RecipeSchema((Key("a"), Key("a")))
    extended = SCHEMA.extend(Key("batch_size", int, 8), Key("new", bool, False))
    assert extended.get("batch_size").default == 8 and "new" in extended and len(extended) == 11


def test_recipe_derives_keys_from_schema_and_schema_from_keys(registry):
    typed = registry.get("recipes", "typed")
    assert typed.keys == SCHEMA.names and typed.required == SCHEMA.required
    legacy = registry.get("recipes", "legacy")
    assert legacy.schema.names == {"output_dir", "batch_size", "optimizer"}
    # API 1: the well-known names keep the core's types, but get no defaults.
    assert legacy.schema.get("batch_size").problem(0) == "'batch_size' must be at least 1, not 0"
    assert legacy.schema.defaults() == {}
    assert Recipe(name="any", run=print).schema.open
    with pytest.raises(ValueError, match="give schema or keys/required, not both"):
        Recipe(name="x", run=print, schema=SCHEMA, keys=frozenset({"a"}))
    with pytest.raises(ValueError, match=r"defaults for keys not in its schema: \['lr'\]"):
        Recipe(name="x", run=print, schema=SCHEMA, defaults={"lr": 1})


def test_core_recipes_and_aliases_share_one_schema_per_kind():
    from tunesmith.recipes import FINETUNE_SCHEMA, GENERATE_SCHEMA, QUANTIZE_SCHEMA

    registry = load_registry(entry_points=False)
    reset_registry(registry)
    for name in ("finetune", "full_finetune_single_device", "full_finetune_distributed"):
        assert registry.get("recipes", name).schema is FINETUNE_SCHEMA
    assert registry.get("recipes", "generate").schema is GENERATE_SCHEMA
    assert registry.get("recipes", "quantize").schema is QUANTIZE_SCHEMA
    assert "model" not in GENERATE_SCHEMA and "model" in GENERATE_SCHEMA.refused


# ------------------------------------------------------- load_recipe_config ---


def test_schema_defaults_lie_beneath_alias_defaults_file_and_overrides(registry, tmp_path):
    recipe = registry.get("recipes", "typed")
    path = write(tmp_path, BASE + "batch_size: 3\n")
    cfg = load_recipe_config(path, recipe, ["prompt.user=hi", "checkpointer.checkpoint_dir=/m"])
    assert cfg.batch_size == 3  # the file
    assert cfg.epochs == 2  # the alias default, over the schema's 1
    assert cfg.max_steps_per_epoch is None and cfg.clip_grad_norm is None  # the schema
    assert OmegaConf.to_container(cfg.prompt) == {"user": "hi", "system": None}
    assert cfg.checkpointer.checkpoint_dir == "/m"  # a null block of the schema starts
    assert "tasks" not in cfg  # no default: nothing filled in
    # Deleting a key brings its default back.
    assert load_recipe_config(write(tmp_path, BASE), recipe, ["~epochs"]).epochs == 1


def test_a_schema_key_the_file_lacks_overrides_without_plus(registry, tmp_path):
    recipe = registry.get("recipes", "typed")
    path = write(tmp_path, BASE)
    cfg = load_recipe_config(path, recipe, ["max_steps_per_epoch=1", "tasks=[a]"])
    assert cfg.max_steps_per_epoch == 1 and list(cfg.tasks) == ["a"]
    # A key the schema does not know still needs + (and is then refused by validation).
    with pytest.raises(ConfigError) as caught:
        load_recipe_config(path, recipe, ["max_step_per_epoch=1"])
    assert problems(caught) == [
        "cannot override 'max_step_per_epoch': no such key — did you mean "
        "'max_steps_per_epoch'? (to add a new key, write +max_step_per_epoch=1)"
    ]
    with pytest.raises(ConfigError, match="unknown key 'max_step_per_epoch' for recipe typed"):
        load_recipe_config(path, recipe, ["+max_step_per_epoch=1"])


def test_interpolation_variables_are_accepted_and_dropped(registry, tmp_path):
    recipe = registry.get("recipes", "typed")
    path = write(
        tmp_path,
        BASE.replace("/tmp/out", "${root}/out")
        + "root: ${base_dir}/runs\nbase_dir: /models\nprompt: {user: '${greeting}!'}\n"
        + "greeting: hi\n",
    )
    cfg = load_recipe_config(path, recipe)
    assert cfg.output_dir == "/models/runs/out" and cfg.prompt.user == "hi!"
    assert not {"root", "base_dir", "greeting"} & set(cfg)  # the recipe never sees them
    validate(load_config(path), recipe)  # plain validate accepts them too
    # An unknown key nothing references is still refused, with a suggestion.
    with pytest.raises(ConfigError) as caught:
        load_recipe_config(write(tmp_path, BASE + "bach_size: 2\nbase_dir: /m\n"), recipe)
    assert problems(caught) == [
        "unknown key 'bach_size' for recipe typed — did you mean 'batch_size'?",
        "unknown key 'base_dir' for recipe typed (remove it; `tunesmith run typed --help` "
        "lists the keys it reads)",
    ]


def test_every_problem_is_listed_at_once(registry, tmp_path):
    recipe = registry.get("recipes", "typed")
    path = write(tmp_path, BASE + "checkpointer: {checkpoint_dir: '${base'}\nmodel: {}\n")
    overrides = [
        "optimizer.lr=abc",  # a string for a parameter whose default is a number
        "+optimizer.eps=tiny",  # a numeric annotation that admits no strings
        "+optimizer.name=adam",  # an annotation that admits strings
        "batch_sise=2",  # typo
        "~nothing",  # nothing to delete
        "epochs",  # not key=value
        "top_p=0",  # out of range
        "clip_grad_norm=0",
        "prompt.user=${nowhere}",  # broken reference
        "prompt.system=${oops",  # malformed
        "~output_dir",  # required
    ]
    with pytest.raises(ConfigError) as caught:
        load_recipe_config(path, recipe, overrides)
    assert problems(caught) == [
        "'checkpointer.checkpoint_dir' has a malformed interpolation '${base': write ${key} or "
        "${key.subkey} (\\${ for a literal ${)",
        "cannot override 'batch_sise': no such key — did you mean 'batch_size'? "
        "(to add a new key, write +batch_sise=2)",
        "cannot delete 'nothing': no such key in the config",
        "override 'epochs' is not of the form key=value (or ~key to delete, +key=value to add)",
        "override 'prompt.system=${oops': 'prompt.system' has a malformed interpolation "
        "'${oops': write ${key} or ${key.subkey} (\\${ for a literal ${)",
        "cannot resolve 'prompt.user': Interpolation key 'nowhere' not found: fix the ${...} "
        "reference",
        "key 'model' is not read by recipe typed: it builds the model from "
        "checkpointer.checkpoint_dir: remove 'model'",
        "missing required key 'output_dir' for recipe typed: add it (Where results go)",
        "'optimizer.lr' must be a number, not 'abc' (Optimizer's default is 0.001)",
        "'optimizer.eps' must be a number, not 'tiny'",
        "'clip_grad_norm' must be greater than 0, not 0",
        "'top_p' must be in (0, 1], not 0",
    ]


def test_torch_optimizer_lr_must_be_a_number(registry, tmp_path):
    """``lr`` of AdamW is annotated ``float | Tensor``: its float default decides."""
    recipe = registry.get("recipes", "typed")
    path = write(tmp_path, "output_dir: /x\noptimizer: {_component_: torch.optim.AdamW}\n")
    with pytest.raises(ConfigError) as caught:
        load_recipe_config(path, recipe, ["+optimizer.lr=abc", "+optimizer.weight_decay=0.1"])
    assert problems(caught) == [
        "'optimizer.lr' must be a number, not 'abc' (AdamW's default is 0.001)"
    ]
    load_recipe_config(path, recipe, ["+optimizer.lr=2e-5"])


def test_api1_recipe_validates_like_before(registry, tmp_path):
    recipe = registry.get("recipes", "legacy")
    cfg = load_recipe_config(write(tmp_path, BASE), recipe)
    assert cfg.batch_size == 4 and "epochs" not in cfg  # its defaults only
    with pytest.raises(ConfigError) as caught:
        load_recipe_config(
            write(tmp_path, BASE), recipe, ["batch_size=0", "+epochs=1", "~output_dir"]
        )
    assert problems(caught) == [
        "unknown key 'epochs' for recipe legacy (remove it; `tunesmith run legacy --help` "
        "lists the keys it reads)",
        "missing required key 'output_dir' for recipe legacy: add it (Where epoch_N/, logs/ "
        "and recipe_state/ go)",
        "'batch_size' must be at least 1, not 0",
    ]


def test_a_value_omegaconf_refuses_at_creation_is_one_config_error():
    # The last guard behind _check_interpolations (a value it let through once in CI).
    from tunesmith.config._load import _create

    with pytest.raises(ConfigError) as caught:
        _create({"prompt": {"user": "${"}})
    assert str(caught.value) == (
        "'prompt.user' has a malformed interpolation: write ${key} or ${key.subkey} "
        "(\\${ for a literal ${)"
    )
