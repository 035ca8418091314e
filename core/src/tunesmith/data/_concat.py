"""Several datasets trained as one: torchtune's ``dataset: [{...}, {...}]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset

__all__ = ["ConcatenatedDataset"]


class ConcatenatedDataset(ConcatDataset):
    """The samples of ``parts``, one after another (the sampler shuffles across them).

    Attributes:
        prompt_template: The parts' prompt format when they share one (what generation
            should ask in), else ``None``.
    """

    def __init__(self, parts: Sequence[Dataset]) -> None:
        super().__init__(parts)
        templates = [getattr(part, "prompt_template", None) for part in parts]
        shared = all(t == templates[0] for t in templates)
        self.prompt_template: Any = templates[0] if shared else None
