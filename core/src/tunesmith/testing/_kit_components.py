"""Conformance checks for the components that are not model families: PEFT methods,
tokenizers and chat templates, datasets, quantizers, evaluators, shipped configs, and
:func:`check_plugin`, which runs whatever applies to everything a plugin registered."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import TunesmithError
from tunesmith.protocols import (
    ModelEvaluator,
    ModelQuantizer,
    ModelTokenizer,
    PeftTransform,
    TrainingDataset,
)
from tunesmith.testing._kit import (
    FAMILY_CHECKS,
    ConformanceError,
    _expect_close,
    _load_native,
    _logits,
    _max_diff,
    _Report,
    _Skip,
    _tiny_model_dir,
    _tokens,
    _train_step,
    _work_dir,
    check_family,
)

__all__ = [
    "CONVERSATIONS",
    "check_chat_template",
    "check_configs",
    "check_dataset",
    "check_evaluator",
    "check_peft_method",
    "check_plugin",
    "check_quantizer",
    "check_tokenizer",
]


def _registry(registry: Any) -> Any:
    if registry is None:
        from tunesmith.registry import get_registry

        return get_registry()
    return registry


def _signature_problems(obj: Any, protocol: type) -> list[str]:
    """Members of ``protocol`` that ``obj`` lacks, or whose parameters it does not take."""
    problems = []
    for name, member in vars(protocol).items():
        if name.startswith("_") and name != "__call__" or not callable(member):
            continue
        if name == "__call__" and not callable(obj):
            problems.append("it is not callable")
            continue
        actual = getattr(obj, name, None)
        if name == "__call__" and isinstance(obj, torch.nn.Module):
            actual = obj.forward  # Module.__call__ takes (*args, **kwargs) and calls forward
        if actual is None:
            problems.append(f"it has no {name}()")
            continue
        wanted = [p for p in inspect.signature(member).parameters.values() if p.name != "self"]
        try:
            params = inspect.signature(actual).parameters
        except (TypeError, ValueError):
            continue
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        takes_args = any(p.kind is p.VAR_POSITIONAL for p in params.values())
        for p in wanted:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.kind is not p.KEYWORD_ONLY and takes_args:
                continue
            if p.name not in params and not (takes_kwargs and p.kind is p.KEYWORD_ONLY):
                positional = [q for q in params.values() if q.kind is not q.KEYWORD_ONLY]
                if p.kind is p.KEYWORD_ONLY or len(positional) < len(wanted):
                    problems.append(f"{name}() does not take '{p.name}'")
    return problems


def _conforms(obj: Any, protocol: type) -> None:
    problems = _signature_problems(obj, protocol)
    if problems or not isinstance(obj, protocol):
        raise AssertionError(
            f"{type(obj).__name__} does not satisfy {protocol.__name__}: "
            + ("; ".join(problems) or "a member is missing")
        )


# ---- PEFT methods -------------------------------------------------------------------

_PEFT_BLOCK = {
    "lora_attn_modules": ["q_proj", "v_proj"],
    "apply_lora_to_mlp": True,
    "lora_rank": 4,
    "lora_alpha": 8,
}


def check_peft_method(
    name: str,
    *,
    peft_block: Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    registry: Any = None,
) -> list[str]:
    """Check a PEFT method on a tiny model of an installed family.

    Checks: the transform satisfies :class:`~tunesmith.protocols.PeftTransform`;
    after ``apply`` only ``trainable_params`` require grad; one training step changes
    the logits; ``merged_state_dict`` loads into the plain architecture with the
    adapted logits, and so does ``merge``; an adapter saved with ``save_adapter`` is
    found again by its declared ``peft_type`` (:mod:`tunesmith.peft`) and loads with
    equal logits.

    Args:
        name: The registered method.
        peft_block: Its ``peft:`` keys (default: LoRA-style keys, q/v and MLP, rank 4).
    """
    from tunesmith.peft import transform_for_adapter

    registry = _registry(registry)
    method = registry.get("peft_methods", name)
    report = _Report(f"PEFT method '{name}'")
    with _work_dir(work_dir) as root:
        root = Path(root)
        try:
            source = _tiny_model_dir(root, registry)
        except _Skip as skip:
            with report.check("all"):
                raise skip
            return report.finish()
        model, checkpointer = _load_native(source)
        vocab = int(checkpointer.hf_config["vocab_size"])
        tokens = _tokens(vocab, 2, 16, seed=3)
        base = _logits(model, tokens)
        transform = method.builder(**dict(peft_block or _PEFT_BLOCK))
        with report.check("protocol"):
            _conforms(transform, PeftTransform)
        transform.apply(model)
        trainable = transform.trainable_params(model)
        with report.check("trainable_params"):
            grads = {n for n, p in model.named_parameters() if p.requires_grad}
            if not trainable or grads != set(trainable):
                raise AssertionError(
                    f"trainable_params names {sorted(trainable)[:3]} but the parameters that "
                    f"require grad are {sorted(grads)[:3]}"
                )
        if report.failures:  # nothing below can run without trainable parameters
            return report.finish()
        model.train()
        _train_step(model, trainable, vocab, 16)
        model.eval()
        adapted = _logits(model, tokens)
        with report.check("training changes the model"):
            if not _max_diff(adapted, base) > 1e-5:
                raise AssertionError(
                    "one optimizer step on the trainable parameters changed nothing"
                )
        with report.check("merged_state_dict"):
            plain, _ = _load_native(source)
            plain.load_state_dict(transform.merged_state_dict(model), strict=True)
            _expect_close("merged and adapted logits", _logits(plain, tokens), adapted, 1e-4)
        with report.check("save_adapter / load_adapter"):
            directory = transform.save_adapter(
                model, root / "adapter", adapter=checkpointer.adapter,
                base_model_name_or_path=str(source),
            )  # fmt: skip
            adapter_dir, loader = transform_for_adapter(directory, registry=registry)
            again, _ = _load_native(source)
            loader.load_adapter(again, adapter_dir, adapter=checkpointer.adapter)
            saved = {k: p.detach() for k, p in trainable.items()}
            loaded = {k: p.detach() for k, p in loader.trainable_params(again).items()}
            if set(loaded) != set(saved) or any(
                not torch.equal(saved[k].float(), loaded[k].float()) for k in saved
            ):
                raise AssertionError(
                    "the adapter loaded back (by its declared peft_type) does not hold the "
                    "trained tensors"
                )
            if method.peft_type is not None:  # a training variant (QLoRA) loads onto another base
                reloaded = _logits(again.eval(), tokens)
                _expect_close("reloaded and adapted logits", reloaded, adapted, 1e-4)
        with report.check("merge"):
            transform.merge(model)
            _expect_close("logits after merge()", _logits(model, tokens), adapted, 1e-4)
    return report.finish()


# ---- tokenizers and chat templates ----------------------------------------------------

#: Conversations the chat-template check renders (system prompts are tried, and
#: dropped for templates that refuse them).
CONVERSATIONS = (
    [("user", "What is the capital of France?"), ("assistant", "Paris.")],
    [
        ("system", "You answer briefly."),
        ("user", "Name a prime number."),
        ("assistant", "Seven."),
        ("user", "And another one?"),
        ("assistant", "Eleven, then thirteen."),
    ],
)


def check_tokenizer(tokenizer: Any, *, text: str = "Hello world, 12 tokens!") -> list[str]:
    """Check a tokenizer object against :class:`~tunesmith.protocols.ModelTokenizer`:
    members and signatures, ``decode(encode(text))`` returns the text, ids lie in the
    vocabulary, ``eos`` ends ``encode(add_eos=True)`` and is a stop token, and
    ``tokenize_messages`` gives one mask flag per token with the assistant's
    end-of-turn token trained."""
    from tunesmith.data import Message

    report = _Report(f"tokenizer {type(tokenizer).__name__}")
    with report.check("protocol"):
        _conforms(tokenizer, ModelTokenizer)
    with report.check("encode/decode"):
        ids = tokenizer.encode(text, add_bos=False, add_eos=False)
        if tokenizer.decode(ids).strip() != text.strip():
            raise AssertionError(f"decode(encode({text!r})) gives {tokenizer.decode(ids)!r}")
        if any(not 0 <= i < tokenizer.vocab_size for i in ids):
            raise AssertionError(f"ids outside the vocabulary of {tokenizer.vocab_size}")
        with_eos = tokenizer.encode(text, add_bos=True, add_eos=True)
        if with_eos[-1] != tokenizer.eos_id or tokenizer.eos_id not in tokenizer.stop_tokens:
            raise AssertionError("eos does not end encode(add_eos=True) or is not a stop token")
    with report.check("tokenize_messages"):
        messages = [Message("user", "Hi there", masked=True), Message("assistant", "Hello!")]
        tokens, mask = tokenizer.tokenize_messages(messages)
        _end_of_turn_trained(tokenizer, tokens, mask, 1)
    return report.finish()


def _end_of_turn_trained(tokenizer: Any, tokens: list[int], mask: list[bool], turns: int) -> None:
    if len(tokens) != len(mask):
        raise AssertionError(f"{len(tokens)} tokens but {len(mask)} mask flags")
    stops = set(tokenizer.stop_tokens)
    trained_ends = [t for t, m in zip(tokens, mask, strict=True) if t in stops and not m]
    if len(trained_ends) < turns:
        raise AssertionError(
            f"{turns} assistant turn(s) but {len(trained_ends)} trained end-of-turn token(s): "
            "the end-of-turn token must be trained (not masked), or the model never learns "
            "to stop"
        )


def check_chat_template(tokenizer: Any, directory: str | Path) -> list[str]:
    """Check that ``tokenizer.tokenize_messages`` renders conversations exactly as
    transformers' ``apply_chat_template`` does with the tokenizer files in
    ``directory``, and trains every assistant turn's end-of-turn token."""
    from tunesmith.data import Message

    report = _Report(f"chat format of {type(tokenizer).__name__}")
    try:
        import transformers
    except ImportError:
        with report.check("apply_chat_template"):
            raise _Skip("transformers is not installed") from None
        return report.finish()
    reference = transformers.AutoTokenizer.from_pretrained(str(directory))
    for index, conversation in enumerate(CONVERSATIONS):
        with report.check(f"conversation {index}"):
            turns = list(conversation)
            try:
                wanted = _apply(reference, turns)
            except Exception:  # a template without a system role: drop it
                turns = [t for t in turns if t[0] != "system"]
                wanted = _apply(reference, turns)
            messages = [Message(role, text, masked=role != "assistant") for role, text in turns]
            tokens, mask = tokenizer.tokenize_messages(messages)
            if tokens != wanted:
                raise AssertionError(
                    f"ids differ from apply_chat_template: {reference.decode(tokens)!r} != "
                    f"{reference.decode(wanted)!r}"
                )
            _end_of_turn_trained(tokenizer, tokens, mask, sum(r == "assistant" for r, _ in turns))
        with report.check(f"generation prompt {index}"):
            # What comes before the first answer (a system message, if kept, and a user turn).
            prompt = turns[: next(i for i, t in enumerate(turns) if t[0] == "assistant")]
            wanted = _apply(reference, prompt, add_generation_prompt=True)
            messages = [Message(role, text, masked=True) for role, text in prompt]
            tokens, _ = tokenizer.tokenize_messages(messages, add_generation_prompt=True)
            if tokens != wanted:
                raise AssertionError(
                    f"generation prompt differs from apply_chat_template: "
                    f"{reference.decode(tokens)!r} != {reference.decode(wanted)!r}"
                )
    return report.finish()


