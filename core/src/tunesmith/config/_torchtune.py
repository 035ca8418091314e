"""torchtune 0.6 configs, translated into tunesmith's before they are validated.

A config that names torchtune components (``torchtune.models.llama3_2.lora_llama3_2_1b``,
``torchtune.training.FullModelHFCheckpointer``, ...) or keys only torchtune reads
(``profiler``, ``low_cpu_ram``, ...) is rewritten block by block: each
translation is reported as one line, a key with no effect here is dropped with one
line saying so, and everything without an equivalent is collected into one error.
Keys the torchtune config leaves out take torchtune's defaults where they differ from
tunesmith's (torchtune's ``alpaca_dataset`` trains on the prompt, for instance).

Model families stay in their plugins: a torchtune model builder maps to the model the
installed plugins register under the builder's own name (``llama3_2_1b``), its
``lora_``/``qlora_`` prefix becoming a ``peft:`` block; no family is named here.

Example::

    translation = translate_torchtune_config(yaml.safe_load(open("8B_lora.yaml")))
    for line in translation.notes:
        print(line)
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import ConfigError

__all__ = [
    "TORCHTUNE_EQUIVALENTS",
    "TORCHTUNE_RECIPES",
    "Translation",
    "convert_torchtune_file",
    "is_torchtune_config",
    "recipe_from_comments",
    "refuse_torchtune_recipe",
    "translate_torchtune_config",
]

_PREFIX = "torchtune."

#: torchtune recipes tunesmith has no equivalent of -> what they do.
TORCHTUNE_RECIPES = {
    "lora_dpo_single_device": "DPO (preference optimization)",
    "lora_dpo_distributed": "DPO (preference optimization)",
    "full_dpo_distributed": "DPO (preference optimization)",
    "ppo_full_finetune_single_device": "PPO (RLHF)",
    "knowledge_distillation_single_device": "knowledge distillation",
    "knowledge_distillation_distributed": "knowledge distillation",
    "qat_distributed": "quantization-aware training (QAT)",
    "qat_lora_finetune_distributed": "quantization-aware training (QAT)",
    "qat_single_device": "quantization-aware training (QAT)",
    "dev/grpo_full_finetune_distributed": "GRPO (RL)",
    "dev/early_exit_finetune_distributed": "early-exit training",
    "dev/generate_v2_distributed": "tensor-parallel generation",
}
#: torchtune recipes that a tunesmith recipe does the job of -> that recipe.
TORCHTUNE_EQUIVALENTS = {"dev/generate_v2": "generate"}

#: Top-level keys of torchtune recipes that tunesmith does not need -> why.
_DROPPED = {
    "profiler": "tunesmith has no profiler hook: wrap a run in torch.profiler yourself",
    "low_cpu_ram": "weights are loaded once, where they run",
    "memory_efficient_fsdp_wrap": "FSDP2 shards each decoder layer",
    "fsdp_cpu_offload": "FSDP2 keeps parameters on the devices",
    "fsdp_reshard_after_forward": "FSDP2 reshards after the forward pass",
    "custom_sharded_layers": "FSDP2 shards each decoder layer",
    "activation_offloading_use_streams": "enable_activation_offloading decides alone",
    "ac_mode": "enable_activation_checkpointing checkpoints every layer",
    "ac_option": "enable_activation_checkpointing checkpoints every layer",
    "log_level": "tunesmith prints its own progress",
    "data_parallel_shard_dim": "FSDP2 shards over every process",
    "data_parallel_replicate_dim": "FSDP2 shards over every process",
    "tensor_parallel_plan": "tunesmith parallelises with FSDP2 only",
    "cpu_offload": "tunesmith keeps the model on its device",
    "enable_kv_cache": "only generate reads it",
    "fsdp": "FSDP2 shards each decoder layer and keeps parameters on the devices",
}
#: Keys torchtune's configs also carry to recipes that do not read them -> why; dropped
#: only where the recipe's schema lacks them (so they do not mark a torchtune config).
_UNREAD = {
    "resume_from_checkpoint": "only fine-tuning resumes",
    "seed": "a recipe that draws no random numbers has no seed",
}
#: Dropped keys a recipe reads after all: kept for it.
_KEPT_BY = {"enable_kv_cache": ("generate",)}

#: Keys that mark a torchtune recipe tunesmith has no equivalent of.
_RECIPE_KEYS = {
    "teacher_model": "knowledge distillation",
    "teacher_checkpointer": "knowledge distillation",
    "kd_loss": "knowledge distillation",
    "kd_ratio": "knowledge distillation",
    "ref_model": "DPO (preference optimization)",
    "ref_checkpointer": "DPO (preference optimization)",
    "policy_model": "PPO (RLHF)",
    "reward_and_value_model": "PPO (RLHF)",
    "ppo_epochs": "PPO (RLHF)",
}
_RECIPE_COMPONENTS = (
    ("torchtune.rlhf.loss.DPOLoss", "DPO (preference optimization)"),
    ("torchtune.rlhf.loss.SimPOLoss", "SimPO (preference optimization)"),
    ("torchtune.rlhf.loss.RSOLoss", "RSO (preference optimization)"),
    ("torchtune.rlhf.loss.PPOLoss", "PPO (RLHF)"),
    ("QATQuantizer", "quantization-aware training (QAT)"),
    ("KLWithChunkedOutputLoss", "knowledge distillation"),
)

#: torchtune's LoRA builder keys and its defaults for them.
_LORA_DEFAULTS = {
    "lora_attn_modules": ["q_proj", "v_proj"],
    "apply_lora_to_mlp": False,
    "apply_lora_to_output": False,
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "use_dora": False,
    "quantize_base": False,
}

_CHECKPOINTERS = ("FullModelHFCheckpointer", "FullModelMetaCheckpointer")
_CHECKPOINTER_KEYS = ("checkpoint_dir", "checkpoint_files", "output_dir", "model_type")
_CHECKPOINTER_DROPPED = {
    "recipe_checkpoint": "resume_from_checkpoint reads output_dir/recipe_state/",
    "adapter_checkpoint": "resume_from_checkpoint reads output_dir/recipe_state/",
    "safe_serialization": "weights are always written as safetensors",
    "should_load_recipe_state": "resume_from_checkpoint decides",
}

# torchtune dataset builder -> (tunesmith dataset, torchtune's defaults for it).
_SFT = {"split": "train", "packed": False}
_DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "alpaca_dataset": ("alpaca", {"source": "tatsu-lab/alpaca", "train_on_input": True, **_SFT}),
    "alpaca_cleaned_dataset": (
        "alpaca",
        {"source": "yahma/alpaca-cleaned", "train_on_input": True, **_SFT},
    ),
    "instruct_dataset": ("instruct", {"train_on_input": False, **_SFT}),
    "chat_dataset": ("chat", {"train_on_input": False, **_SFT}),
    "slimorca_dataset": (
        "chat",
        {
            "source": "Open-Orca/SlimOrca-Dedup",
            "conversation_column": "conversations",
            "conversation_style": "sharegpt",
            "train_on_input": False,
            **_SFT,
        },
    ),
    # torchtune splits texts across packs unless told not to.
    "text_completion_dataset": ("text_completion", {**_SFT, "split_across_pack": True}),
    "wikitext_dataset": (
        "text_completion",
        {
            "source": "EleutherAI/wikitext_document_level",
            "name": "wikitext-103-v1",
            "column_map": {"text": "page"},
            "split_across_pack": True,
            **_SFT,
        },
    ),
}

_LOSSES = {
    "CEWithChunkedOutputLoss": "computes the same token cross-entropy in chunks",
    "LinearCrossEntropyLoss": "the same token cross-entropy, computed from the logits",
    "CrossEntropyLoss": "the same token cross-entropy, normalised over the whole step",
}
_SCHEDULERS = {
    "get_cosine_schedule_with_warmup": "tunesmith.training.cosine_with_warmup",
    "get_linear_schedule_with_warmup": "tunesmith.training.linear_with_warmup",
    "get_constant_schedule_with_warmup": "tunesmith.training.constant_with_warmup",
}
#: bitsandbytes' AdamW classes, translated when bitsandbytes is not installed.
_BNB_ADAMW = ("AdamW", "AdamW32bit", "PagedAdamW", "PagedAdamW32bit", "AdamW8bit", "PagedAdamW8bit")
#: Their arguments that torch's and torchao's AdamW take with the same meaning.
_ADAMW_ARGS = ("lr", "betas", "eps", "weight_decay", "amsgrad")
#: torchtune's post-training quantizers -> (tunesmith's, why it is the same).
_QUANTIZERS = {
    "Int4WeightOnlyQuantizer": ("int4_weight_only", "4-bit weights, a scale per group"),
    "Int8DynActInt4WeightQuantizer": (
        "int8_dynamic_activation_int4_weight",
        "per-token int8 activations, 4-bit weights with a symmetric scale per group",
    ),
}
_QUANTIZER_DROPPED = {"inner_k_tiles": "torchao 0.18's tile-packed layout picks its own tiling"}
_LOGGERS = ("DiskLogger", "StdoutLogger", "TensorBoardLogger", "WandBLogger")


@dataclass
class Translation:
    """What :func:`translate_torchtune_config` made of a torchtune config.

    Attributes:
        config: The tunesmith config (plain containers, ``${...}`` kept as written).
        notes: One line per translation or dropped key, in config order.
        problems: One line per thing without an equivalent; empty when it translated.
    """

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        """Raise one :class:`ConfigError` listing every problem, if there are any."""
        if self.problems:
            from tunesmith.config._validate import format_problems

            raise ConfigError(
                "this torchtune config has parts tunesmith has no equivalent of — "
                + format_problems(self.problems)
            )


def _components(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        found = [value["_component_"]] if isinstance(value.get("_component_"), str) else []
        for item in value.values():
            found += _components(item)
        return found
    if isinstance(value, list):
        return [c for item in value for c in _components(item)]
    return []


def is_torchtune_config(raw: Mapping[str, Any]) -> bool:
    """Whether a loaded config is written for torchtune: it names a ``torchtune.``
    component, or a key only torchtune's recipes read."""
    if any(c.startswith(_PREFIX) for c in _components(raw)):
        return True
    keys = set(raw) & (set(_DROPPED) - set(_KEPT_BY) | set(_RECIPE_KEYS))
    return bool(keys)


