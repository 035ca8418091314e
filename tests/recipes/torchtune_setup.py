"""Tiny checkpoints and the overrides that point torchtune 0.6 configs at them.

The configs under ``tests/fixtures/torchtune/`` are torchtune 0.6.1's own
(``recipes/configs/<family>/<name>.yaml`` of its wheel, unchanged). A user points such
a config at their files on the command line; :func:`pointing_overrides` writes those
overrides, the same for tunesmith (tests) and for torchtune itself
(``tests/fixtures/make_torchtune_losses.py``): the checkpoint, tokenizer, data and
output paths, the device, and — the checkpoints being tiny — the model builder swapped
for the family's component builder with the tiny architecture as arguments.

Imported by the recording script too, so it needs only torch, safetensors,
sentencepiece/tokenizers and tunesmith's test helpers (no pytest).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TORCHTUNE_CONFIGS = FIXTURES / "torchtune"
LOSSES_FILE = FIXTURES / "torchtune_losses.json"

#: The tiny architecture (each family's torchtune component builder takes these). Every
#: projection holds a multiple of 16384 weights: torchao's NF4 (torchtune's QLoRA) needs it.
TINY = {
    "embed_dim": 256,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_dim": 512,
    "max_seq_len": 256,
    "norm_eps": 1e-5,
}
#: How many rows, steps and samples per step every pointed config trains on.
ROWS, STEPS, BATCH = 8, 3, 2


def family_of(config_name: str) -> str:
    """``llama3_2/1B_lora`` -> ``llama3_2``."""
    return config_name.split("/")[0]


def configs() -> list[str]:
    """Every fixture config, as ``family/name``."""
    return sorted(
        str(p.relative_to(TORCHTUNE_CONFIGS).with_suffix(""))
        for p in TORCHTUNE_CONFIGS.rglob("*.yaml")
    )


def recipe_of(config_name: str) -> str:
    """The recipe the config's header comment runs it with."""
    text = (TORCHTUNE_CONFIGS / f"{config_name}.yaml").read_text()
    match = re.search(r"tune run .*?(\w+_(?:single_device|distributed)) --config", text)
    assert match, config_name
    return match.group(1)


def _meta_layout(hf_dir: Path, out: Path, num_kv_heads: int) -> None:
    """A Meta ``consolidated.00.pth`` + ``params.json`` of the HF checkpoint in ``hf_dir``."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((hf_dir / "config.json").read_text())
    hf = load_file(str(hf_dir / "model.safetensors"))
    hf.setdefault("lm_head.weight", hf["model.embed_tokens.weight"])

    def interleave(weight: torch.Tensor, heads: int) -> torch.Tensor:
        # HF rotate-half rows -> Meta's interleaved rows.
        rows, cols = weight.shape
        return weight.view(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)

    names = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.norm.weight": "norm.weight",
        "lm_head.weight": "output.weight",
    }
    layer = {
        "self_attn.q_proj": "attention.wq",
        "self_attn.k_proj": "attention.wk",
        "self_attn.v_proj": "attention.wv",
        "self_attn.o_proj": "attention.wo",
        "mlp.gate_proj": "feed_forward.w1",
        "mlp.down_proj": "feed_forward.w2",
        "mlp.up_proj": "feed_forward.w3",
        "input_layernorm": "attention_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    meta = {}
    for key, value in hf.items():
        if key in names:
            meta[names[key]] = value
            continue
        index, rest = re.match(r"model\.layers\.(\d+)\.(.+)\.weight$", key).groups()
        if rest == "self_attn.q_proj":
            value = interleave(value, config["num_attention_heads"])
        elif rest == "self_attn.k_proj":
            value = interleave(value, num_kv_heads)
        meta[f"layers.{index}.{layer[rest]}.weight"] = value
    out.mkdir(parents=True, exist_ok=True)
    torch.save(meta, out / "consolidated.00.pth")
    rope = config["rope_parameters"]
    params = {
        "dim": config["hidden_size"],
        "n_layers": config["num_hidden_layers"],
        "n_heads": config["num_attention_heads"],
        "n_kv_heads": num_kv_heads,
        "vocab_size": config["vocab_size"],
        # Meta's rule gives 512 for dim 256: int(2/3 * 4 * 256 * 0.75) rounded up to 256.
        "ffn_dim_multiplier": 0.75,
        "multiple_of": 256,
        "norm_eps": config["rms_norm_eps"],
        "rope_theta": rope["rope_theta"],
        "max_seq_len": config["max_position_embeddings"],
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
    }
    if rope.get("rope_type") == "llama3":
        params.update(use_scaled_rope=True, rope_scaling_factor=rope["factor"])
    (out / "params.json").write_text(json.dumps(params))


def write_tiny(directory: Path, family: str) -> Path:
    """A tiny random checkpoint of ``family`` with the tokenizer files its torchtune
    configs name: Llama 2's sentencepiece ``tokenizer.model``, Llama 3's tiktoken
    ``original/tokenizer.model`` (special tokens numbered after its 300 ranks) and the
    same weights in Meta's layout under ``original/``; Qwen 2.5's ``vocab.json`` +
    ``merges.txt`` (beside ``tokenizer.json``); Gemma's and Mistral's sentencepiece
    ``tokenizer.model``.

    Returns:
        ``directory``.
    """
    if family in _WRITERS:
        _WRITERS[family](directory)
        return directory
    from tunesmith.testing import write_sentencepiece_model, write_tiktoken_ranks
    from tunesmith_llama import write_tiny_llama_checkpoint

    variant = {"llama3": "llama3_1"}.get(family, family)
    if family == "llama2":
        write_sentencepiece_model(directory, vocab_size=300)
        extra: dict[str, Any] = {"vocab_size": 300, "bos_token_id": 1, "eos_token_id": 2}
    else:
        write_tiktoken_ranks(directory / "original" / "tokenizer.model", vocab_size=300)
        ranks = len((directory / "original" / "tokenizer.model").read_text().splitlines())
        extra = {"vocab_size": ranks + 256, "bos_token_id": ranks, "eos_token_id": ranks + 9}
    if family == "llama3":  # Llama 3 (not 3.1): plain RoPE with theta 500000
        extra["rope_parameters"] = {"rope_type": "default", "rope_theta": 500_000.0}
    extra.update(_hf_dims())
    write_tiny_llama_checkpoint(directory, variant=variant, **extra)
    config = json.loads((directory / "config.json").read_text())
    _meta_layout(directory, directory / "original", config["num_key_value_heads"])
    return directory


def _hf_dims() -> dict[str, Any]:
    """:data:`TINY` in ``config.json``'s names."""
    return {
        "hidden_size": TINY["embed_dim"],
        "head_dim": TINY["embed_dim"] // TINY["num_heads"],
        "num_attention_heads": TINY["num_heads"],
        "num_hidden_layers": TINY["num_layers"],
        "intermediate_size": TINY["intermediate_dim"],
        "max_position_embeddings": TINY["max_seq_len"],
    }


