"""The user's workflow on tiny Qwen checkpoints through the CLI (tunesmith.testing's
check_workflow): every recipe runs unchanged on the family."""

from __future__ import annotations

import pytest

from tunesmith.testing import WORKFLOW_STEPS, check_workflow
from tunesmith_qwen import tiny_qwen2_config, tiny_qwen3_config, write_tiny_qwen_checkpoint


@pytest.fixture
def with_evaluator(monkeypatch):
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "qwen,lora,eval_eleuther")
    from tunesmith.registry import reset_registry

    reset_registry()


@pytest.mark.slow
def test_every_step_on_qwen3(tmp_path, with_evaluator):
    """Full, LoRA, DoRA, QLoRA, FSDP2 on 2 processes (gloo), generate (prompt with and
    without the KV cache, chat through Qwen3's template), eleuther_eval, quantize,
    merge-adapter and convert, on a windowed Qwen3 checkpoint with its tokenizer."""
    source = write_tiny_qwen_checkpoint(
        tmp_path / "qwen3", tiny_qwen3_config("transformers4"), tokenizer="qwen3"
    )
    ran = check_workflow(source, work_dir=tmp_path / "runs", distributed_timeout=120)
    assert ran == list(WORKFLOW_STEPS)


@pytest.mark.slow
def test_training_and_chat_on_qwen2_5(tmp_path):
    """Qwen2.5 (tied embeddings, q/k/v biases, default system prompt): LoRA, its merged
    weights and adapter, and generation."""
    source = write_tiny_qwen_checkpoint(
        tmp_path / "qwen2_5", tiny_qwen2_config(), tokenizer="qwen2_5"
    )
    steps = ("lora", "generate", "merge")
    assert check_workflow(source, work_dir=tmp_path / "runs", steps=steps) == list(steps)