def refuse_torchtune_recipe(name: str) -> None:
    """Refuse a torchtune recipe tunesmith has no equivalent of, naming what it does.

    Raises:
        ConfigError: ``name`` is such a recipe.
    """
    what = TORCHTUNE_RECIPES.get(name)
    if what == "tensor-parallel generation":
        raise ConfigError(
            f"torchtune's recipe {name} ({what}) has no equivalent in tunesmith: generate "
            "on one device with `tunesmith run generate`, or serve the checkpoint with vLLM "
            "(which loads it unchanged) across GPUs"
        )
    if what is not None:
        raise ConfigError(
            f"torchtune's recipe {name} ({what}) has no equivalent in tunesmith: tunesmith "
            "fine-tunes with supervised recipes only (`tunesmith ls` lists them)"
        )


# `[#]*`: some headers show the command commented out (`#   # tune run ...`).
_TUNE_RUN = re.compile(r"^#[\s#]*tune run\s+(?:--?\S+(?:[ =]\S+)?\s+)*?([\w/]+)\s+--config", re.M)
_SBATCH = re.compile(r"^#[\s#]*sbatch\s+(?:-\S+\s+)*(\S+\.slurm)\b", re.M)
#: torchtune's launch scripts -> the recipe each one `tune run`s.
_LAUNCH_SCRIPTS = {"full_finetune_multinode.slurm": "full_finetune_distributed"}


