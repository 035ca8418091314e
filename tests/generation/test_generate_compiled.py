"""Compiled decoding (``compile_for_generation``, ``generate compile=true``) produces
eager decoding's tokens, and prompts of other lengths reuse its graphs."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.generation import compile_for_generation, generate_tokens
from tunesmith.generation._compile import cache_length


@pytest.fixture
def fresh_model(checkpoints):
    """A model of its own (compiling changes it in place; ``loaded`` is shared)."""
    model, _ = tunesmith.load_pretrained(checkpoints["llama3_2"], dtype="fp32", device="cpu")
    return model


@pytest.fixture
def inductor_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


def test_cache_length_is_exact_eager_and_a_power_of_two_compiled(fresh_model):
    assert cache_length(fresh_model, 70) == 70
    assert compile_for_generation(fresh_model) is fresh_model  # compiles lazily, on first use
    assert compile_for_generation(fresh_model) is fresh_model  # twice changes nothing
    limit = fresh_model.max_seq_len
    assert limit == 256
    assert [cache_length(fresh_model, n) for n in (1, 70, 128, 129, 200, 256)] == [
        128,
        128,
        128,
        256,
        256,
        256,
    ]
    fresh_model.max_seq_len = 200  # never more slots than the model has
    assert cache_length(fresh_model, 129) == 200
    assert cache_length(fresh_model, 200) == 200


@pytest.mark.parametrize(
    "asked, passed",
    [
        ({}, {"options": {"cpp_wrapper": True}}),
        ({"options": {"cpp_wrapper": False}}, {"options": {"cpp_wrapper": False}}),
        (
            {"options": {"max_autotune": True}},
            {"options": {"cpp_wrapper": True, "max_autotune": True}},
        ),
        ({"mode": "reduce-overhead"}, {"mode": "reduce-overhead"}),  # a mode excludes options
        ({"backend": "eager"}, {"backend": "eager"}),  # options are inductor's
    ],
    ids=["default", "explicit_off", "merged", "mode", "other_backend"],
)
def test_cpu_models_compile_with_the_cpp_wrapper_unless_asked_otherwise(
    fresh_model, monkeypatch, asked, passed
):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: seen.append(kwargs) or fn)
    compile_for_generation(fresh_model, **asked)
    assert seen == [passed, passed]  # the step and the head

    seen.clear()
    meta = torch.nn.Linear(4, 4, device="meta")  # not on the CPU: torch's defaults
    compile_for_generation(meta)
    assert seen == [{}]


def _prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 250, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.slow
def test_compiled_decoding_equals_eager_and_reuses_its_graphs(fresh_model, inductor_cache):
    from torch._dynamo.utils import counters

    first, second = _prompts([9, 5]), _prompts([17, 30], seed=1)
    want_first = generate_tokens(fresh_model, first, max_new_tokens=12)
    want_second = generate_tokens(fresh_model, second, max_new_tokens=20)
    third = _prompts([4, 11, 8], seed=2)
    want_third = generate_tokens(fresh_model, third, max_new_tokens=12)
    torch._dynamo.reset()
    compile_for_generation(fresh_model)
    before = counters["stats"]["unique_graphs"]
    assert generate_tokens(fresh_model, first, max_new_tokens=12) == want_first
    graphs = counters["stats"]["unique_graphs"]
    # The one-token step and the head, once each: the caches' fill level is dynamic from
    # the first compile (not one graph for the prompt's length, then another).
    assert graphs - before == 2
    # Other prompt lengths, the same 128-slot cache: no graph compiled anew.
    assert generate_tokens(fresh_model, second, max_new_tokens=20) == want_second
    assert counters["stats"]["unique_graphs"] == graphs
    # Another batch size: the step compiles anew, for any batch (dynamic shapes).
    assert generate_tokens(fresh_model, third, max_new_tokens=12) == want_third
    # The model still scores whole sequences eagerly (the prompt's pass is never compiled).
    tokens = torch.tensor(first[0])[None]
    logits = fresh_model(tokens)
    assert logits.shape == (1, 9, fresh_model.tok_embeddings.num_embeddings)


@pytest.mark.slow
def test_generate_recipe_compiled_answers_as_eager(checkpoints, inductor_cache):
    def answer(*extra):
        args = [
            "run",
            "generate",
            "--config",
            "generation",
            f"checkpointer.checkpoint_dir={checkpoints['llama3_2']}",
            "prompt.user=Tell me a joke.",
            "temperature=0",
            "max_new_tokens=10",
            *extra,
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return result

    eager, compiled = answer(), answer("compile=true")
    assert compiled.stdout == eager.stdout
    assert "compile: the first answer includes compiling the decoding step" in compiled.stderr
    assert "compile:" not in eager.stderr
