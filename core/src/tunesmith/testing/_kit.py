"""The conformance kit: checks a plugin's components do what the core relies on.

Each ``check_*`` function runs a set of named checks and raises
:class:`ConformanceError` listing every one that failed, naming the component and
what differed; it returns the names of the checks that ran. Checks against a
reference (transformers, PEFT) run when the reference knows the component, e.g.
when transformers has the checkpoint's ``model_type``; they are skipped otherwise
and the returned names say so (``"logits (skipped: ...)"``).

From a plugin's tests, one line each::

    from tunesmith.testing import check_family
    def test_conformance(tmp_path):
        check_family("acme", work_dir=tmp_path)

From the command line: ``tunesmith plugins check acme``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import TunesmithError

__all__ = ["ConformanceError", "check_family", "reference_checkpoint"]

FAMILY_CHECKS = ("round_trip", "kv_cache", "packing", "logits", "bf16", "generation", "lora")
_FP32_ATOL = 1e-4


class ConformanceError(TunesmithError, AssertionError):
    """One or more conformance checks failed; the message has one line per failure."""


@dataclass
class _Report:
    component: str
    ran: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def check(self, name: str) -> Iterator[None]:
        try:
            yield
        except _Skip as skip:
            self.ran.append(f"{name} (skipped: {skip})")
            return
        except Exception as exc:  # every failure is reported, the other checks still run
            self.failures.append(f"{self.component}: {name}: {exc}")
            return
        self.ran.append(name)

    def finish(self) -> list[str]:
        if self.failures:
            raise ConformanceError(
                f"{len(self.failures)} conformance check(s) failed:\n"
                + "\n".join(f"  - {f}" for f in self.failures)
            )
        return self.ran


class _Skip(Exception):
    """A check that cannot run here (no reference implementation)."""


# ---- helpers --------------------------------------------------------------------


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _expect_close(what: str, ours: torch.Tensor, reference: torch.Tensor, atol: float) -> None:
    if ours.shape != reference.shape:
        raise AssertionError(f"{what}: shape {tuple(ours.shape)} != {tuple(reference.shape)}")
    diff = _max_diff(ours, reference)
    if not diff <= atol:
        raise AssertionError(f"{what} differ by {diff:.3g} (tolerance {atol:g})")


def _tokens(vocab: int, batch: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _logits(model: Any, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens, **kwargs)
    return out if isinstance(out, torch.Tensor) else out.logits


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's settings: a multimodal config nests them in ``text_config``."""
    text = config.get("text_config")
    return text if isinstance(text, Mapping) else config


def _seq_len(config: Mapping[str, Any]) -> int:
    """Long enough to cross a sliding window or a RoPE scaling threshold, if small."""
    lengths = [24]
    for key in ("sliding_window", "original_max_position_embeddings"):
        value = config.get(key) or (config.get("rope_parameters") or {}).get(key)
        if isinstance(value, int) and value < 200:
            lengths.append(value + 8)
    return min(max(lengths), int(config.get("max_position_embeddings", 256)))


def _transformers_config(config: Mapping[str, Any]) -> Any:
    """transformers' config for ``config``, or raise :class:`_Skip`."""
    try:
        import transformers
    except ImportError:
        raise _Skip("transformers is not installed") from None
    rest = {k: v for k, v in config.items() if k != "model_type"}
    try:
        return transformers.AutoConfig.for_model(str(config["model_type"]), **rest)
    except (KeyError, ValueError):
        raise _Skip(f"transformers has no model_type {config['model_type']!r}") from None


@torch.no_grad()
def reference_checkpoint(directory: str | Path, config: Mapping[str, Any], *, seed: int = 0) -> Any:
    """Write a random transformers model of ``config`` to ``directory`` and return it
    (eval mode, fp32). Norm weights are ``1 + 0.1 * noise``, every other tensor
    ``0.02 * noise``, so misplaced norms and offsets show.

    Raises:
        _Skip: transformers does not know the ``model_type``.
    """
    import transformers

    transformers.utils.logging.disable_progress_bar()
    hf_config = _transformers_config(config)
    model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        param.copy_(1.0 + 0.1 * noise if "norm" in name else 0.02 * noise)
    model.save_pretrained(directory)
    return model.eval()


