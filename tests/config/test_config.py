"""Configs: loading, command-line overrides, interpolation, ``_component_`` instantiation, validation."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from tunesmith import (
    Config,
    ConfigError,
    Dataset,
    Model,
    NotFoundError,
    PeftMethod,
    Recipe,
    hookimpl,
)
from tunesmith.config import (
    apply_overrides,
    find_config,
    instantiate,
    load_config,
    parse_value,
    resolve_component,
    validate,
)
from tunesmith.registry import load_registry, reset_registry

HERE = __name__  # dotted paths below point into this module


# ---- components the throwaway plugin registers, and dotted-path targets ----


def tiny_lm(*, dim: int = 8, n_layers: int = 2, dropout: float = 0.0, name: str | None = None):
    return {"dim": dim, "n_layers": n_layers, "dropout": dropout, "name": name}


def wrapped_lm(*, inner: Any, scale: float = 1.0):
    return {"inner": inner, "scale": scale}


def tiny_ds(tokenizer, *, source: str, split: str = "train", column_map: dict | None = None):
    return {"tokenizer": tokenizer, "source": source, "split": split, "column_map": column_map}


def fake_lora(*, lora_attn_modules: list, lora_rank: int = 8, lora_alpha: float = 16.0):
    return {"modules": lora_attn_modules, "rank": lora_rank, "alpha": lora_alpha}


class FakeOptimizer:
    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0):
        self.params, self.lr, self.weight_decay = params, lr, weight_decay


def make_widget(size: int = 1) -> dict:
    """A user's own component function (trusted only by TUNESMITH_TRUSTED_MODULES)."""
    return {"size": size}


RECIPE_KEYS = frozenset(
    {
        "output_dir",
        "model",
        "dataset",
        "optimizer",
        "batch_size",
        "epochs",
        "seed",
        "compile",
        "peft",
        "checkpointer",
        "tokenizer",
        "splits",
    }
)


def _run(cfg):  # never called: validation only
    raise AssertionError


CONFIG_YAML = f"""\
# tunesmith run fake_train --config fake/tiny
output_dir: /tmp/run
batch_size: 2
epochs: 1
seed: 42
compile: false
splits:
  train: train[:90%]
model:
  _component_: tiny_lm
  dim: 8
optimizer:
  _component_: {HERE}.FakeOptimizer
  lr: 2e-5
dataset:
  _component_: tiny_ds
  source: json
  split: ${{splits.train}}
  column_map:
    input: instruction
peft:
  _component_: fake_lora
  lora_attn_modules: [q_proj, v_proj]
  lora_rank: 8
checkpointer:
  checkpoint_dir: /models/tiny
  output_dir: ${{output_dir}}/ckpt
"""


