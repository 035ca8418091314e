"""Fixtures for the tunesmith-eval-eleuther tests: a tiny Llama with a trained tokenizer,
transformers' view of it, and tiny local lm_eval tasks (helpers in _eleuther_reference.py)."""

from __future__ import annotations

import json
import os
import tempfile

# Before anything imports huggingface_hub, datasets or lm_eval (the root conftest does the
# same when the whole suite runs).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="tunesmith-eleuther-hf-")

import pytest  # noqa: E402
import torch  # noqa: E402
from _eleuther_reference import GEN_MAX_TOKENS, GEN_PROMPTS, HF, Reference, write_tasks  # noqa: E402

PLUGINS = "llama,lora,eval_eleuther"


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    """A registry with this repository's plugins, fresh for each test."""
    from tunesmith.registry import reset_registry

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", PLUGINS)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A tiny Llama 3.2 whose vocabulary, bos and eos match a trained HF tokenizer."""
    from tunesmith.registry import reset_registry
    from tunesmith.testing import write_hf_tokenizer
    from tunesmith_llama import write_tiny_llama_checkpoint

    directory = tmp_path_factory.mktemp("eleuther") / "ckpt"
    write_hf_tokenizer(directory, vocab_size=300)
    added = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in added}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_LOAD_PLUGINS", PLUGINS)
        reset_registry()
        write_tiny_llama_checkpoint(
            directory,
            variant="llama3_2",
            vocab_size=max(ids.values()) + 1,
            bos_token_id=ids["<|begin_of_text|>"],
            eos_token_id=ids["<|eot_id|>"],
        )
        reset_registry()
    return directory


@pytest.fixture(scope="session")
def loaded(checkpoint):
    """``(model, tokenizer)`` through tunesmith.load_pretrained, fp32 on the CPU."""
    import tunesmith
    from tunesmith.registry import reset_registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNESMITH_LOAD_PLUGINS", PLUGINS)
        reset_registry()
        model, tokenizer = tunesmith.load_pretrained(checkpoint, dtype="fp32", device="cpu")
        reset_registry()
    return model, tokenizer


@pytest.fixture(scope="session")
def hf(checkpoint) -> HF:
    return HF(checkpoint)


@pytest.fixture(scope="session")
def reference(tmp_path_factory, loaded, hf) -> Reference:
    """Local tasks tiny_mc, tiny_gen, tiny_ppl and what they should score."""
    import tunesmith

    model, tokenizer = loaded
    greedy = [
        tunesmith.generate(model, tokenizer, p, chat_format=False, max_new_tokens=GEN_MAX_TOKENS)
        for p in GEN_PROMPTS
    ]
    return write_tasks(tmp_path_factory.mktemp("eleuther_tasks") / "tasks", hf, greedy)


@pytest.fixture(scope="session")
def task_manager(reference):
    """lm_eval's TaskManager over the local tasks only (indexing lm_eval's own costs ~10 s)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(reference.tasks_dir), include_defaults=False)