def _apply(reference: Any, turns: list[tuple[str, str]], **kwargs: Any) -> list[int]:
    messages = [{"role": role, "content": text} for role, text in turns]
    ids = reference.apply_chat_template(messages, tokenize=True, **kwargs)
    if isinstance(ids, Mapping) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


# ---- datasets, quantizers, evaluators ------------------------------------------------


def check_dataset(
    name: str, tokenizer: Any, *, registry: Any = None, **dataset_block: Any
) -> list[str]:
    """Check a dataset builder: ``builder(tokenizer, **dataset_block)`` satisfies
    :class:`~tunesmith.protocols.TrainingDataset`, is not empty, and every sample has
    equal-length ``tokens`` and ``labels``, ids in the vocabulary, labels equal to the
    tokens or -100, and at least one trained label."""
    from tunesmith.data import CROSS_ENTROPY_IGNORE_IDX

    registry = _registry(registry)
    report = _Report(f"dataset '{name}'")
    dataset = registry.get("datasets", name).builder(tokenizer, **dataset_block)
    with report.check("protocol"):
        _conforms(dataset, TrainingDataset)
    with report.check("samples"):
        if len(dataset) == 0:
            raise AssertionError("the dataset is empty")
        for index in range(min(len(dataset), 16)):
            sample = dataset[index]
            tokens, labels = sample["tokens"], sample["labels"]
            if len(tokens) != len(labels):
                raise AssertionError(f"sample {index}: {len(tokens)} tokens, {len(labels)} labels")
            if any(not 0 <= t < tokenizer.vocab_size for t in tokens):
                raise AssertionError(f"sample {index}: ids outside the vocabulary")
            if any(
                lab not in (tok, CROSS_ENTROPY_IGNORE_IDX)
                for tok, lab in zip(tokens, labels, strict=True)
            ):
                raise AssertionError(f"sample {index}: a label is neither its token nor -100")
            if all(lab == CROSS_ENTROPY_IGNORE_IDX for lab in labels):
                raise AssertionError(f"sample {index} trains no token")
    return report.finish()


