"""The ``eleuther`` evaluator: scores equal the ones computed by hand from transformers'
log-probs; task names and settings are checked with messages that say what to do."""

from __future__ import annotations

import pytest
import yaml

from tunesmith import get_registry
from tunesmith.errors import ConfigError, DataError, NotFoundError
from tunesmith_eval_eleuther import EleutherEvaluator, evaluate


def _local(reference, **settings) -> EleutherEvaluator:
    return EleutherEvaluator(
        include_path=str(reference.tasks_dir), include_defaults=False, **settings
    )


def test_accuracy_equals_the_hand_computed_one(loaded, reference):
    """acc and acc_norm of tiny_mc from the registered evaluator equal argmax over
    transformers' log-probs (raw, and divided by each choice's length)."""
    model, tokenizer = loaded
    builder = get_registry().get("evaluators", "eleuther").builder
    evaluator = builder(
        tasks=["tiny_mc"],
        include_path=str(reference.tasks_dir),
        include_defaults=False,
        batch_size=5,
    )
    results = evaluator.evaluate(model, tokenizer)
    scores = results["results"]["tiny_mc"]
    assert reference.acc == 0.5  # half the answers are the model's favourite by construction
    assert scores["acc,none"] == pytest.approx(reference.acc, abs=1e-9)
    assert scores["acc_norm,none"] == pytest.approx(reference.acc_norm, abs=1e-9)
    assert results["n-samples"]["tiny_mc"]["effective"] == 6
    assert "samples" not in results


def test_several_tasks_limit_and_glob(loaded, reference):
    model, tokenizer = loaded
    results = evaluate(model, tokenizer, "tiny_*", limit=2, **_paths(reference))
    assert set(results["results"]) == {"tiny_mc", "tiny_gen", "tiny_ppl"}
    assert {n["effective"] for n in results["n-samples"].values()} == {2}


def _paths(reference) -> dict:
    return {"include_path": str(reference.tasks_dir), "include_defaults": False}


def test_unknown_task_is_one_clear_error(loaded, reference):
    model, tokenizer = loaded
    evaluator = _local(reference, tasks=["tiny_mcc", "tiny_gen"])
    with pytest.raises(NotFoundError) as caught:
        evaluator.evaluate(model, tokenizer)
    message = str(caught.value)
    assert "unknown lm_eval task 'tiny_mcc'" in message
    assert "did you mean 'tiny_mc'" in message
    assert f"lm-eval ls tasks --include_path {reference.tasks_dir}" in message
    assert "lm_eval --tasks list" in message
    assert "\n" not in message

    with pytest.raises(NotFoundError, match=r"tasks 'nope', 'neither'"):
        _local(reference, tasks="nope,neither").resolve_tasks()


def test_yaml_path_and_comma_string_name_tasks(reference):
    evaluator = _local(reference, tasks=f"tiny_mc, {reference.tasks_dir / 'tiny_gen.yaml'}")
    resolved = evaluator.resolve_tasks()
    assert resolved[0] == "tiny_mc"
    assert resolved[1].endswith("tiny_gen.yaml")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tasks": []}, "no tasks to run"),
        ({"tasks": [1]}, "tasks must be a list of lm_eval task names"),
        ({"tasks": ["x"], "limit": 0}, "limit must be"),
        ({"tasks": ["x"], "limit": 1.5}, "limit must be"),
        ({"tasks": ["x"], "num_fewshot": -1}, "num_fewshot must be an integer of at least 0"),
        ({"tasks": ["x"], "batch_size": 0}, "batch_size must be an integer of at least 1"),
        (
            {"tasks": ["x"], "include_path": "/no/such/dir"},
            "include_path /no/such/dir does not exist",
        ),
        ({"tasks": ["x"], "include_defaults": False}, "set include_path="),
    ],
)
def test_bad_settings_say_what_to_write(settings, message):
    with pytest.raises(ConfigError, match=message):
        EleutherEvaluator(**settings)


def test_max_seq_len_beyond_the_model_is_refused(loaded, reference):
    model, tokenizer = loaded
    with pytest.raises(
        ConfigError, match=r"max_seq_len=4096 exceeds the model's max_seq_len of 256"
    ):
        _local(reference, tasks=["tiny_mc"], max_seq_len=4096).evaluate(model, tokenizer)


def _task_yaml(name: str, dataset: dict) -> str:
    return yaml.safe_dump(
        {
            "task": name,
            **dataset,
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "{{question}}",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
        }
    )


@pytest.mark.parametrize(
    ("dataset", "reason"),
    [
        ({"dataset_path": "nobody/not-a-dataset"}, "nobody/not-a-dataset"),
        (
            {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "/no/such.jsonl"}}},
            "/no/such.jsonl",
        ),
    ],
)
def test_a_dataset_that_cannot_be_had_is_one_clear_error(loaded, tmp_path, dataset, reason):
    model, tokenizer = loaded
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "broken.yaml").write_text(_task_yaml("broken", dataset))
    evaluator = EleutherEvaluator(tasks=["broken"], include_path=str(tasks), include_defaults=False)
    with pytest.raises(DataError) as caught:
        evaluator.evaluate(model, tokenizer)
    message = str(caught.value)
    assert message.startswith("lm_eval could not load a task's dataset: ")
    assert reason in message and "\n" not in message


@pytest.mark.parametrize("multiturn", [None, False, True])
def test_chat_options_reach_lm_eval(loaded, reference, monkeypatch, multiturn):
    """system_instruction and fewshot_as_multiturn go to lm_eval as its own CLI passes
    them (left out, fewshot_as_multiturn keeps lm_eval's default), and the run scores."""
    import lm_eval

    real, seen = lm_eval.simple_evaluate, {}

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    model, tokenizer = loaded
    evaluator = _local(reference, tasks=["tiny_mc"], num_fewshot=1, limit=2,
                       apply_chat_template=True, system_instruction="Be brief.",
                       fewshot_as_multiturn=multiturn)  # fmt: skip
    results = evaluator.evaluate(model, tokenizer)
    assert seen["system_instruction"] == "Be brief."
    assert seen.get("fewshot_as_multiturn", "lm_eval's default") == (
        "lm_eval's default" if multiturn is None else multiturn
    )
    assert 0.0 <= results["results"]["tiny_mc"]["acc,none"] <= 1.0


def test_thinking_settings_reach_the_model_lm_eval_is_given(loaded, reference, monkeypatch):
    import lm_eval

    seen = {}
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kwargs: seen.update(kwargs) or {})
    model, tokenizer = loaded
    _local(reference, tasks=["tiny_gen"], chat_template_args={"tail": "x"},
           enable_thinking=False, think_end_token="</think>").evaluate(model, tokenizer)  # fmt: skip
    lm = seen["model"]
    assert lm.tokenizer.chat_template_kwargs == {"tail": "x", "enable_thinking": False}
    assert (lm.enable_thinking, lm.think_end_token) == (False, "</think>")
