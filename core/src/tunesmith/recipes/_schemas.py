"""The schemas of the core's recipes: every top-level key each reads, its type, range and
default. ``tunesmith validate`` checks configs against them, ``tunesmith run`` fills the
defaults in, and the recipes read ``cfg.<key>``."""

from __future__ import annotations

from typing import Any

from tunesmith.config._schema import Key, RecipeSchema, at_least, greater_than, in_range
from tunesmith.errors import did_you_mean

__all__ = [
    "CHECKPOINTER_KEYS",
    "FINETUNE_SCHEMA",
    "GENERATE_SCHEMA",
    "QUANTIZE_SCHEMA",
    "well_known_key",
]

_COMPONENT = (dict, None)
_POSITIVE = at_least(1)


#: The keys of a ``checkpointer`` block: :class:`tunesmith.checkpoint.Checkpointer`'s
#: arguments (a test holds them equal). Recipes that read only ``checkpoint_dir`` accept
#: the others too, so one block serves every recipe of a workflow.
CHECKPOINTER_KEYS = ("checkpoint_dir", "output_dir", "checkpoint_files", "model_type")


def _checkpointer_check(value: dict[str, Any]) -> str | None:
    takes = f"(it takes {', '.join(CHECKPOINTER_KEYS)})"
    unknown = [
        f"has no key '{k}'{did_you_mean(str(k), CHECKPOINTER_KEYS) or f' {takes}: remove it'}"
        for k in value
        if k not in CHECKPOINTER_KEYS
    ]
    if unknown:
        return "; ".join(unknown)
    if "checkpoint_dir" not in value or value["checkpoint_dir"] is None:
        return "needs checkpoint_dir: set checkpointer.checkpoint_dir=<model directory>"
    if isinstance(value["checkpoint_dir"], (bool, int, float, list, dict)):
        return f"checkpoint_dir must be a path, not {value['checkpoint_dir']!r}"
    return None


def _checkpointer(help: str) -> Key:
    return Key("checkpointer", dict, required=True, check=_checkpointer_check, help=help)


_DEVICE = Key(
    "device", str, "auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N, mps"
)
_ADAPTER = Key(
    "adapter", (str, None), None, help="A PEFT adapter directory applied on top, or null"
)
_TOKENIZER = Key(
    "tokenizer", _COMPONENT, None, help="null or {_component_: auto}: the checkpoint's own"
)
_SEED = Key("seed", (int, None), None, help="Random seed; null picks one")

FINETUNE_SCHEMA = RecipeSchema(
    (
        Key("output_dir", str, required=True, help="Where epoch_N/, logs/ and recipe_state/ go"),
        _checkpointer("{checkpoint_dir, output_dir?, checkpoint_files?, model_type?}"),
        Key(
            "model",
            _COMPONENT,
            None,
            help="null or {_component_: auto}: built from checkpoint_dir's config.json",
        ),
        _TOKENIZER,
        Key(
            "dataset",
            (dict, list),
            required=True,
            help="{_component_: alpaca | chat | ..., source}, or a list of them trained as one",
        ),
        Key("validation_dataset", _COMPONENT, None, help="Held-out data for val_loss, or null"),
        Key(
            "run_val_every_n_steps",
            (int, None),
            None,
            check=_POSITIVE,
            help="null: validate at the end of each epoch",
        ),
        Key("max_val_steps", (int, None), None, check=_POSITIVE, help="null: the whole set"),
        Key("peft", _COMPONENT, None, help="{_component_: lora, ...}; null: full fine-tuning"),
        Key(
            "save_adapter_weights_only",
            bool,
            False,
            help="PEFT runs: write only the adapter, not merged weights",
        ),
        Key("optimizer", dict, required=True, help="{_component_: torch.optim.AdamW, lr: ...}"),
        Key("lr_scheduler", _COMPONENT, None, help="null: a constant learning rate"),
        Key("loss", _COMPONENT, None, help="null: tunesmith.training.ChunkedCrossEntropyLoss"),
        _SEED,
        Key("shuffle", bool, True, help="Shuffle the dataset each epoch"),
        Key("batch_size", int, 1, check=_POSITIVE, help="Samples per micro-batch (per device)"),
        Key("epochs", int, 1, check=_POSITIVE, help="Passes over the dataset"),
        Key(
            "max_steps_per_epoch",
            (int, None),
            None,
            check=_POSITIVE,
            help="Cut each epoch short; null: the whole dataset",
        ),
        Key(
            "gradient_accumulation_steps",
            int,
            1,
            check=_POSITIVE,
            help="Micro-batches per optimizer step",
        ),
        Key(
            "clip_grad_norm",
            (float, None),
            None,
            check=greater_than(0),
            help="Max gradient norm; null: no clipping",
        ),
        _DEVICE,
        Key("dtype", str, "auto", help="auto (bf16 where fast, else fp32), bf16, fp32, fp16"),
        Key("enable_activation_checkpointing", bool, False, help="Recompute activations"),
        Key("enable_activation_offloading", bool, False, help="Keep activations on the CPU"),
        Key("compile", bool, False, help="torch.compile each decoder layer and the loss"),
        Key(
            "padding_free",
            bool,
            True,
            help="Unpacked batches as one row of their samples (no padding, attention per "
            "sample): the same training, faster",
        ),
        Key(
            "optimizer_in_bwd",
            bool,
            False,
            help="Step each parameter inside backward (no full set of gradients held); "
            "not with clip_grad_norm, gradient accumulation or FSDP",
        ),
        Key("num_workers", int, 0, check=at_least(0), help="DataLoader worker processes"),
        Key("metric_logger", _COMPONENT, None, help="null: print to stdout"),
        Key("log_every_n_steps", int, 1, check=_POSITIVE, help="Log metrics every N steps"),
        Key("log_peak_memory_stats", bool, False, help="Log peak memory with the metrics"),
        Key(
            "save_every_n_steps",
            (int, None),
            None,
            check=_POSITIVE,
            help="Save resumable state mid-epoch; null: at epoch ends only",
        ),
        Key(
            "keep_last_n_epochs",
            (int, None),
            None,
            check=_POSITIVE,
            help="Delete older epoch_N/ folders; null: keep all",
        ),
        Key(
            "resume_from_checkpoint",
            bool,
            False,
            help="Continue from output_dir/recipe_state/",
        ),
        Key(
            "overwrite_output_dir",
            bool,
            False,
            help="Replace another run's epoch_N/ and recipe_state/ in output_dir (else refused)",
        ),
    )
)

