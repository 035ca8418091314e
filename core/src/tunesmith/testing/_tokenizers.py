"""Tiny tokenizer files trained in-process, for tests and offline demos.

Each writer trains on an embedded corpus in well under a second, with no network
and the same output every run, and writes the files a real checkpoint ships:
a sentencepiece ``tokenizer.model`` (Llama 2, Gemma...), a tiktoken ranks file
(Llama 3's ``original/tokenizer.model``) and a Hugging Face ``tokenizer.json`` +
``tokenizer_config.json``.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LLAMA3_CHAT_TEMPLATE",
    "LLAMA3_PATTERN",
    "TOKENIZER_CORPUS",
    "write_hf_tokenizer",
    "write_sentencepiece_model",
    "write_tiktoken_ranks",
]

#: Llama 3's pre-tokenization regex (tiktoken ``pat_str``; ``Split`` in its tokenizer.json).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: The chat template of Meta-Llama-3-*-Instruct's tokenizer_config.json.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

_HF_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
)

#: Training text: varied enough (prose, dialogue, code, numbers, URLs, whitespace
#: runs) that a few hundred merges are learned deterministically.
TOKENIZER_CORPUS = """\
The lighthouse keeper wrote in his logbook every evening, noting the wind, the tide and the ships that passed.
On calm nights the sea was a sheet of grey glass; on stormy ones the waves climbed the rocks and hissed at the door.
A small model learns to predict the next word from the words before it, one token at a time.
Fine-tuning adjusts the weights of a pretrained network so that it follows instructions more closely.
She planted tomatoes, beans and basil in the garden, then watered them before the sun grew too hot.
Question: What is the capital of France? Answer: Paris is the capital and largest city of France.
Question: How many legs does a spider have? Answer: A spider has eight legs.
The recipe calls for two cups of flour, one egg, a pinch of salt and three tablespoons of melted butter.
Mix the dry ingredients first, then fold in the wet ones slowly until the batter is smooth.
In 1969 two astronauts walked on the Moon while a third orbited above them in the command module.
The train left the station at 7:45 and arrived at the coast just after noon, 4 hours and 15 minutes later.
def add(a, b):
    return a + b

for i in range(10):
    print(i, add(i, 2))
if x > 0 and y < 100: result = x * y - 3
Learning rates that are too high make the loss diverge; rates that are too low make training slow.
Please summarize the following paragraph in one sentence, keeping the most important facts.
Sure! Here is a short summary of the text you provided, written in plain language.
You are a helpful assistant. Answer the user's questions truthfully and concisely.
Thank you very much for your help today; I really appreciate the time you spent explaining it.
Rivers carry sediment from the mountains to the sea, building deltas where the water slows down.
The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill.
Numbers like 3.14159, 2.71828, 1,000,000 and 42 appear often in mathematics and in jokes.
Every morning the baker opened the shop at six o'clock and sold fresh bread, rolls and pastries.
Why do leaves change colour in autumn? Because the green chlorophyll breaks down and other pigments show.
The committee will meet on Tuesday to review the budget, discuss hiring and plan the next quarter.
Good software is tested, documented and easy to change; bad software is none of these things.
Translate to French: "Good morning, how are you?" Bonjour, comment allez-vous ?
Hello world! This is a tiny tokenizer trained only for tests, so its vocabulary is small.
Write a poem about the ocean. The ocean hums a quiet song, it rolls and turns the whole night long.
JSON looks like {"name": "Ada", "age": 36, "skills": ["math", "poetry"]} and is easy to parse.
Email me at someone@example.com or visit https://example.org/docs/index.html for details.
UPPER CASE WORDS, lower case words, and Mixed Case Words all need to be handled correctly.
Tabs\tand  double  spaces   and newlines
are whitespace that a tokenizer must keep exactly as written.
"""


def write_sentencepiece_model(
    directory: str | Path,
    *,
    vocab_size: int = 300,
    byte_fallback: bool = False,
    filename: str = "tokenizer.model",
    corpus: str | None = None,
    control_symbols: Sequence[str] = (),
    **trainer_options: Any,
) -> Path:
    """Train a Llama-2-style BPE sentencepiece model and write it.

    Ids follow Llama 2: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, no pad; identity
    normalization, a dummy-prefix ``▁`` and digits split one by one.

    Args:
        directory: Where to write (created if missing).
        vocab_size: Pieces in the model.
        byte_fallback: Encode unseen characters as ``<0x..>`` byte pieces (as Llama 2
            does) instead of ``<unk>``; needs ``vocab_size >= 350`` for this corpus.
        filename: The file name.
        corpus: Training text, one sentence per line; default :data:`TOKENIZER_CORPUS`.
        control_symbols: Control pieces numbered from 3, after ``</s>`` (e.g.
            ``[INST]``, ``[/INST]``, ...): never produced from text by sentencepiece.
        **trainer_options: ``SentencePieceTrainer.train`` settings replacing the
            Llama-2-style ones (another family's layout: ``add_dummy_prefix=False``,
            ``pad_id=0, eos_id=1, bos_id=2, unk_id=3``, ``user_defined_symbols=[...]``).

    Returns:
        The path of the written model.
    """
    import sentencepiece as spm

    path = Path(directory) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    settings = dict(
        sentence_iterator=iter((corpus or TOKENIZER_CORPUS).splitlines()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=byte_fallback,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        control_symbols=list(control_symbols),
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    settings.update(trainer_options)
    spm.SentencePieceTrainer.train(**settings)
    path.write_bytes(model.getvalue())
    return path


def _train_byte_level_bpe(vocab_size: int, corpus: str | None):
    """A byte-level BPE with Llama 3's pre-tokenization, trained on the corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((corpus or TOKENIZER_CORPUS).splitlines(keepends=True), trainer)
    return tokenizer


