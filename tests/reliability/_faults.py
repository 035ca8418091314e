"""``python -m reliability._faults KIND N tunesmith-args...``: run the tunesmith CLI in this
process with a fault planted, and die by SIGKILL when it strikes (nothing is cleaned up,
nothing is flushed: a power cut as far as the output directory can tell).

Kinds (``N`` counts from 1):
    step         the N-th optimizer step, after it updated the weights in memory
    state-write  the N-th write of recipe_state.pt, with half the temporary file written
    epoch-write  the N-th epoch_K/ directory, complete under its temporary name, not renamed
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _countdown(n: int):
    left = [n]

    def strike() -> bool:
        left[0] -= 1
        return left[0] == 0

    return strike


def plant(kind: str, n: int) -> None:
    strike = _countdown(n)
    if kind == "step":
        import torch

        original = torch.optim.AdamW.step

        def step(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            if strike():
                _die()
            return out

        torch.optim.AdamW.step = step
    elif kind == "state-write":
        from tunesmith.checkpoint import _checkpointer

        original = _checkpointer.atomic_write

        def atomic_write(path, write):
            if path.name != "recipe_state.pt" or not strike():
                return original(path, write)

            def half(tmp):
                write(tmp)
                data = tmp.read_bytes()
                tmp.write_bytes(data[: len(data) // 2])
                _die()

            return original(path, half)

        _checkpointer.atomic_write = atomic_write
    elif kind == "epoch-write":
        from tunesmith.checkpoint import _checkpointer

        original = _checkpointer.atomic_directory

        @contextlib.contextmanager
        def atomic_directory(path):
            with original(path) as tmp:
                yield tmp
                if strike():
                    _die()

        _checkpointer.atomic_directory = atomic_directory
    else:
        raise SystemExit(f"unknown fault {kind!r}")


if __name__ == "__main__":
    kind, n, *args = sys.argv[1:]
    plant(kind, int(n))
    from tunesmith.cli import cli

    cli.main(args=args, prog_name="tunesmith")
