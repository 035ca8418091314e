"""lm_eval asks git for the working directory's commit: outside a checkout, quietly."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")


def test_no_git_noise_outside_a_checkout(tmp_path, monkeypatch, capfd):
    import lm_eval.evaluator

    from tunesmith_eval_eleuther._evaluator import _quiet_git_hash

    monkeypatch.setattr(
        lm_eval.evaluator, "get_git_commit_hash", lm_eval.evaluator.get_git_commit_hash
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    _quiet_git_hash()
    assert lm_eval.evaluator.get_git_commit_hash() is None
    assert "fatal" not in capfd.readouterr().err