def check_quantizer(
    name: str,
    *,
    quantizer_block: Mapping[str, Any] | None = None,
    max_relative_error: float = 0.5,
    work_dir: str | Path | None = None,
    registry: Any = None,
) -> list[str]:
    """Check a quantizer on a tiny model: it satisfies
    :class:`~tunesmith.protocols.ModelQuantizer`, quantizes at least one weight on the
    CPU, and the logits stay within ``max_relative_error`` (max abs error over the
    logits' max abs value)."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    registry = _registry(registry)
    report = _Report(f"quantizer '{name}'")
    quantizer = registry.get("quantizers", name).builder(**dict(quantizer_block or {}))
    with report.check("protocol"):
        _conforms(quantizer, ModelQuantizer)
    with _work_dir(work_dir) as root, report.check("quantize"):
        model, checkpointer = _load_native(_tiny_model_dir(Path(root), registry))
        tokens = _tokens(int(checkpointer.hf_config["vocab_size"]), 2, 16, seed=4)
        before = _logits(model, tokens)
        with torch.no_grad():
            model = quantizer.quantize(model, "cpu")
        changed = [
            n for n, p in model.named_parameters()
            if is_traceable_wrapper_subclass(p) or p.dtype not in (torch.float32, torch.bfloat16)
        ]  # fmt: skip
        if not changed:
            raise AssertionError("quantize() left every weight as it was")
        error = _max_diff(_logits(model, tokens), before) / before.abs().max().item()
        if not error <= max_relative_error:
            raise AssertionError(f"logits moved by {error:.1%} of their scale")
    return report.finish()


def check_evaluator(
    name: str,
    model: Any,
    tokenizer: Any,
    *,
    evaluator_block: Mapping[str, Any] | None = None,
    registry: Any = None,
) -> list[str]:
    """Check an evaluator: it satisfies :class:`~tunesmith.protocols.ModelEvaluator`
    and ``evaluate(model, tokenizer)`` returns a non-empty dict that ``json.dumps``
    accepts (it goes into the results file)."""
    import json

    registry = _registry(registry)
    report = _Report(f"evaluator '{name}'")
    evaluator = registry.get("evaluators", name).builder(**dict(evaluator_block or {}))
    with report.check("protocol"):
        _conforms(evaluator, ModelEvaluator)
    with report.check("evaluate"):
        results = evaluator.evaluate(model, tokenizer)
        if not isinstance(results, dict) or not results:
            raise AssertionError(f"evaluate() returned {type(results).__name__}, not a dict")
        json.dumps(results, default=str)
    return report.finish()


def check_configs(plugin: str, *, registry: Any = None) -> list[str]:
    """Check every config ``plugin`` ships: it loads, names a registered recipe (or
    declares the distribution that registers it in ``Config.requires``) and passes
    ``validate`` against that recipe, and its first line is a comment."""
    from tunesmith.config import load_recipe_config

    registry = _registry(registry)
    report = _Report(f"configs of '{plugin}'")
    for config in registry.values("configs"):
        if config.origin.plugin != plugin:
            continue
        with report.check(config.name):
            if not config.read_text().startswith("#"):
                raise AssertionError("does not open with a comment showing how to run it")
            if config.recipe not in registry.tables["recipes"]:
                if config.requires:
                    raise _Skip(f"recipe {config.recipe} comes with {config.requires}")
                raise AssertionError(f"names recipe {config.recipe}, which nothing registers")
            recipe = registry.get("recipes", config.recipe)
            load_recipe_config(config.name, recipe)
    return report.finish()


# ---- a whole plugin -------------------------------------------------------------------


def check_plugin(
    plugin: str, *, work_dir: str | Path | None = None, registry: Any = None
) -> dict[str, list[str]]:
    """Run every check that applies to what ``plugin`` registered: families with a
    ``tiny_config`` (:func:`check_family`), PEFT methods, quantizers, the builder
    protocols of tokenizers and datasets that need no files, and its configs.

    Returns:
        Component -> names of the checks that ran.

    Raises:
        ConformanceError: listing every failure across the plugin.
    """
    registry = _registry(registry)
    info = registry.plugins.get(plugin)
    if info is None:
        from tunesmith.errors import did_you_mean

        raise TunesmithError(
            f"no plugin named '{plugin}'{did_you_mean(plugin, registry.plugins)}: run "
            "`tunesmith plugins` to see the installed ones"
        )
    if info.error:
        raise ConformanceError(f"plugin '{plugin}' did not load: {info.error}")
    results: dict[str, list[str]] = {}
    failures: list[str] = []

    def run(component: str, check: Any, *args: Any, **kwargs: Any) -> None:
        try:
            results[component] = check(*args, **kwargs)
        except ConformanceError as exc:
            failures.extend(str(exc).splitlines()[1:])
        except _Skip as skip:
            results[component] = [f"skipped: {skip}"]

    with _work_dir(work_dir) as root:
        for family in info.components.get("checkpoint_adapters", []):
            adapter = registry.get("checkpoint_adapters", family)
            if adapter.tiny_config is not None:
                run(f"family {family}", check_family, family, work_dir=Path(root) / family,
                    registry=registry, checks=FAMILY_CHECKS)  # fmt: skip
        for name in info.components.get("peft_methods", []):
            run(f"peft {name}", check_peft_method, name, work_dir=Path(root) / name,
                registry=registry)  # fmt: skip
        for name in info.components.get("quantizers", []):
            run(f"quantizer {name}", _quantizer_here, name, Path(root), registry)
        if info.components.get("configs"):
            run("configs", check_configs, plugin, registry=registry)
    if failures:
        raise ConformanceError(
            f"{len(failures)} conformance check(s) failed:\n" + "\n".join(failures)
        )
    return results


def _quantizer_here(name: str, root: Path, registry: Any) -> list[str]:
    """check_quantizer, skipping a quantizer that cannot run without extra packages."""
    try:
        return check_quantizer(name, work_dir=root / name, registry=registry)
    except ConformanceError as exc:
        if "torchao" in str(exc) and "not installed" in str(exc):
            raise _Skip("torchao is not installed") from None
        raise