def _load_native(directory: Path) -> tuple[Any, Any]:
    from tunesmith.checkpoint import Checkpointer

    checkpointer = Checkpointer(directory)
    return checkpointer.load_model().eval(), checkpointer


# ---- families ---------------------------------------------------------------------


def check_family(
    family: str,
    *,
    configs: Sequence[Mapping[str, Any]] | None = None,
    checks: Sequence[str] = FAMILY_CHECKS,
    work_dir: str | Path | None = None,
    atol: float = _FP32_ATOL,
    registry: Any = None,
) -> list[str]:
    """Check a model family's checkpoint adapter and models.

    Checks, for each config:

    - ``round_trip``: an HF checkpoint read into the native model and written back
      gives the same tensors under the same names, and native -> HF -> native too.
    - ``kv_cache``: decoding token by token with the KV cache gives the logits of one
      full forward pass.
    - ``packing``: two documents packed in one row (a block-causal mask, positions
      restarting) give the logits of each document alone, and a
      :class:`~tunesmith.modules.DocumentMask` gives those of the dense mask.
    - ``logits``: the native model's logits equal transformers' model of the same
      ``model_type`` on the same checkpoint (a sequence longer than a small sliding
      window or RoPE threshold).
    - ``bf16``: in bfloat16, the native logits' error against transformers' fp32 logits
      is at most 1.5x transformers' own bf16 error, and the native bf16 logits agree
      with transformers' bf16 logits to within half that error (a norm or RoPE that
      casts in another order than the reference shows here, not in fp32).
    - ``generation``: greedy ids equal transformers' ``generate``, one prompt and a
      left-padded batch, with and without the KV cache.
    - ``lora``: one training step of the installed LoRA method (by its declared
      ``peft_type``), whose saved adapter loads in ``peft.PeftModel`` with equal
      logits, and whose merged weights load in transformers with equal logits.

    Args:
        family: The checkpoint adapter's family name.
        configs: Tiny ``config.json`` dicts to test; default ``[adapter.tiny_config()]``.
        checks: Which checks to run.
        work_dir: Where to write checkpoints (default: a temporary directory).
        atol: fp32 tolerance on logits.
        registry: Default: :func:`tunesmith.get_registry`.

    Returns:
        The names of the checks that ran (skipped ones say why).

    Raises:
        ConformanceError: listing every failed check.
    """
    if registry is None:
        from tunesmith.registry import get_registry

        registry = get_registry()
    adapter = registry.get("checkpoint_adapters", family)
    if configs is None:
        if adapter.tiny_config is None:
            raise ConformanceError(
                f"checkpoint adapter '{family}' has no tiny_config: pass configs=[...] or "
                "declare tiny_config in its CheckpointAdapter"
            )
        configs = [adapter.tiny_config()]
    unknown = sorted(set(checks) - set(FAMILY_CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}: choose from {FAMILY_CHECKS}")
    report = _Report(f"family '{family}'")
    with _work_dir(work_dir) as root:
        for index, config in enumerate(configs):
            _check_one_config(report, Path(root) / f"config_{index}", dict(config), checks, atol)
    return report.finish()


@contextlib.contextmanager
def _work_dir(work_dir: str | Path | None) -> Iterator[str]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield str(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="tunesmith-kit-") as tmp:
        yield tmp


def _check_one_config(
    report: _Report, root: Path, config: dict[str, Any], checks: Sequence[str], atol: float
) -> None:
    from tunesmith.testing._tiny import write_tiny_checkpoint

    label = f"[{config.get('model_type')} #{root.name.rpartition('_')[2]}]"
    source = root / "source"
    reference, why, loaded = None, "", []
    with report.check(f"load {label}"):
        try:
            reference = reference_checkpoint(source, config, seed=0)
        except _Skip as skip:
            why = str(skip)
            write_tiny_checkpoint(source, config, seed=0)
        loaded.extend(_load_native(source))
    if not loaded:
        return
    model, checkpointer = loaded
    config = dict(_text_config(config))  # below, the checks read vocab size and windows
    if "round_trip" in checks:
        with report.check(f"round_trip {label}"):
            _round_trip(model, checkpointer, source)
    if "kv_cache" in checks:
        with report.check(f"kv_cache {label}"):
            _kv_cache(model, config)
    if "packing" in checks:
        with report.check(f"packing {label}"):
            _packing(model, config)
    for name, run in (
        ("logits", lambda: _reference_logits(model, reference, config, atol)),
        ("bf16", lambda: _bf16(checkpointer, reference, config)),
        ("generation", lambda: _greedy(model, reference, config)),
        ("lora", lambda: _lora(model, reference, checkpointer, root, config, atol)),
    ):
        if name in checks:
            with report.check(f"{name} {label}"):
                if reference is None:
                    raise _Skip(why)
                run()


def _round_trip(model: Any, checkpointer: Any, source: Path) -> None:
    from tunesmith.checkpoint import load_hf_state_dict

    original = load_hf_state_dict(source)
    written = checkpointer.to_hf(model.state_dict())
    if set(written) != set(original):
        missing = sorted(set(original) - set(written))[:3]
        extra = sorted(set(written) - set(original))[:3]
        raise AssertionError(
            f"HF -> native -> HF changes the key set (lost: {missing}, added: {extra})"
        )
    changed = [
        k for k in original if not torch.equal(original[k], written[k].to(original[k].dtype))
    ]
    if changed:
        raise AssertionError(f"HF -> native -> HF changes tensors {changed[:3]}")
    native = checkpointer.adapter.hf_to_native_state_dict(written, checkpointer.hf_config)
    state = model.state_dict()
    if set(native) != set(state):
        raise AssertionError(
            "native -> HF -> native changes the key set "
            f"(lost: {sorted(set(state) - set(native))[:3]}, "
            f"added: {sorted(set(native) - set(state))[:3]})"
        )
    changed = [k for k in state if not torch.equal(state[k], native[k])]
    if changed:
        raise AssertionError(f"native -> HF -> native changes tensors {changed[:3]}")


def _self_check_len(model: Any, config: Mapping[str, Any]) -> int:
    """:func:`_seq_len`, capped where a RoPE of ``model`` switches tables (LongRoPE).

    Such a RoPE picks its tables by the largest position in a call (as transformers
    does), so cached keys keep the tables of their own call and packed documents get
    the tables of the whole pack: a cached decode or a pack that crosses the switch
    differs from one full pass of each document by design. The checks comparing the
    model with itself stay below it; those against transformers cross it.
    """
    from tunesmith.modules import RotaryPositionalEmbeddings

    switches = [
        m.original_max_position_embeddings
        for m in model.modules()
        if isinstance(m, RotaryPositionalEmbeddings) and m.original_max_position_embeddings
    ]
    return min([_seq_len(config), *switches])


def _kv_cache(model: Any, config: Mapping[str, Any]) -> None:
    seq = _self_check_len(model, config)
    tokens = _tokens(int(config["vocab_size"]), 1, seq, seed=5)
    full = _logits(model, tokens)
    prefix = seq // 2
    model.setup_caches(1, next(model.parameters()).dtype, max_seq_len=seq)
    try:
        steps = [_logits(model, tokens[:, :prefix])]
        steps += [_logits(model, tokens[:, i : i + 1]) for i in range(prefix, seq)]
    finally:
        model.remove_caches()
    _expect_close("logits with the KV cache and without", torch.cat(steps, dim=1), full, 1e-4)


def _packing(model: Any, config: Mapping[str, Any]) -> None:
    vocab, seq = int(config["vocab_size"]), _self_check_len(model, config)
    first, second = _tokens(vocab, 1, seq - 5, seed=4), _tokens(vocab, 1, 5, seed=6)
    total = first.shape[1] + second.shape[1]
    block = torch.zeros(total, total, dtype=torch.bool)
    block[: first.shape[1], : first.shape[1]] = True
    block[first.shape[1] :, first.shape[1] :] = True
    mask = (torch.ones(total, total, dtype=torch.bool).tril() & block)[None]  # (1, s, s)
    positions = torch.cat([torch.arange(first.shape[1]), torch.arange(second.shape[1])])[None]
    packed = _logits(model, torch.cat([first, second], dim=1), mask=mask, input_pos=positions)
    _expect_close("packed and separate logits of the first document",
                  packed[:, : first.shape[1]], _logits(model, first), 1e-4)  # fmt: skip
    _expect_close("packed and separate logits of the second document",
                  packed[:, first.shape[1] :], _logits(model, second), 1e-4)  # fmt: skip
    from tunesmith.modules import DocumentMask

    documents = DocumentMask(((first.shape[1], second.shape[1]),))
    _expect_close("packed logits with a DocumentMask and with the dense mask",
                  _logits(model, torch.cat([first, second], dim=1), mask=documents,
                          input_pos=positions), packed, 1e-4)  # fmt: skip


def _reference_logits(model: Any, reference: Any, config: Mapping[str, Any], atol: float) -> None:
    tokens = _tokens(int(config["vocab_size"]), 2, _seq_len(config), seed=1)
    expected = _logits(reference, tokens)
    if not expected.std() > 1e-3:
        raise AssertionError("the reference logits are constant: the tiny config is degenerate")
    _expect_close("logits and transformers'", _logits(model, tokens), expected, atol)


def _bf16(checkpointer: Any, reference: Any, config: Mapping[str, Any]) -> None:
    import transformers

    tokens = _tokens(int(config["vocab_size"]), 2, _seq_len(config), seed=1)
    exact = _logits(reference, tokens)
    source = checkpointer.checkpoint_dir
    theirs = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    reference_error = _max_diff(_logits(theirs.eval(), tokens), exact)
    ours = _logits(checkpointer.load_model(dtype=torch.bfloat16).eval(), tokens)
    our_error = _max_diff(ours, exact)
    if not our_error <= 1.5 * reference_error + 1e-6:
        raise AssertionError(
            f"bf16 logits are off by {our_error:.3g} from transformers' fp32 ones, more than "
            f"1.5x transformers' own bf16 error ({reference_error:.3g})"
        )
    disagreement = _max_diff(ours, _logits(theirs, tokens))
    if not disagreement <= 0.5 * reference_error + 1e-6:
        raise AssertionError(
            f"bf16 logits differ from transformers' bf16 ones by {disagreement:.3g}, as much "
            f"as bf16's own error ({reference_error:.3g}): a norm, RoPE or softmax casts in "
            "another order than the reference (see the cast options of tunesmith.modules)"
        )


def _hf_greedy(
    reference: Any, prompts: list[list[int]], new: int, pad: int, *, use_cache: bool = True
) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    settings = copy.deepcopy(reference.generation_config)
    settings.update(
        eos_token_id=None, pad_token_id=pad, do_sample=False, max_new_tokens=new,
        temperature=None, top_p=None, top_k=None, use_cache=use_cache,
    )  # fmt: skip
    # generate() fills settings left None from the model's own generation_config (its
    # eos_token_id would stop early): make these settings the model's for the call.
    saved, reference.generation_config = reference.generation_config, settings
    try:
        with torch.no_grad():
            out = reference.generate(ids, attention_mask=attention, generation_config=settings)
    finally:
        reference.generation_config = saved
    return out[:, width:].tolist()


def _greedy(model: Any, reference: Any, config: Mapping[str, Any]) -> None:
    from tunesmith.generation import generate_tokens

    vocab = int(config["vocab_size"])
    prompts = [_tokens(vocab, 1, n, seed=10 + n)[0].tolist() for n in (9, 3, 6)]
    new, pad = 8, 0
    for cache in (True, False):
        # Compared with transformers' own cached or uncached generate: the two differ
        # where a RoPE switches tables with the sequence length (LongRoPE).
        wanted = {
            "one prompt": [
                _hf_greedy(reference, [p], new, pad, use_cache=cache)[0] for p in prompts
            ],
            "a left-padded batch": _hf_greedy(reference, prompts, new, pad, use_cache=cache),
        }
        got = {
            "one prompt": [
                generate_tokens(
                    model, [p], max_new_tokens=new, stop_tokens=[], pad_id=pad,
                    enable_kv_cache=cache,
                )[0]
                for p in prompts
            ],
            "a left-padded batch": generate_tokens(
                model, prompts, max_new_tokens=new, stop_tokens=[], pad_id=pad,
                enable_kv_cache=cache,
            ),
        }  # fmt: skip
        for case, ids in got.items():
            if ids != wanted[case]:
                raise AssertionError(
                    f"greedy ids for {case} (KV cache {'on' if cache else 'off'}) differ from "
                    f"transformers' generate: {ids} != {wanted[case]}"
                )


def _lora_method(registry: Any = None) -> Any:
    from tunesmith.peft import peft_method_for

    try:
        return peft_method_for({"peft_type": "LORA", "use_dora": False}, registry=registry)
    except TunesmithError as exc:
        raise _Skip(f"no LoRA method installed ({exc})") from None


def _train_step(model: Any, params: dict[str, Any], vocab: int, seq: int) -> None:
    optimizer = torch.optim.AdamW(params.values(), lr=1e-2)
    tokens = _tokens(vocab, 2, seq, seed=7)
    logits = model(tokens)
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)
    )
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _lora(
    model: Any,
    reference: Any,
    checkpointer: Any,
    root: Path,
    config: Mapping[str, Any],
    atol: float,
) -> None:
    try:
        import peft
        import transformers
    except ImportError:
        raise _Skip("peft is not installed") from None
    from tunesmith.checkpoint import Checkpointer

    method = _lora_method()
    source = checkpointer.checkpoint_dir
    model, _ = _load_native(source)  # a fresh copy: the other checks keep the plain model
    transform = method.builder(
        lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"],
        apply_lora_to_mlp=True,
        lora_rank=4,
        lora_alpha=8,
    )
    transform.apply(model)
    vocab, seq = int(config["vocab_size"]), _seq_len(config)
    model.train()
    _train_step(model, transform.trainable_params(model), vocab, seq)
    model.eval()
    tokens = _tokens(vocab, 2, seq, seed=2)
    ours, base = _logits(model, tokens), _logits(reference, tokens)
    if not _max_diff(ours, base) > 1e-4:
        raise AssertionError(f"one LoRA step with {method.name!r} did not change the logits")
    adapter_dir = transform.save_adapter(
        model, root / "adapter", adapter=checkpointer.adapter,
        base_model_name_or_path=str(source),
    )  # fmt: skip
    fresh = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(fresh, adapter_dir).eval()
    _expect_close(
        "logits with the adapter in PEFT and ours", _logits(peft_model, tokens), ours, atol
    )
    out = Checkpointer(source, root / "run")
    epoch = out.save_epoch(0, transform.merged_state_dict(model))
    merged = transformers.AutoModelForCausalLM.from_pretrained(epoch, dtype=torch.float32).eval()
    _expect_close(
        "merged weights' logits in transformers and ours", _logits(merged, tokens), ours, atol
    )


# ---- shared by the other kits -------------------------------------------------------


def _tiny_model_dir(root: Path, registry: Any) -> Path:
    """A tiny checkpoint of the first installed family with a ``tiny_config``."""
    from tunesmith.testing._tiny import write_tiny_checkpoint

    adapters = [a for a in registry.values("checkpoint_adapters") if a.tiny_config]
    if not adapters:
        raise _Skip("no installed model family offers a tiny_config")
    directory = root / "tiny"
    if not (directory / "config.json").is_file():
        write_tiny_checkpoint(directory, adapters[0].tiny_config(), registry=registry)
    return directory


def _json_safe(value: Any) -> None:
    json.dumps(value)


Check = Callable[[], None]
