"""Fixtures for tunesmith-phi3's tests: a registry with this plugin and tunesmith-lora,
tiny Phi-3 and Phi-4 checkpoints with tokenizers in each one's style beside them, and a
small Alpaca file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub or datasets (the suite's root conftest does the
# same when it runs).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="tunesmith-phi3-hf-")

import pytest  # noqa: E402
import torch  # noqa: E402

#: The chat template of microsoft/Phi-3-mini-4k-instruct's tokenizer_config.json.
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
#: Phi-3's tokens after the Llama 2 vocabulary; the chat ones swallow the whitespace after them.
_ADDED = [("<|endoftext|>", False), ("<|assistant|>", True), ("<|system|>", True)]
_ADDED += [("<|end|>", True), ("<|user|>", True)]

#: The chat template of microsoft/phi-4's tokenizer_config.json: no newlines, <|im_sep|>
#: between the role and the text.
PHI4_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if (message['role'] == 'system') %}"
    "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% elif (message['role'] == 'user') %}"
    "{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% elif (message['role'] == 'assistant') %}"
    "{{'<|im_start|>assistant<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}"
)
_PHI4_ADDED = [(t, False) for t in ("<|im_start|>", "<|im_end|>", "<|im_sep|>", "<|dummy_85|>")]


@pytest.fixture(autouse=True)
def _registry():
    """The core's built-ins plus the installed ``phi3`` entry point (this distribution, as a
    user installs it) and ``lora`` (the recipes its LoRA configs run), fresh per test."""
    from tunesmith.testing import plugin_registry

    with plugin_registry(entry_points=["phi3", "lora"]) as registry:
        yield registry


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _corpus() -> list[str]:
    from tunesmith.data import SAMPLE_ALPACA

    rows = [json.loads(line) for line in Path(SAMPLE_ALPACA).read_text().splitlines() if line]
    return [f"{r['instruction']} {r['input']} {r['output']}\n" for r in rows]


def _write_byte_level_bpe(
    directory: Path, trained: list[str], added: list[tuple[str, bool]], settings: dict
) -> dict[str, int]:
    """A byte-level BPE trained on the Alpaca sample, in HF format: ``trained`` special
    tokens first, then ``added`` ones (text, whether they swallow the whitespace after
    them), and ``tokenizer_config.json`` holding ``settings``.

    Returns:
        The special tokens' ids.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        min_frequency=2,
        special_tokens=trained,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, rstrip=strip) for t, strip in added]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **settings,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {name: tokenizer.token_to_id(name) for name in [*trained, *(t for t, _ in added)]}


def write_phi3_tokenizer(directory: Path) -> dict[str, int]:
    """A byte-level BPE with Phi-3's special tokens and chat template, in HF format."""
    settings = {
        "bos_token": "<s>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<unk>",
        "model_max_length": 4096,
        "chat_template": PHI3_CHAT_TEMPLATE,
    }
    return _write_byte_level_bpe(directory, ["<unk>", "<s>", "</s>"], _ADDED, settings)


def write_phi4_tokenizer(directory: Path) -> dict[str, int]:
    """A byte-level BPE laid out as microsoft/phi-4's: ``<|endoftext|>`` begins, turns end
    with ``<|im_end|>`` (the eos), and the chat template has no newlines."""
    settings = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|dummy_85|>",
        "model_max_length": 16384,
        "chat_template": PHI4_CHAT_TEMPLATE,
    }
    return _write_byte_level_bpe(directory, ["<|endoftext|>"], _PHI4_ADDED, settings)


def _write_tiny_checkpoint(
    directory: Path, variant: str, ids: dict[str, int], *, bos: str, eos: str, pad: str, seed: int
) -> dict:
    """The weights and config.json of ``tiny_phi3_config(variant)`` beside a tokenizer
    whose special tokens have ``ids``: 320 embedding rows, padded past the tokenizer's
    300-odd tokens as the Hub's checkpoints pad theirs. Returns the config."""
    from tunesmith.testing import plugin_registry, write_tiny_checkpoint
    from tunesmith_phi3 import plugin, tiny_phi3_config

    assert max(ids.values()) < 320
    config = tiny_phi3_config(
        variant,
        vocab_size=320,
        bos_token_id=ids[bos],
        eos_token_id=ids[eos],
        pad_token_id=ids[pad],
    )
    # Session fixtures start before the per-test registry: name the plugin explicitly.
    with plugin_registry({"phi3": plugin}):
        write_tiny_checkpoint(directory, config, seed=seed)
    return config


def _write_generation_config(directory: Path, generation: dict) -> None:
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


@pytest.fixture(scope="session")
def phi3_dir(tmp_path_factory) -> Path:
    """A tiny random Phi-3 mini 4k checkpoint with its tokenizer, laid out as on the Hub:
    the embedding padded past the tokenizer (as 32064 rows for 32011 tokens), and
    generation_config.json stopping at ``<|endoftext|>``, ``<|assistant|>`` and ``<|end|>``."""
    directory = tmp_path_factory.mktemp("phi3_base")
    ids = write_phi3_tokenizer(directory)
    specials = dict(bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>")
    _write_tiny_checkpoint(directory, "mini_4k", ids, **specials, seed=3)
    stops = [ids[t] for t in ("<|endoftext|>", "<|assistant|>", "<|end|>")]
    generation = {"bos_token_id": ids["<s>"], "eos_token_id": stops, "pad_token_id": stops[0]}
    _write_generation_config(directory, generation)
    return directory


@pytest.fixture(scope="session")
def phi4_dir(tmp_path_factory) -> Path:
    """A tiny random checkpoint in Phi-4's layout (``tiny_phi3_config("phi4")``) with a
    Phi-4-style tokenizer, generation stopping at ``<|im_end|>`` as microsoft/phi-4's does."""
    directory = tmp_path_factory.mktemp("phi4_base")
    ids = write_phi4_tokenizer(directory)
    specials = dict(bos="<|endoftext|>", eos="<|im_end|>", pad="<|dummy_85|>")
    config = _write_tiny_checkpoint(directory, "phi4", ids, **specials, seed=5)
    keys = ("bos_token_id", "eos_token_id", "pad_token_id")
    _write_generation_config(directory, {key: config[key] for key in keys})
    return directory


@pytest.fixture(scope="session")
def alpaca_file(tmp_path_factory) -> Path:
    """Eight rows of the bundled Alpaca sample, as a local JSONL file."""
    from tunesmith.data import SAMPLE_ALPACA

    rows = [line for line in Path(SAMPLE_ALPACA).read_text().splitlines() if line.strip()]
    path = tmp_path_factory.mktemp("phi3_data") / "train.jsonl"
    path.write_text("\n".join(rows[:8]) + "\n")
    return path
