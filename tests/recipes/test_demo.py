"""`tunesmith demo` shows each answer before and after fine-tuning and counts the
taught answers it reproduces (one short epoch here; the full demo is `make demo`)."""

from __future__ import annotations

from tunesmith.recipes.demo import run_demo


def test_demo_shows_answers_before_and_after(tmp_path, capsys):
    checkpoint = run_demo(tmp_path / "demo", epochs=1, questions=2)
    out = capsys.readouterr().out
    assert out.count("  before: ") == 2 and out.count("  after:  ") == 2
    assert "of 2 taught answers reproduced." in out
    assert "temperature=0 prompt.user=" in out
    # the checkpoint carries the prompt format, so its next command needs none
    assert (checkpoint / "prompt_template.json").is_file()
    assert (checkpoint / "README.md").is_file()
