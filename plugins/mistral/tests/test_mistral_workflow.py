"""The whole workflow on a tiny Mistral v0.1 (sliding window 8, a lone sentencepiece
tokenizer.model with v0.1's chat template), through the commands a user runs."""

from __future__ import annotations

import pytest

from tunesmith.testing import WORKFLOW_STEPS, check_workflow
from tunesmith_mistral import write_tiny_mistral_checkpoint


@pytest.mark.slow
def test_full_lora_dora_qlora_fsdp_generate_eval_quantize_merge_convert(tmp_path):
    # max_position_embeddings 128 leaves room for the workflow's 64-token samples.
    source = write_tiny_mistral_checkpoint(tmp_path / "mistral", variant="v0_1")
    ran = check_workflow(source, work_dir=tmp_path / "work")
    assert ran == list(WORKFLOW_STEPS)
