"""Progress in a log file: a few plain lines, not a flood of carriage returns."""

from __future__ import annotations

import io

from tunesmith.training._progress import LineProgress, progress_bar


def test_lines_at_most_every_interval():
    now = [0.0]
    out = io.StringIO()
    with LineProgress(
        total=100, desc="epoch 1/1", interval=30, file=out, clock=lambda: now[0]
    ) as bar:
        for _ in range(100):
            now[0] += 1.0  # a step a second
            bar.update(1)
            bar.set_postfix_str("loss=1.0000")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 4  # after 30, 60 and 90 s, and at the end
    assert lines[-1] == "epoch 1/1: 100/100 steps, 100 s loss=1.0000"


def test_a_terminal_gets_tqdm():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert not isinstance(progress_bar(total=1, file=Terminal()), LineProgress)
    assert isinstance(progress_bar(total=1, file=io.StringIO()), LineProgress)