def _write_qwen2_5(directory: Path) -> None:
    from tunesmith_qwen import tiny_qwen2_config, write_tiny_qwen_checkpoint

    # 0.5B-3B shape: tied embeddings, as the fixtures' 0.5B/1.5B configs.
    config = tiny_qwen2_config("tied", **_hf_dims(), rms_norm_eps=TINY["norm_eps"])
    write_tiny_qwen_checkpoint(directory, config, tokenizer="qwen2_5")
    # The vocab.json + merges.txt a release ships beside tokenizer.json (torchtune reads them).
    model = json.loads((directory / "tokenizer.json").read_text())["model"]
    (directory / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _write_gemma(directory: Path) -> None:
    from tunesmith_gemma import write_tiny_gemma_checkpoint, write_tiny_gemma_tokenizer

    dims = dict(_hf_dims(), rms_norm_eps=TINY["norm_eps"])
    write_tiny_gemma_checkpoint(directory, generation="gemma", **dims)
    write_tiny_gemma_tokenizer(directory, generation="gemma")


def _write_mistral(directory: Path) -> None:
    from tunesmith_mistral import write_tiny_mistral_checkpoint

    # torchtune's Mistral has no sliding window; v0.1's 4096 is past these samples.
    write_tiny_mistral_checkpoint(
        directory, variant="v0_1", sliding_window=None, **_hf_dims(), rms_norm_eps=TINY["norm_eps"]
    )


_WRITERS = {
    "qwen2_5": _write_qwen2_5,
    "gemma": _write_gemma,
    "mistral": _write_mistral,
}


def write_data(path: Path) -> Path:
    """The first :data:`ROWS` rows of tunesmith's bundled Alpaca sample."""
    from tunesmith.data import SAMPLE_ALPACA

    rows = [line for line in Path(SAMPLE_ALPACA).read_text().splitlines() if line.strip()]
    path.write_text("\n".join(rows[:ROWS]) + "\n")
    return path


def _architecture(family: str, checkpoint: Path) -> dict[str, Any]:
    """The arguments of the family's torchtune component builder for ``checkpoint``."""
    config = json.loads((checkpoint / "config.json").read_text())
    args = dict(TINY, vocab_size=config["vocab_size"], num_kv_heads=config["num_key_value_heads"])
    if family != "llama2":
        args["rope_base"] = int(config["rope_parameters"]["rope_theta"])
    if family in ("llama3_1", "llama3_2"):
        args["scale_factor"] = int(config["rope_parameters"]["factor"])
    if family == "qwen2_5":
        args["tie_word_embeddings"] = config["tie_word_embeddings"]
    if family == "gemma":
        args["head_dim"] = config["head_dim"]
    return args


#: Family -> the torchtune package of its component builder (``qwen2.qwen2``, ...).
_COMPONENT_PACKAGE = {"qwen2_5": "qwen2"}

#: Families whose chat format tunesmith lays out as the checkpoint's chat template does
#: and torchtune by its own code -> why: these train on the rows' responses as plain text
#: (``text_completion_dataset``), which both tokenize alike, so that the losses compare
#: the model, the adapters and the optimizer.
PLAIN_TEXT = {
    "qwen2_5": "Qwen 2.5's template adds its default system prompt when a conversation "
    "has none; torchtune's tokenizer does not",
    "gemma": "Gemma's template wraps turns in <start_of_turn>user / model; torchtune's "
    "tokenizer joins the prompt and the answer without markers",
    "mistral": "torchtune encodes [INST] ... [/INST] and the answer apart (two spaces "
    "before [/INST] where the template has one)",
}

#: Family -> its tokenizer's files in the checkpoint (``tokenizer.<key>=<file>``).
_TOKENIZER_FILES = {
    "llama2": {"path": "tokenizer.model"},
    "qwen2_5": {"path": "vocab.json", "merges_file": "merges.txt"},
    "gemma": {"path": "tokenizer.model"},
    "mistral": {"path": "tokenizer.model"},
}


def pointing_overrides(
    config_name: str, checkpoint: Path, data: Path, output_dir: Path
) -> list[str]:
    """The command-line overrides that point ``config_name`` at the tiny files.

    As on torchtune's command line, ``key=value`` adds a key the file lacks.

    Args:
        config_name: ``family/name`` of a fixture config.
        checkpoint: What :func:`write_tiny` wrote for the family.
        data: An Alpaca-style JSONL file.
        output_dir: Where the run writes.
    """
    import yaml

    family = family_of(config_name)
    text = (TORCHTUNE_CONFIGS / f"{config_name}.yaml").read_text()
    cfg = yaml.safe_load(text)
    builder = cfg["model"]["_component_"].rsplit(".", 1)[1]
    lora = builder.startswith(("lora_", "qlora_"))
    package = _COMPONENT_PACKAGE.get(family, family)
    component = f"torchtune.models.{package}.{'lora_' if lora else ''}{package}"
    overrides = [f"model._component_={component}"]
    overrides += [f"model.{k}={v}" for k, v in _architecture(family, checkpoint).items()]
    if builder.startswith("qlora_"):
        overrides.append("model.quantize_base=True")
    meta = cfg["checkpointer"]["_component_"].endswith("MetaCheckpointer")
    if meta:
        overrides += [
            f"checkpointer.checkpoint_dir={checkpoint / 'original'}",
            "checkpointer.checkpoint_files=[consolidated.00.pth]",
        ]
    else:
        overrides += [
            f"checkpointer.checkpoint_dir={checkpoint}",
            "checkpointer.checkpoint_files=[model.safetensors]",
        ]
    files = _TOKENIZER_FILES.get(family, {"path": "original/tokenizer.model"})
    overrides += [f"tokenizer.{key}={checkpoint / name}" for key, name in files.items()]
    overrides += [
        f"checkpointer.output_dir={output_dir}",
        f"output_dir={output_dir}",
        "tokenizer.max_seq_len=128",
        "dataset.source=json",
        f"dataset.data_files={data}",
        "device=cpu",
        "dtype=fp32",
        f"batch_size={BATCH}",
        "epochs=1",
        f"max_steps_per_epoch={STEPS}",
        "gradient_accumulation_steps=1",
        "seed=1234",
        "shuffle=False",
        "enable_activation_checkpointing=False",
        "log_every_n_steps=1",
        "log_peak_memory_stats=False",
    ]
    if lora and family == "qwen2_5":
        # torchtune draws LoRA's A from its own random stream: at the config's 2e-3 the
        # draw alone moves the third step's loss by up to 0.06 (seeds 1, 2, 1234 here).
        overrides.append("optimizer.lr=2e-4")
    if family in PLAIN_TEXT:
        overrides += ["dataset._component_=torchtune.datasets.text_completion_dataset",
                      "dataset.column=output"]  # fmt: skip
    if "optimizer_in_bwd" in cfg:
        overrides.append("optimizer_in_bwd=False")
    if cfg["optimizer"]["_component_"].startswith("bitsandbytes"):
        overrides.append("optimizer._component_=torch.optim.AdamW")
    if "lr_scheduler" in cfg:
        overrides.append("lr_scheduler.num_warmup_steps=0")  # every step updates
    return overrides