class Parts:
    """A throwaway plugin registering what the configs above name."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @hookimpl
    def register_models(self, register):
        register(Model(name="tiny_lm", builder=tiny_lm, family="tiny"))
        register(Model(name="wrapped_lm", builder=wrapped_lm, family="tiny"))
        register(Model(name="shared", builder=lambda **kw: "the model", family="tiny"))
        # A registered name that looks like a dotted path still wins.
        register(
            Model(name="acme.tiny", builder=lambda **kw: "registered acme.tiny", family="tiny")
        )

    @hookimpl
    def register_datasets(self, register):
        register(Dataset(name="tiny_ds", builder=tiny_ds))
        register(Dataset(name="shared", builder=lambda tokenizer=None, **kw: "the dataset"))

    @hookimpl
    def register_peft_methods(self, register):
        register(PeftMethod(name="fake_lora", builder=fake_lora))

    @hookimpl
    def register_recipes(self, register):
        register(
            Recipe(
                name="fake_train",
                run=_run,
                keys=RECIPE_KEYS,
                required=frozenset({"output_dir", "model"}),
                defaults={"epochs": 3, "seed": 7},
            )
        )
        register(Config(name="fake/tiny", recipe="fake_train", path=self.config_path))


@pytest.fixture
def config_path(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG_YAML)
    return path


@pytest.fixture
def registry(config_path):
    registry = load_registry(
        builtins=False, entry_points=False, extra={"parts": Parts(config_path)}
    )
    assert not registry.load_errors()
    reset_registry(registry)
    return registry


@pytest.fixture
def recipe(registry) -> Recipe:
    return registry.get("recipes", "fake_train")


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -------------------------------------------------------------- loading ---


def test_load_by_path(registry, config_path):
    cfg = load_config(config_path)
    assert isinstance(cfg, DictConfig)
    assert cfg.batch_size == 2 and cfg.model._component_ == "tiny_lm"
    assert find_config(config_path) == (config_path, None)


def test_load_by_registered_name(registry, config_path):
    cfg = load_config("fake/tiny")
    assert cfg.output_dir == "/tmp/run"
    assert find_config("fake/tiny") == (config_path, "fake_train")
    assert find_config("fake/tiny.yaml") == (config_path, "fake_train")


def test_scientific_notation_in_yaml_is_a_float(registry, config_path):
    """PyYAML alone reads ``2e-5`` as a string; configs mean a float."""
    cfg = load_config(config_path)
    assert cfg.optimizer.lr == pytest.approx(2e-5) and isinstance(cfg.optimizer.lr, float)


def test_defaults_lie_beneath_the_file(registry, config_path, recipe):
    cfg = load_config(config_path, defaults=recipe.defaults)
    assert cfg.epochs == 1  # the file wins
    assert cfg.seed == 42
    cfg = load_config(config_path, ["~seed"], defaults=recipe.defaults)
    assert "seed" not in cfg  # overrides apply after defaults


def test_unknown_config_name_suggests_close_names(registry):
    with pytest.raises(
        NotFoundError, match=r"unknown config 'fake/tiyn' — did you mean 'fake/tiny'\?"
    ):
        load_config("fake/tiyn")


def test_missing_yaml_file_names_the_path(registry, tmp_path):
    with pytest.raises(NotFoundError, match=r"config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_file_and_line(registry, tmp_path):
    path = write(tmp_path, "batch_size: 2\nmodel:\n  dim: [1, 2\nepochs: 1\n", "broken.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert " line 4 " in message or " line 3 " in message
    assert "not valid YAML" in message


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just a string\n", "str")])
def test_yaml_that_is_not_a_mapping(registry, tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"must hold a mapping of keys to values, not {kind}"):
        load_config(path)


def test_empty_yaml_is_an_empty_config(registry, tmp_path):
    assert load_config(write(tmp_path, "# nothing yet\n")) == {}


# ------------------------------------------------------------ overrides ---


def test_overrides(registry, config_path):
    cfg = load_config(
        config_path,
        [
            "batch_size=4",
            "model.dim=32",
            "dataset.column_map.input=prompt",
            "peft.lora_attn_modules=[q_proj,k_proj,v_proj]",
            "~compile",
            "~peft.lora_rank",
            "+model.name=tiny-7b",
            "+new_top=3",
            "optimizer.lr=1e-4",
            "seed=null",
            "output_dir=/data/out",
        ],
    )
    assert cfg.batch_size == 4
    assert cfg.model.dim == 32
    assert cfg.dataset.column_map.input == "prompt"
    assert list(cfg.peft.lora_attn_modules) == ["q_proj", "k_proj", "v_proj"]
    assert "compile" not in cfg and "lora_rank" not in cfg.peft
    assert cfg.model.name == "tiny-7b" and cfg.new_top == 3
    assert cfg.optimizer.lr == 1e-4 and isinstance(cfg.optimizer.lr, float)
    assert cfg.seed is None
    # Interpolations follow the overridden value.
    assert cfg.checkpointer.output_dir == "/data/out/ckpt"


def test_override_list_item_and_later_wins(registry, config_path):
    cfg = load_config(
        config_path, ["peft.lora_attn_modules.0=k_proj", "batch_size=3", "batch_size=5"]
    )
    assert list(cfg.peft.lora_attn_modules) == ["k_proj", "v_proj"]
    assert cfg.batch_size == 5


def test_overrides_do_not_touch_the_given_config():
    cfg = OmegaConf.create({"a": {"b": 1}, "c": 2})
    new = apply_overrides(cfg, ["a.b=5", "~c"])
    assert OmegaConf.to_container(cfg) == {"a": {"b": 1}, "c": 2}
    assert OmegaConf.to_container(new) == {"a": {"b": 5}}


def test_override_of_unknown_key_suggests_and_hints_plus(registry, config_path):
    with pytest.raises(ConfigError) as caught:
        load_config(config_path, ["batch_sise=4"])
    message = str(caught.value)
    assert "cannot override 'batch_sise': no such key" in message
    assert "did you mean 'batch_size'?" in message
    assert "+batch_sise=4" in message


def test_override_under_unknown_parent_suggests(registry, config_path):
    with pytest.raises(
        ConfigError, match=r"'modle' is not a key of the config — did you mean 'model'\?"
    ):
        load_config(config_path, ["modle.dim=3"])
    with pytest.raises(ConfigError, match=r"no such key — did you mean 'dim'\?"):
        load_config(config_path, ["model.dimm=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_size", "is not of the form key=value"),
        ("=3", "is not of the form key=value"),
        ("~nope", "cannot delete 'nope': no such key"),
        ("peft.lora_attn_modules.7=x", "index 7 is outside the list"),
        ("batch_size.x=1", "its parent is not a mapping"),
    ],
)
def test_bad_overrides(registry, config_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_path, [override])


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-4", 1e-4),
        ("2E5", 2e5),
        ("10", 10),
        ("-3", -3),
        (".5", 0.5),
        ("1.0", 1.0),
        ("true", True),
        ("null", None),
        ("[a,b]", ["a", "b"]),
        ("[]", []),
        ("{a: 1}", {"a": 1}),
        ("hello", "hello"),
        ("'10'", "10"),
        ("a=b", "a=b"),
        ("[unclosed", "[unclosed"),
    ],
)
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


# -------------------------------------------------------- interpolation ---


def test_interpolation_within_and_across_sections(registry, config_path):
    cfg = load_config(config_path)
    assert cfg.checkpointer.output_dir == "/tmp/run/ckpt"
    assert cfg.dataset.split == "train[:90%]"
    # instantiate resolves interpolations that point into another section
    built = instantiate(cfg.dataset, "tok", key="dataset")
    assert built["split"] == "train[:90%]" and built["tokenizer"] == "tok"


def test_broken_interpolation_is_a_config_error(registry, config_path, recipe):
    cfg = load_config(config_path, ["dataset.split=${splits.validation}"])
    with pytest.raises(ConfigError) as caught:
        validate(cfg, recipe)
    # One of the listed problems (the others would be listed beside it).
    assert "\n  - cannot resolve 'dataset.split'" in str(caught.value)
    assert "splits.validation" in str(caught.value)
    assert "object_type" not in str(caught.value)  # OmegaConf's noise is trimmed
    with pytest.raises(ConfigError, match=r"cannot resolve 'dataset.split'.*splits.validation"):
        instantiate(cfg.dataset, "tok", key="dataset")


# ---------------------------------------------------- _component_ lookup ---


def test_registered_name_is_looked_up_in_the_table_of_its_key(registry):
    assert resolve_component("tiny_lm", key="model") is tiny_lm
    assert resolve_component("tiny_ds", key="dataset") is tiny_ds
    assert resolve_component("shared", key="model")() == "the model"
    assert resolve_component("shared", key="dataset")() == "the dataset"
    # Under an unmapped key a unique name is found in any table...
    assert resolve_component("tiny_lm", key="inner") is tiny_lm
    # ...and a name in two tables asks for the right key.
    with pytest.raises(NotFoundError, match=r"'shared'.*registered in both models and datasets"):
        resolve_component("shared")


def test_registered_name_wins_over_dotted_path(registry):
    assert resolve_component("acme.tiny", key="model")() == "registered acme.tiny"


def test_dotted_path_is_the_fallback(registry):
    assert resolve_component(f"{HERE}.FakeOptimizer", key="optimizer") is FakeOptimizer
    import torch

    assert resolve_component("torch.optim.SGD", key="optimizer") is torch.optim.SGD
    from tunesmith.training import cosine_with_warmup

    assert resolve_component("tunesmith.training.cosine_with_warmup") is cosine_with_warmup


def test_dotted_paths_must_name_the_kind_their_key_expects(registry, monkeypatch):
    from tunesmith.errors import ConfigError

    monkeypatch.delenv("TUNESMITH_TRUSTED_MODULES", raising=False)
    with pytest.raises(
        ConfigError,
        match="'config._component_: collections.OrderedDict' is not a "
        "registered component, and collections is not a trusted module",
    ):
        resolve_component("collections.OrderedDict")
    with pytest.raises(ConfigError, match="is not a torch.optim.Optimizer class"):
        resolve_component("torch.nn.Linear", key="optimizer")
    with pytest.raises(ConfigError, match=f"TUNESMITH_TRUSTED_MODULES={HERE}"):
        resolve_component(f"{HERE}.make_widget", key="widget")
    monkeypatch.setenv("TUNESMITH_TRUSTED_MODULES", HERE)
    assert resolve_component(f"{HERE}.make_widget", key="widget") is make_widget


@pytest.mark.parametrize(
    "path",
    ["os.system", "subprocess.run", "builtins.eval", "torch.hub.load", "pickle.loads",
     "shutil.rmtree", "importlib.import_module"],
)  # fmt: skip
def test_code_running_callables_are_refused_even_when_trusted(registry, monkeypatch, path):
    from tunesmith.errors import ConfigError

    monkeypatch.setenv("TUNESMITH_TRUSTED_MODULES", "os,subprocess,builtins,torch,pickle,shutil")
    for key in ("metric_logger", "optimizer", None):
        with pytest.raises(ConfigError, match="names code that runs programs, loads pickles"):
            resolve_component(path, key=key)


def test_unknown_component_suggests_close_names(registry):
    with pytest.raises(NotFoundError, match=r"unknown model 'tiny_lmm' — did you mean 'tiny_lm'\?"):
        resolve_component("tiny_lmm", key="model")
    with pytest.raises(
        NotFoundError,
        match=r"unknown component 'tiny_dss' \(under 'optimizer'\) — did you mean 'tiny_ds'",
    ):
        resolve_component("tiny_dss", key="optimizer")
    with pytest.raises(
        NotFoundError,
        match=r"cannot import 'fractions.Fractoin'.*did you mean 'fractions.Fraction'\?",
    ):
        resolve_component("fractions.Fractoin")
    with pytest.raises(NotFoundError, match=r"cannot import 'no_such_module_xyz.Thing'"):
        resolve_component("no_such_module_xyz.Thing")


# ---------------------------------------------------------- instantiate ---


def test_instantiate_registered_builder_from_config(registry, config_path):
    cfg = load_config(config_path, ["model.dim=16"])
    assert instantiate(cfg.model, key="model") == {
        "dim": 16,
        "n_layers": 2,
        "dropout": 0.0,
        "name": None,
    }


def test_instantiate_with_call_time_args_and_keyword_overrides(registry, config_path):
    cfg = load_config(config_path)
    params = [1, 2, 3]
    optimizer = instantiate(cfg.optimizer, params, weight_decay=0.1)
    assert isinstance(optimizer, FakeOptimizer)
    assert optimizer.params is params
    assert optimizer.lr == pytest.approx(2e-5)  # from the config
    assert optimizer.weight_decay == 0.1  # call-time keyword wins
    assert instantiate(cfg.optimizer, params, lr=0.5).lr == 0.5


def test_instantiate_nested_components(registry):
    node = OmegaConf.create(
        {"_component_": "wrapped_lm", "scale": 2.0, "inner": {"_component_": "tiny_lm", "dim": 4}}
    )
    built = instantiate(node, key="model")
    assert built == {"inner": {"dim": 4, "n_layers": 2, "dropout": 0.0, "name": None}, "scale": 2.0}
    # A plain dict works too.
    assert instantiate({"_component_": "tiny_lm", "n_layers": 1}, key="model")["n_layers"] == 1


def test_instantiate_optional_and_malformed_nodes(registry):
    assert instantiate(None) is None
    with pytest.raises(ConfigError, match="'model' has no _component_"):
        instantiate({"dim": 3}, key="model")
    with pytest.raises(ConfigError, match="'model' must be a mapping with _component_"):
        instantiate("tiny_lm", key="model")


def test_instantiate_rejects_unknown_arguments_with_suggestion(registry):
    with pytest.raises(
        ConfigError,
        match=r"cannot build 'model': .*tiny_lm has no argument 'dimm' — did you mean 'dim'\?",
    ):
        instantiate({"_component_": "tiny_lm", "dimm": 3}, key="model")
    with pytest.raises(
        ConfigError, match=r"cannot build 'optimizer': .*missing a required argument: 'params'"
    ):
        instantiate({"_component_": f"{HERE}.FakeOptimizer"}, key="optimizer")


# ------------------------------------------------------------- validate ---


def test_valid_config_passes(registry, config_path, recipe):
    cfg = load_config(config_path, defaults=recipe.defaults)
    validate(cfg, recipe)
    validate(load_config(config_path, ["model={_component_: auto}"]), recipe)


def test_validate_reports_every_problem_at_once(registry, config_path, recipe):
    cfg = load_config(
        config_path,
        [
            "checkpointer.output_dir=/tmp/ckpt",  # (it interpolated output_dir)
            "~output_dir",  # missing required key
            "+optimzer={lr: 1}",  # unknown top-level key
            "+model.dimm=8",  # unknown component argument
            "batch_size=0",  # bad value
            "epochs=many",  # wrong type
            "dataset.source=3",  # wrong type for the builder's annotation
            "+optimizer.weight_decay=lots",  # wrong type for a class's __init__ annotation
            "peft.lora_rank=eight",  # wrong type for a peft method's argument
        ],
    )
    with pytest.raises(ConfigError) as caught:
        validate(cfg, recipe)
    message = str(caught.value)
    lines = message.splitlines()
    assert lines[0] == "config has 8 problems:"
    assert all(line.startswith("  - ") for line in lines[1:]) and len(lines) == 9
    for expected in (
        "unknown key 'optimzer' for recipe fake_train — did you mean 'optimizer'?",
        "missing required key 'output_dir' for recipe fake_train",
        "model: tiny_lm has no argument 'dimm' — did you mean 'dim'?",
        "'batch_size' must be at least 1, not 0",
        "'epochs' must be int, not 'many'",
        "'dataset.source' must be str, not 3",
        "'optimizer.weight_decay' must be float, not 'lots'",
        "'peft.lora_rank' must be int, not 'eight'",
    ):
        assert expected in message, f"{expected!r} not in:\n{message}"


def test_validate_reports_unknown_components_and_missing_component(registry, config_path, recipe):
    cfg = load_config(
        config_path, ["model._component_=tiny_lmm", "+tokenizer={path: /x}", "peft._component_=x"]
    )
    with pytest.raises(ConfigError) as caught:
        validate(cfg, recipe)
    message = str(caught.value)
    assert "unknown model 'tiny_lmm' — did you mean 'tiny_lm'?" in message
    assert "'tokenizer' has no _component_" in message
    # peft's `x` is in no table: the message points at the peft methods
    assert "unknown peft method 'x'" in message


def test_validate_without_recipe_checks_types_and_components(registry, config_path):
    cfg = load_config(config_path, ["+unexpected=1", "batch_size=true"])
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    message = str(caught.value)
    assert "'batch_size' must be int, not True" in message
    assert "unexpected" not in message  # no recipe: any key is allowed
