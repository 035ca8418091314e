"""The sets validation checks against come from one place and match the code they guard."""

from __future__ import annotations

import inspect


def test_checkpointer_keys_are_the_checkpointers_arguments():
    from tunesmith.checkpoint import Checkpointer
    from tunesmith.recipes._schemas import CHECKPOINTER_KEYS

    parameters = list(inspect.signature(Checkpointer.__init__).parameters)[1:]
    assert tuple(parameters) == CHECKPOINTER_KEYS