_PROMPT_KEYS = ("system", "user", "interactive")


def _prompt_check(value: dict[str, Any]) -> str | None:
    for key in value:
        if key not in _PROMPT_KEYS:
            hint = did_you_mean(str(key), _PROMPT_KEYS) or f" (it takes {', '.join(_PROMPT_KEYS)})"
            return f"has no key '{key}'{hint}"
    return None


_BUILDS_FROM_CHECKPOINT = (
    "{recipe} builds the model from checkpointer.checkpoint_dir's config.json: remove "
    "'model' and point checkpointer.checkpoint_dir at the model to use"
)

GENERATE_SCHEMA = RecipeSchema(
    (
        _checkpointer("{checkpoint_dir}: the model directory (config.json, weights, tokenizer)"),
        _ADAPTER,
        _TOKENIZER,
        Key(
            "prompt",
            _COMPONENT,
            {"system": None, "user": None, "interactive": False},
            check=_prompt_check,
            help="{system, user, interactive}: what to answer (interactive: chat)",
        ),
        Key("chat", bool, False, help="Chat interactively (like prompt.interactive=true)"),
        Key(
            "prompt_template",
            (str, dict, None),
            None,
            help="Format of each user turn: alpaca, 'Q: {prompt} A: ', {user: [before, after]}; "
            "null: the checkpoint's own",
        ),
        Key("max_new_tokens", int, 256, check=_POSITIVE, help="Longest answer, in tokens"),
        Key(
            "temperature",
            (float, None),
            None,
            check=at_least(0),
            help="0 is greedy; null: the checkpoint's generation_config.json (greedy unless "
            "it sets do_sample), as transformers' generate",
        ),
        Key(
            "top_k",
            (int, None),
            None,
            check=at_least(0),
            help="Sample from the k likeliest (0: all); null: generation_config.json's, else 50",
        ),
        Key(
            "top_p",
            (float, None),
            None,
            check=in_range(0, 1, low_open=True),
            help="Nucleus sampling (1: off); null: generation_config.json's, else off",
        ),
        Key(
            "min_p",
            (float, None),
            None,
            check=in_range(0, 1),
            help="Drop tokens below min_p x the top one's probability (0: off); null: "
            "generation_config.json's, else off",
        ),
        Key(
            "repetition_penalty",
            (float, None),
            None,
            check=greater_than(0),
            help="Above 1 discourages repeating prompt or answer tokens (1: off); null: "
            "generation_config.json's, else off",
        ),
        _SEED,
        Key("enable_kv_cache", bool, True, help="Cache keys and values while decoding"),
        Key(
            "compile",
            bool,
            False,
            help="torch.compile the one-token decoding step (faster after a one-off warm-up)",
        ),
        _DEVICE,
        Key("dtype", str, "auto", help="auto (bf16 on CUDA, else fp32), bf16, fp32, fp16"),
    ),
    refused={
        "model": _BUILDS_FROM_CHECKPOINT.format(recipe="generate"),
        "output_dir": "generate writes no files (the answer goes to stdout): remove it",
    },
)

QUANTIZE_SCHEMA = RecipeSchema(
    (
        _checkpointer("{checkpoint_dir}: the full-precision model to quantize"),
        Key("output_dir", str, required=True, help="A new directory for the quantized model"),
        Key(
            "quantizer",
            dict,
            required=True,
            help="{_component_: int8_weight_only | int4_weight_only | ..., ...}",
        ),
        Key(
            "adapter",
            (str, None),
            None,
            help="A PEFT adapter directory merged in before quantizing, or null",
        ),
        _DEVICE,
        Key("dtype", str, "auto", help="auto (bf16 on CUDA, else fp32), bf16, fp32, fp16"),
    ),
    refused={"model": _BUILDS_FROM_CHECKPOINT.format(recipe="quantize")},
)


def well_known_key(name: str) -> Key | None:
    """The core recipes' :class:`Key` for ``name`` (its type, range and help), if any:
    what a plugin-API-1 ``Recipe(keys=...)`` gets for the names it lists."""
    for schema in (FINETUNE_SCHEMA, GENERATE_SCHEMA, QUANTIZE_SCHEMA):
        key = schema.get(name)
        if key is not None:
            return key
    return None
