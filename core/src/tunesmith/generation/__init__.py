"""Generating text: sampling, the KV-cached decoding loop and ``tunesmith.generate``.

Three layers, each usable on its own:

- :func:`sample_next_token` / :func:`token_probabilities`: logits -> a token
  (greedy, temperature, top-k, top-p, min-p; :func:`penalize_repeats` before them);
- :func:`generate_tokens`: token-id prompts -> generated ids, batched with left
  padding, with or without the model's KV cache (:func:`compile_for_generation`
  makes it faster after a one-off compilation);
- :func:`generate`: text or chat messages -> text, in the model family's chat
  format, optionally streamed.

Example::

    model, tokenizer = tunesmith.load_pretrained("output/epoch_0")
    print(tunesmith.generate(model, tokenizer, "Tell me a joke.", stream=sys.stdout))
"""

from tunesmith.generation._compile import compile_for_generation
from tunesmith.generation._decode import check_prompts, generate_tokens
from tunesmith.generation._sampling import (
    check_sampling,
    checkpoint_sampling,
    penalize_repeats,
    sample_next_token,
    token_probabilities,
)
from tunesmith.generation._text import TextStreamer, generate, to_messages, tokenize_prompt

__all__ = [
    "TextStreamer",
    "check_prompts",
    "check_sampling",
    "checkpoint_sampling",
    "compile_for_generation",
    "generate",
    "generate_tokens",
    "penalize_repeats",
    "sample_next_token",
    "to_messages",
    "token_probabilities",
    "tokenize_prompt",
]
