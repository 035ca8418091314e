"""Property-based fuzz (hypothesis) of the override and ``${...}`` interpolation syntax:
whatever string a user types, it applies, or it is refused with a ConfigError — never
another exception (which would reach the user as a traceback)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from omegaconf import OmegaConf

from tunesmith.config import apply_overrides, load_recipe_config, validate
from tunesmith.errors import ConfigError

# Hypothesis's caches go to a temporary directory, not .hypothesis/ in the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tunesmith-hypothesis")
# Deterministic (the same examples in CI as here), no example database.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_SYNTAX = "abcxyz_09.-+~=${}[]:,'\"\\ /?*!#\n"
# Strings made of the characters that mean something to the override and ${...} parsers,
# interpolation-shaped pieces, and anything at all.
_piece = st.one_of(
    st.text(alphabet=_SYNTAX, max_size=12),
    st.sampled_from(["${", "}", "${a}", "${b.c}", "${b.c[0]}", "${oc.env:HOME}", "${.a}",
                     "${..x}", "\\${", "${a:", "${ }", "${${a}}", "???", "a.b", "b.c.0", "~",
                     "+", "=", "[1,2", "{x: 1}", "null", "1e-4", "'q", '"q']),
    st.text(max_size=8),
)  # fmt: skip
TEXT = st.lists(_piece, max_size=6).map("".join)
OVERRIDE = st.one_of(
    TEXT,
    st.tuples(st.sampled_from(["", "+", "~", "++"]), TEXT, st.sampled_from(["=", ""]), TEXT).map(
        "".join
    ),
    st.tuples(st.sampled_from(["a", "b", "b.c", "b.c.1", "b.d", "e", "e.f", "+n"]), TEXT).map(
        lambda kv: f"{kv[0]}={kv[1]}"
    ),
)

BASE = {"a": 1, "b": {"c": [1, 2], "d": "${a}"}, "e": None, "s": "text"}


@settings(FUZZ, max_examples=600)
@given(overrides=st.lists(OVERRIDE, min_size=1, max_size=3))
def test_any_override_applies_or_is_a_config_error(overrides):
    cfg = OmegaConf.create(BASE)
    try:
        out = apply_overrides(cfg, overrides, known=("a", "b", "e", "s", "batch_size"))
        validate(out)  # resolves every ${...} the overrides brought in
    except ConfigError as exc:
        assert str(exc).strip(), "an empty message"
    assert OmegaConf.to_container(cfg, resolve=False) == BASE  # the input is never modified


@pytest.fixture
def generate_recipe():
    from tunesmith.registry import get_registry

    return get_registry().get("recipes", "generate")


@settings(FUZZ, max_examples=300)
@given(value=TEXT, override=OVERRIDE)
def test_any_interpolation_in_a_file_loads_or_is_a_config_error(
    tmp_path, generate_recipe, value, override
):
    path = tmp_path / "fuzz.yaml"
    config = {"checkpointer": {"checkpoint_dir": "/models/m"}, "prompt": {"user": value}}
    path.write_text(yaml.safe_dump(config))
    try:
        cfg = load_recipe_config(path, generate_recipe, [override])
        OmegaConf.to_container(cfg, resolve=True)  # what the recipe reads resolves
    except ConfigError as exc:
        assert str(exc).strip(), "an empty message"


@settings(FUZZ, max_examples=200)
@given(text=st.one_of(TEXT, TEXT.map(lambda t: f"checkpointer:\n  checkpoint_dir: {t}\n")))
def test_any_config_file_text_loads_or_is_a_config_error(tmp_path, generate_recipe, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_recipe_config(path, generate_recipe, [])
    except ConfigError as exc:
        assert str(exc).strip(), "an empty message"
