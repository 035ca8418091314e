"""Built-in tokenizers, registered like any plugin's."""

from __future__ import annotations

from tunesmith import Tokenizer, hookimpl
from tunesmith.tokenizers import hf_tokenizer


@hookimpl
def register_tokenizers(register):
    register(
        Tokenizer(
            name="hf_tokenizer",
            builder=hf_tokenizer,
            files=("tokenizer.json",),
            family=None,
            priority=0,
            description="Any checkpoint's tokenizer.json + tokenizer_config.json (chat template)",
        )
    )
