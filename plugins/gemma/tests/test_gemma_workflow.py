"""The user's workflow on tiny Gemma checkpoints through the CLI (tunesmith.testing's
check_workflow): every recipe runs unchanged on the family."""

from __future__ import annotations

import pytest

from tunesmith.checkpoint import load_hf_state_dict
from tunesmith.testing import WORKFLOW_STEPS, check_workflow, reference_checkpoint
from tunesmith_gemma import tiny_gemma2_config, tiny_gemma3_config, write_tiny_gemma_tokenizer

pytest.importorskip("transformers")


@pytest.fixture
def with_evaluator(monkeypatch):
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "gemma,lora,eval_eleuther")
    from tunesmith.registry import reset_registry

    reset_registry()


@pytest.mark.slow
def test_every_step_on_gemma2(tmp_path, with_evaluator):
    """Full, LoRA, DoRA, QLoRA, FSDP2 on 2 processes (gloo), generate (KV cache on and
    off, chat through Gemma's template), eleuther_eval, quantize, merge-adapter and
    convert, on a soft-capped, windowed Gemma 2 with its sentencepiece tokenizer."""
    source = tmp_path / "gemma2"
    reference_checkpoint(source, tiny_gemma2_config())
    write_tiny_gemma_tokenizer(source, generation="gemma2")
    ran = check_workflow(source, work_dir=tmp_path / "runs", distributed_timeout=120)
    assert ran == list(WORKFLOW_STEPS)


@pytest.mark.slow
def test_multimodal_gemma3_trains_its_language_model_only(tmp_path):
    """Full and LoRA runs, merge-adapter and generation on a Gemma3ForConditionalGeneration
    checkpoint: every written checkpoint carries the vision tower byte for byte."""
    source = tmp_path / "gemma3"
    reference_checkpoint(source, tiny_gemma3_config())
    write_tiny_gemma_tokenizer(source, generation="gemma3")
    steps = ("full", "lora", "generate", "merge")
    assert check_workflow(source, work_dir=tmp_path / "runs", steps=steps) == list(steps)
    original = load_hf_state_dict(source)
    vision = [k for k in original if k.startswith(("vision_tower.", "multi_modal_projector."))]
    assert vision
    for written in ("full/epoch_0", "lora/epoch_0", "merged"):
        state = load_hf_state_dict(tmp_path / "runs" / written)
        assert set(state) == set(original), written
        assert all(state[k].equal(original[k]) for k in vision), written
