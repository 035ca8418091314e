"""Built-in datasets, registered like any plugin's."""

from __future__ import annotations

from collections.abc import Callable

from tunesmith import Dataset, hookimpl
from tunesmith.data import alpaca, chat, instruct, text_completion


@hookimpl
def register_datasets(register: Callable[[Dataset], None]) -> None:
    register(
        Dataset(
            name="alpaca",
            builder=alpaca,
            description="Alpaca instructions (instruction/input/output); tatsu-lab/alpaca "
            "by default, tunesmith:alpaca_sample for the bundled sample",
        )
    )
    register(
        Dataset(
            name="instruct",
            builder=instruct,
            description="Prompt/answer pairs from input/output columns (rename with column_map)",
        )
    )
    register(
        Dataset(
            name="chat",
            builder=chat,
            description="Multi-turn conversations in OpenAI (messages) or ShareGPT "
            "(conversations) layout",
        )
    )
    register(
        Dataset(
            name="text_completion",
            builder=text_completion,
            description="Plain text from a text column, every token trained (continued "
            "pre-training)",
        )
    )