def _byte_decoder() -> dict[str, int]:
    # The printable stand-in GPT-2's byte-level BPE uses for each byte.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def write_tiktoken_ranks(
    path: str | Path, *, vocab_size: int = 512, corpus: str | None = None
) -> Path:
    """Write a small tiktoken BPE ranks file, like Llama 3's ``original/tokenizer.model``.

    Ranks 0-255 are the single bytes (rank = byte value); the rest are merges
    learned on the corpus with Llama 3's pre-tokenization, in the order learned, so
    ``tiktoken`` and transformers' ``TikTokenConverter`` both read it as a valid BPE.

    Args:
        path: The file to write (parents are created).
        vocab_size: Number of ranks (256 bytes + merges); the default corpus supports
            ~600, fewer are written when the corpus runs out of pairs seen twice.
        corpus: Training text; default :data:`TOKENIZER_CORPUS`.

    Returns:
        ``path``.
    """
    tokenizer = _train_byte_level_bpe(vocab_size, corpus)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    decode = _byte_decoder()

    def to_bytes(piece: str) -> bytes:
        return bytes(decode[c] for c in piece)

    ranks: dict[bytes, int] = {bytes([b]): b for b in range(256)}
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        token = to_bytes(left) + to_bytes(right)
        if token not in ranks and len(ranks) < vocab_size:
            ranks[token] = len(ranks)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in ranks.items())
    path.write_text("".join(lines), encoding="ascii")
    return path


def write_hf_tokenizer(
    directory: str | Path,
    *,
    vocab_size: int = 512,
    chat_template: str | None = LLAMA3_CHAT_TEMPLATE,
    eos_token: str = "<|eot_id|>",
    pad_token: str | None = None,
    corpus: str | None = None,
) -> Path:
    """Train a byte-level BPE and write a Llama-3-Instruct-style Hugging Face tokenizer.

    Writes ``tokenizer.json`` (special tokens ``<|begin_of_text|>``,
    ``<|end_of_text|>``, ``<|start_header_id|>``, ``<|end_header_id|>``,
    ``<|eot_id|>``, ``<|eom_id|>``, ``<|python_tag|>``,
    ``<|finetune_right_pad_id|>`` after the learned vocabulary; a post-processor that
    prepends ``<|begin_of_text|>``) and ``tokenizer_config.json`` that
    ``transformers.AutoTokenizer.from_pretrained`` loads.

    Args:
        directory: Where to write (created if missing).
        vocab_size: Size of the learned vocabulary, before the special tokens (at
            most; training stops when no pair occurs twice).
        chat_template: Stored in ``tokenizer_config.json``; ``None`` for none.
        eos_token: The ``eos_token`` (instruct models end turns with ``<|eot_id|>``).
        pad_token: The ``pad_token``, if any.
        corpus: Training text; default :data:`TOKENIZER_CORPUS`.

    Returns:
        ``directory``.
    """
    from tokenizers import AddedToken, processors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_byte_level_bpe(vocab_size, corpus)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _HF_SPECIAL_TOKENS]
    )
    bos = "<|begin_of_text|>"
    bos_id = tokenizer.token_to_id(bos)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0",
                pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, bos_id)],
            ),
        ]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos_token,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
    }
    if pad_token is not None:
        config["pad_token"] = pad_token
    if chat_template is not None:
        config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