def recipe_from_comments(text: str) -> str | None:
    """The recipe a torchtune config's header comment runs it with (``tune run
    [--nproc_per_node N] RECIPE --config ...``, or ``sbatch`` of one of torchtune's
    launch scripts), or ``None``."""
    match = _TUNE_RUN.search(text)
    if match is not None:
        return match.group(1)
    script = _SBATCH.search(text)
    return _LAUNCH_SCRIPTS.get(script.group(1).rsplit("/", 1)[-1]) if script else None


def _last(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _registry_tables() -> dict[str, dict[str, Any]]:
    from tunesmith.registry import get_registry

    return get_registry().tables


def _family_packages(path: str) -> tuple[str, str]:
    """The distributions that may hold a ``torchtune.models.<package>.<builder>``:
    ``tunesmith-<package>`` and ``tunesmith-<its first word>`` (``phi3`` ->
    ``tunesmith-phi3``, ``tunesmith-phi``), the family's name last."""
    package = path.split(".")[2] if path.count(".") >= 3 else _last(path)
    words = re.findall(r"[a-z]+", package.removeprefix("code_"))
    return f"tunesmith-{package}", f"tunesmith-{words[0] if words else package}"


def _unknown_model(path: str, name: str, models: Mapping[str, Any]) -> str:
    from tunesmith.errors import did_you_mean
    from tunesmith.registry import get_registry

    auto = "or write model: {_component_: auto} (the architecture checkpointer.checkpoint_dir's config.json describes)"
    installed = {p.distribution for p in get_registry().plugins.values()}
    candidates = _family_packages(path)
    package = next((c for c in candidates if c in installed), candidates[-1])
    if package in installed:
        close = did_you_mean(name, models)
        return (
            f"model: {path}: the installed {package} registers no model '{name}'{close}: "
            f"name one of its models, {auto}"
        )
    return (
        f"model: {path}: no installed plugin registers a model named '{name}': install the "
        f"family's plugin (pip install {package}), {auto}"
    )


def _show(value: Any) -> str:
    from tunesmith.config._schema import yaml_text

    return yaml_text(value)


class _Translator:
    def __init__(self, raw: Mapping[str, Any], recipe: str | None, known: frozenset[str]) -> None:
        self.raw = raw
        self.recipe = recipe
        self.known = known
        self.out: dict[str, Any] = {}
        self.notes: list[str] = []
        self.problems: list[str] = []

    def note(self, key: str, old: Any, new: Any, why: str = "") -> None:
        self.notes.append(f"{key}: {old} -> {new}" + (f" ({why})" if why else ""))

    def dropped(self, key: str, why: str | None) -> None:
        self.notes.append(f"{key}: dropped" + (f" ({why})" if why else ""))

    # ---- the whole config ------------------------------------------------------

    def run(self) -> Translation:
        for key, value in self.raw.items():
            self.key(key, value)
        if self.recipe == "generate" and "top_p" not in self.out:
            # tunesmith's null would take the checkpoint's generation_config.json.
            self.out["top_p"] = 1.0
            self.note("top_p", "(none)", 1.0, "torchtune's generate samples without a top-p cut")
        self.refused_recipe()
        return Translation(self.out, self.notes, self.problems)

    def refused_recipe(self) -> None:
        whats = {what for key, what in _RECIPE_KEYS.items() if key in self.raw}
        for component in _components(self.raw):
            whats |= {what for mark, what in _RECIPE_COMPONENTS if mark in component}
        if self.recipe in TORCHTUNE_RECIPES:
            whats.add(TORCHTUNE_RECIPES[self.recipe])
        for what in sorted(whats):
            self.problems.append(
                f"this is a config for torchtune's {what} recipe, which has no equivalent in "
                "tunesmith (its recipes are supervised fine-tuning, generate, evaluate, quantize)"
            )

    def key(self, key: str, value: Any) -> None:
        if key in _RECIPE_KEYS:
            return  # refused as a whole (refused_recipe)
        if key == "tensor_parallel_dim":
            if value not in (None, 1):
                self.problems.append(
                    f"tensor_parallel_dim: {value}: tunesmith shards with FSDP2 only (no "
                    "tensor parallelism): remove it"
                )
            else:
                self.dropped(key, "tunesmith shards with FSDP2 only")
            return
        if key in _DROPPED and key not in self.known and self.recipe not in _KEPT_BY.get(key, ()):
            self.dropped(key, _DROPPED[key])
            return
        if key in _UNREAD and self.known and key not in self.known:
            self.dropped(key, f"{_UNREAD[key]}; {self.recipe} does not read it")
            return
        if key == "output_dir" and self.recipe == "generate":
            self.dropped(key, "generate writes no files")
            return
        handler = getattr(self, f"block_{key}", None)
        if handler is not None and self._translates(key, value):
            handler(value)
            return
        self.out[key] = copy.deepcopy(value)

    @staticmethod
    def _translates(key: str, value: Any) -> bool:
        """Whether a block is torchtune's (plain tunesmith blocks pass unchanged)."""
        if key in ("quantizer", "collate_fn", "prompt"):
            return True
        if key == "optimizer":
            return isinstance(value, Mapping) and isinstance(value.get("_component_"), str)
        if key == "checkpointer":
            return isinstance(value, Mapping) and "_component_" in value
        return any(c.startswith(_PREFIX) for c in _components(value))

    # ---- blocks ---------------------------------------------------------------

    def block_model(self, node: Any) -> None:
        if not isinstance(node, Mapping) or not str(node.get("_component_", "")).startswith(
            _PREFIX
        ):
            self.out["model"] = copy.deepcopy(node)
            return
        path = str(node["_component_"])
        if self.recipe in ("generate", "quantize", "eleuther_eval"):
            self.dropped(
                "model", f"{self.recipe} builds the model from checkpointer.checkpoint_dir"
            )
            return
        args = {k: copy.deepcopy(v) for k, v in node.items() if k != "_component_"}
        lora = {k: args.pop(k) for k in list(args) if k in _LORA_DEFAULTS}
        name = _last(path)
        method = None
        for prefix, kind in (("qlora_", "qlora"), ("lora_", "lora")):
            if name.startswith(prefix):
                name, method = name.removeprefix(prefix), kind
                break
        if lora and method is None:
            method = "lora"
        models = _registry_tables()["models"]
        candidates = [name, name.removesuffix("_instruct"), name.removesuffix("_base")]
        registered = next((c for c in candidates if c in models), None)
        if args:
            # A component builder (torchtune.models.llama3_2.llama3_2 with the
            # architecture as arguments): the checkpoint's config.json says the same.
            self.out["model"] = {"_component_": "auto"}
            self.note(
                "model._component_",
                path,
                "auto",
                f"the architecture comes from checkpointer.checkpoint_dir's config.json; "
                f"{', '.join(sorted(args))} are read from there",
            )
        elif registered is not None:
            self.out["model"] = {"_component_": registered}
            self.note("model._component_", path, registered)
        else:
            self.problems.append(_unknown_model(path, name, models))
        if method is not None:
            settings = {**_LORA_DEFAULTS, **lora}
            if method == "qlora":
                settings["quantize_base"] = True
            component = "qlora" if settings["quantize_base"] else "lora"
            if settings["lora_attn_modules"] is not None:
                settings["lora_attn_modules"] = list(settings["lora_attn_modules"])
            self.out["peft"] = {"_component_": component, **settings}
            shown = ", ".join(f"{k}: {_show(v)}" for k, v in settings.items())
            self.note("model (LoRA keys)", path, f"peft: {{_component_: {component}, {shown}}}")

    def block_tokenizer(self, node: Any) -> None:
        path = str(node.get("_component_", ""))
        args = {k: copy.deepcopy(v) for k, v in node.items() if k != "_component_"}
        name = _last(path)
        out: dict[str, Any]
        if name in _registry_tables()["tokenizers"]:
            out = {"_component_": name}
            if "path" in args:
                out["path"] = args.pop("path")
        else:
            out = {"_component_": "auto"}
            if args.pop("path", None) is not None:
                self.dropped("tokenizer.path", "auto reads the checkpoint directory's files")
        out["max_seq_len"] = args.pop("max_seq_len", None)
        self.note("tokenizer._component_", path, out["_component_"])
        template = args.pop("prompt_template", None)
        if template is not None:
            self.prompt_template(name, template)
        truncation = args.pop("truncation_type", "right")
        if truncation != "right":
            self.problems.append(
                f"tokenizer.truncation_type: {truncation}: tunesmith truncates on the right "
                "only (keeping the final end token, untrained): remove it"
            )
        for key, value in args.items():
            if value is None:
                self.dropped(f"tokenizer.{key}", "null")
            elif key in ("special_tokens_path", "merges_file", "vocab_path", "merges_path"):
                self.dropped(
                    f"tokenizer.{key}", "the tokenizer reads it from the checkpoint directory"
                )
            else:
                self.problems.append(
                    f"tokenizer.{key}: {_show(value)}: tunesmith's tokenizers take no such "
                    "setting: remove it"
                )
        self.out["tokenizer"] = out

    def prompt_template(self, tokenizer: str, template: Any) -> None:
        if self.recipe == "generate":
            self.out["prompt_template"] = copy.deepcopy(template)
            self.note("tokenizer.prompt_template", _show(template), "prompt_template")
        elif tokenizer == "llama2_tokenizer" and str(template).endswith("Llama2ChatTemplate"):
            self.dropped(
                "tokenizer.prompt_template",
                "tunesmith's llama2_tokenizer writes Meta's [INST] format itself",
            )
        else:
            self.problems.append(
                f"tokenizer.prompt_template: {_show(template)}: tunesmith applies a prompt "
                "format through the dataset (alpaca, or instruct's prompt_template) and the "
                "tokenizer's chat template: remove it from the tokenizer"
            )

    def block_checkpointer(self, node: Any) -> None:
        if not isinstance(node, Mapping):
            self.out["checkpointer"] = copy.deepcopy(node)
            return
        path = node.get("_component_")
        if path is not None and _last(str(path)) not in _CHECKPOINTERS:
            self.problems.append(
                f"checkpointer: {path}: tunesmith reads Hugging Face (safetensors) and Meta "
                "(consolidated.pth) checkpoints only: convert the checkpoint, or use "
                "FullModelHFCheckpointer / FullModelMetaCheckpointer"
            )
            return
        out = {k: copy.deepcopy(node[k]) for k in _CHECKPOINTER_KEYS if k in node}
        if self.recipe in ("generate", "eleuther_eval") and out.pop("output_dir", None):
            self.dropped("checkpointer.output_dir", f"{self.recipe} writes no checkpoint")
        if path is not None:
            self.note(
                "checkpointer._component_",
                path,
                "(removed)",
                "the format is detected from the files",
            )
        for key, value in node.items():
            if key in _CHECKPOINTER_KEYS or key == "_component_":
                continue
            if key in _CHECKPOINTER_DROPPED:
                self.dropped(f"checkpointer.{key}", _CHECKPOINTER_DROPPED[key])
            else:
                self.problems.append(
                    f"checkpointer.{key}: {_show(value)}: tunesmith's checkpointer takes "
                    f"{', '.join(_CHECKPOINTER_KEYS)} only: remove it"
                )
        self.out["checkpointer"] = out

    def block_dataset(self, node: Any, key: str = "dataset") -> None:
        if isinstance(node, list):  # several datasets trained as one, in order
            items = [self.dataset(item, f"{key}.{i}") for i, item in enumerate(node)]
            self.out[key] = items
            return
        self.out[key] = self.dataset(node, key)

    def dataset(self, node: Any, key: str) -> Any:
        if not isinstance(node, Mapping) or not str(node.get("_component_", "")).startswith(
            _PREFIX
        ):
            return copy.deepcopy(node)
        path = str(node.get("_component_", ""))
        name = _last(path)
        if name not in _DATASETS:
            self.problems.append(
                f"{key}: {path}: no tunesmith equivalent; use alpaca, instruct, chat or "
                "text_completion with your own source"
            )
            return None
        target, defaults = _DATASETS[name]
        args = {k: copy.deepcopy(v) for k, v in node.items() if k != "_component_"}
        out: dict[str, Any] = {"_component_": target}
        filled = [k for k in defaults if k not in args]
        out.update({k: copy.deepcopy(defaults[k]) for k in defaults if k not in args})
        if target == "text_completion":
            column = args.pop("column", None)
            if column is not None:
                out["column_map"] = {"text": column}
            if args.pop("add_eos", True) is not True:
                self.problems.append(
                    f"{key}.add_eos: false: text_completion always ends a text with eos: remove it"
                )
        if "subset" in args:  # torchtune's name for datasets' config name
            out["name"] = args.pop("subset")
        out.update(args)
        why = f"torchtune's defaults filled in: {', '.join(filled)}" if filled else ""
        self.note(f"{key}._component_", path, target, why)
        return out

    def block_loss(self, node: Any) -> None:
        path = str(node.get("_component_", ""))
        name = _last(path)
        if name not in _LOSSES or not (path.startswith(_PREFIX) or path.startswith("torch.nn")):
            if any(mark in path for mark, _ in _RECIPE_COMPONENTS):
                return  # the recipe is refused as a whole
            self.problems.append(
                f"loss: {path}: no tunesmith equivalent; use "
                "tunesmith.training.ChunkedCrossEntropyLoss"
            )
            return
        out: dict[str, Any] = {"_component_": "tunesmith.training.ChunkedCrossEntropyLoss"}
        for key, value in node.items():
            if key in ("num_output_chunks", "ignore_index"):
                out[key] = value
            elif key != "_component_":
                self.problems.append(
                    f"loss.{key}: {_show(value)}: {name} takes num_output_chunks and "
                    "ignore_index only: remove it"
                )
        self.note("loss._component_", path, out["_component_"], _LOSSES[name])
        self.out["loss"] = out

    def block_lr_scheduler(self, node: Any) -> None:
        path = str(node.get("_component_", ""))
        target = _SCHEDULERS.get(_last(path))
        if target is None:
            self.problems.append(
                f"lr_scheduler: {path}: no tunesmith equivalent; use "
                "tunesmith.training.cosine_with_warmup, linear_with_warmup or "
                "constant_with_warmup (or a torch.optim.lr_scheduler class)"
            )
            return
        out = {"_component_": target, **{k: v for k, v in node.items() if k != "_component_"}}
        self.note("lr_scheduler._component_", path, target)
        self.out["lr_scheduler"] = out

    def block_optimizer(self, node: Any) -> None:
        path = str(node.get("_component_", ""))
        self.out["optimizer"] = copy.deepcopy(node)
        missing = missing_package(path)
        if missing == "bitsandbytes" and _last(path) in _BNB_ADAMW:
            self.bitsandbytes_adamw(path, node)
        elif missing is not None:
            self.problems.append(
                f"optimizer: {path} needs the {missing} package: pip install {missing}, or "
                "use optimizer._component_=torch.optim.AdamW"
            )
        if path.startswith(_PREFIX):
            self.problems.append(
                f"optimizer: {path}: no tunesmith equivalent; use a torch.optim optimizer "
                "(e.g. torch.optim.AdamW)"
            )

    def bitsandbytes_adamw(self, path: str, node: Mapping[str, Any]) -> None:
        """bitsandbytes is not installed: the same AdamW from torch, or torchao's for the
        8-bit one."""
        name = _last(path)
        eight_bit = name.endswith("8bit") or node.get("optim_bits") == 8
        if eight_bit and importlib.util.find_spec("torchao") is None:
            self.problems.append(
                f"optimizer: {path} needs bitsandbytes, or torchao for the same 8-bit AdamW: "
                "pip install bitsandbytes, or pip install 'tunesmith[quantize]'"
            )
            return
        target = "torchao.optim.AdamW8bit" if eight_bit else "torch.optim.AdamW"
        why = "bitsandbytes is not installed; " + (
            "torchao's AdamW8bit also keeps its state in 8 bits, quantized per block"
            if eight_bit
            else "the same AdamW update"
        )
        if name.startswith("Paged"):
            why += "; paging only moves optimizer state between GPU and CPU memory"
        self.note("optimizer._component_", path, target, why)
        out: dict[str, Any] = {"_component_": target}
        for key, value in node.items():
            if key in _ADAMW_ARGS:
                out[key] = copy.deepcopy(value)
            elif key != "_component_":
                self.dropped(f"optimizer.{key}", f"a bitsandbytes setting {target} does not take")
        self.out["optimizer"] = out

    def block_metric_logger(self, node: Any) -> None:
        path = str(node.get("_component_", ""))
        name = _last(path)
        if name not in _LOGGERS:
            self.problems.append(
                f"metric_logger: {path}: no tunesmith equivalent; use "
                f"tunesmith.training.{', '.join(_LOGGERS)}"
            )
            return
        out: dict[str, Any] = {"_component_": f"tunesmith.training.{name}"}
        for key, value in node.items():
            if key == "_component_":
                continue
            if name == "TensorBoardLogger" and key == "organize_logs":
                self.dropped("metric_logger.organize_logs", "one directory per log_dir")
            elif name == "WandBLogger" and key == "log_dir":
                out["dir"] = value  # wandb.init's name for it
            elif name == "StdoutLogger":
                self.dropped(f"metric_logger.{key}", "StdoutLogger takes no settings")
            else:
                out[key] = copy.deepcopy(value)
        self.note("metric_logger._component_", path, out["_component_"])
        self.out["metric_logger"] = out

    def block_quantizer(self, node: Any) -> None:
        if node is None and self.recipe != "quantize":
            self.dropped("quantizer", "null")
            return
        path = str((node or {}).get("_component_", ""))
        if "QAT" in path:
            return  # refused as a whole (refused_recipe)
        if self.recipe == "quantize" and _last(path) in _QUANTIZERS and path.startswith(_PREFIX):
            self.quantizer(path, node)
            return
        if self.recipe == "quantize" or not path.startswith(_PREFIX):
            self.out["quantizer"] = copy.deepcopy(node)
            if path.startswith(_PREFIX):
                self.problems.append(
                    f"quantizer: {path}: name a tunesmith quantizer instead "
                    "(int8_weight_only, int4_weight_only, ...; `tunesmith ls --all`)"
                )
            return
        self.problems.append(
            f"quantizer: {path}: tunesmith quantizes after training, with `tunesmith run "
            "quantize`: remove it here"
        )

    def quantizer(self, path: str, node: Mapping[str, Any]) -> None:
        target, why = _QUANTIZERS[_last(path)]
        self.note("quantizer._component_", path, target, why)
        out: dict[str, Any] = {"_component_": target}
        for key, value in node.items():
            if key in _QUANTIZER_DROPPED:
                self.dropped(f"quantizer.{key}", _QUANTIZER_DROPPED[key])
            elif key != "_component_":
                out[key] = copy.deepcopy(value)  # groupsize: the same meaning and default
        self.out["quantizer"] = out

    def block_prompt(self, node: Any) -> None:
        """generate_v2's turns are messages (``user: {text: ..., image: ...}``);
        tunesmith's are strings."""
        out = copy.deepcopy(node)
        for role in ("system", "user"):
            turn = node.get(role) if isinstance(node, Mapping) else None
            if not isinstance(turn, Mapping):
                continue
            for key in turn:
                if key != "text":
                    self.problems.append(
                        f"prompt.{role}.{key}: tunesmith's generate takes text prompts only: "
                        "remove it"
                    )
            out[role] = turn.get("text")
            self.note(f"prompt.{role}", "{text: ...}", "the text")
        self.out["prompt"] = out

    def block_collate_fn(self, node: Any) -> None:
        if str(node).endswith("padded_collate_sft") or node is None:
            self.dropped("collate_fn", "samples are padded as torchtune's padded_collate_sft does")
        else:
            self.problems.append(f"collate_fn: {node}: tunesmith pads batches itself: remove it")


def translate_torchtune_config(
    raw: Mapping[str, Any], *, recipe: str | None = None, known: Iterable[str] = ()
) -> Translation:
    """Rewrite a torchtune 0.6 config in tunesmith's schema.

    Args:
        raw: The loaded YAML (plain containers; ``${...}`` strings are kept as written).
        recipe: The recipe it will run with, when known (``generate`` keeps what only
            it reads, a torchtune-only recipe is refused).
        known: Top-level keys the recipe's schema reads: kept even where tunesmith's
            other recipes have no use for them.

    Returns:
        The :class:`Translation`; check ``problems`` (or call ``raise_problems()``).
    """
    return _Translator(raw, recipe, frozenset(known)).run()


def convert_torchtune_file(
    name_or_path: str, *, recipe: str | None = None
) -> tuple[str, list[str], str | None]:
    """``(yaml_text, notes, recipe)``: a torchtune config file in tunesmith's form, for
    ``tunesmith convert-config``; ``recipe`` defaults to its ``tune run`` comment.

    Raises:
        ConfigError: every part without an equivalent, in one message.
    """
    import yaml

    from tunesmith.config._load import _read, config_source

    text = config_source(name_or_path)[0]
    recipe = recipe or recipe_from_comments(text)
    if recipe is not None:
        refuse_torchtune_recipe(recipe)
        recipe = TORCHTUNE_EQUIVALENTS.get(recipe, recipe)
    problems: list[str] = []
    raw = _read(name_or_path, problems)
    from tunesmith.registry import get_registry

    record = get_registry().tables["recipes"].get(recipe or "")
    known = record.schema.names if record is not None and record.schema is not None else ()
    translation = translate_torchtune_config(raw, recipe=recipe, known=known)
    problems += translation.problems
    if problems:
        from tunesmith.config._validate import format_problems

        raise ConfigError("this torchtune config does not translate — " + format_problems(problems))
    run = (
        f"tunesmith run {recipe} --config <this file>"
        if recipe
        else "tunesmith run RECIPE --config <this file>"
    )
    header = [
        f"# Translated from the torchtune config {name_or_path} by tunesmith convert-config.",
        f"#   {run}",
    ]
    header += ["# Translations:"] + [f"#   {line}" for line in translation.notes]
    body = yaml.safe_dump(translation.config, sort_keys=False, allow_unicode=True)
    return "\n".join(header) + "\n\n" + body, translation.notes, recipe


def missing_package(path: str) -> str | None:
    """The top-level package of a dotted ``_component_`` path when it is not installed."""
    top = path.split(".", 1)[0]
    if "." not in path or importlib.util.find_spec(top) is not None:
        return None
    return top
