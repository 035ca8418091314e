"""Numerical parity with transformers' LlamaForCausalLM on tiny random checkpoints."""

from __future__ import annotations

import pytest
import torch

from tunesmith.registry import reset_registry
from tunesmith.testing import check_family
from tunesmith_llama import tiny_llama_config, write_tiny_llama_checkpoint

transformers = pytest.importorskip("transformers")

VARIANTS = ["llama2", "llama3_1", "llama3_2"]
ATOL = 1e-5


def _hf_model(directory):
    return transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def _tokens(batch=2, seq=24, vocab=512, seed=1):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_conformance_with_transformers_and_peft(tmp_path, monkeypatch):
    """The kit: HF round trip, KV cache, packing, fp32 and bf16 logits, greedy ids and a
    LoRA step loaded in PEFT, for MHA + attention bias, GQA with llama3 RoPE, and tied."""
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama,lora")  # lora: a dependency
    reset_registry()
    configs = [tiny_llama_config("llama2", attention_bias=True)]
    configs += [tiny_llama_config(v) for v in ("llama3_1", "llama3_2")]
    ran = check_family("llama", configs=configs, work_dir=tmp_path)
    assert len(ran) == 3 * 8 and not [r for r in ran if "skipped" in r]


def test_what_llamaforcausallm_reads_beyond_metas_releases(tmp_path):
    """Fine-tunes built on LlamaForCausalLM: YaRN-extended context, MLP biases, another
    activation, and LongRoPE (a sequence past its original context) match transformers."""
    yarn = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0,
            "original_max_position_embeddings": 16}  # fmt: skip
    longrope = {"rope_type": "longrope", "rope_theta": 1e4, "original_max_position_embeddings": 16,
                "short_factor": [1.0] * 8, "long_factor": [2.0 + i / 4 for i in range(8)]}  # fmt: skip
    configs = [
        tiny_llama_config("llama3_2", rope_parameters=yarn, mlp_bias=True,
                          hidden_act="gelu_pytorch_tanh"),  # fmt: skip
        tiny_llama_config("llama2", rope_parameters=longrope),
    ]
    checks = ("round_trip", "kv_cache", "logits", "generation")
    ran = check_family("llama", configs=configs, checks=checks, work_dir=tmp_path)
    assert len(ran) == 2 * 5 and not [r for r in ran if "skipped" in r]


def test_hf_module_names(llama_registry):
    adapter = llama_registry.get("checkpoint_adapters", "llama")
    names = {
        n: adapter.hf_module_name(n) for n in ("q_proj", "output_proj", "w1", "w2", "w3", "output")
    }
    assert names == {
        "q_proj": "q_proj",
        "output_proj": "o_proj",
        "w1": "gate_proj",
        "w2": "down_proj",
        "w3": "up_proj",
        "output": "lm_head",
    }


@pytest.mark.parametrize("variant", ["llama2", "llama3_2"])
def test_kv_cache_decoding_matches_full_forward(tmp_path, load_native, variant):
    model = load_native(write_tiny_llama_checkpoint(tmp_path, variant=variant))
    tokens = _tokens(batch=2, seq=12)
    with torch.no_grad():
        full = model(tokens)
        model.setup_caches(batch_size=2, dtype=torch.float32, max_seq_len=16)
        assert model.caches_are_enabled()
        steps = [model(tokens[:, :8])]  # prefill
        steps += [model(tokens[:, i : i + 1]) for i in range(8, 12)]  # one token at a time
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)

        model.reset_caches()  # the same again after a reset
        torch.testing.assert_close(model(tokens[:, :5]), full[:, :5], atol=ATOL, rtol=0)
        with pytest.raises(RuntimeError, match="KV cache is full"):
            model(torch.zeros(2, 12, dtype=torch.long))
        model.remove_caches()
        assert not model.caches_are_enabled()


def test_left_padded_batch_matches_single_rows(tmp_path, load_native):
    """Rows of different lengths, left-padded, with per-row positions and a padding mask."""
    model = load_native(write_tiny_llama_checkpoint(tmp_path, variant="llama3_1"))
    lengths, total, new = [9, 5, 7], 9, 3
    prompts = [_tokens(batch=1, seq=n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    continuation = _tokens(batch=3, seq=new, seed=20)
    pad = 0
    tokens = torch.full((3, total), pad)
    real = torch.zeros(3, total + new, dtype=torch.bool)  # slot holds a real token
    for row, prompt in enumerate(prompts):
        tokens[row, total - len(prompt) :] = prompt
        real[row, total - len(prompt) :] = True
    positions = (real.cumsum(-1) - 1).clamp(min=0)  # (b, total + new): each row counts from 0
    cache_len = total + new
    causal = torch.ones(cache_len, cache_len, dtype=torch.bool).tril()
    mask = causal[None] & real[:, None, :]  # (b, cache_len, cache_len)

    with torch.no_grad():
        model.setup_caches(3, torch.float32, max_seq_len=cache_len)
        logits = [model(tokens, mask=mask[:, :total], input_pos=positions[:, :total])[:, -1:]]
        for i in range(new):
            slot = total + i
            step = model(
                continuation[:, i : i + 1],
                mask=mask[:, slot : slot + 1],
                input_pos=positions[:, slot : slot + 1],
            )
            logits.append(step)
        batched = torch.cat(logits, dim=1)[:, :new]  # logits predicting each continuation token
        model.remove_caches()
        for row, prompt in enumerate(prompts):
            alone = model(torch.cat([prompt, continuation[row]])[None])[0]
            expected = alone[len(prompt) - 1 : len(prompt) - 1 + new]
            torch.testing.assert_close(batched[row], expected, atol=ATOL, rtol=0)


def test_packed_mask_matches_separate_sequences(tmp_path, load_native):
    """A block-causal mask and restarted positions make packed documents independent."""
    model = load_native(write_tiny_llama_checkpoint(tmp_path, variant="llama2"))
    a, b = _tokens(batch=1, seq=6, seed=4), _tokens(batch=1, seq=4, seed=5)
    packed = torch.cat([a, b], dim=1)
    causal = torch.ones(10, 10, dtype=torch.bool).tril()
    block = torch.zeros(10, 10, dtype=torch.bool)
    block[:6, :6], block[6:, 6:] = True, True
    positions = torch.cat([torch.arange(6), torch.arange(4)])[None]
    with torch.no_grad():
        out = model(packed, mask=(causal & block)[None], input_pos=positions)
        torch.testing.assert_close(out[:, :6], model(a), atol=ATOL, rtol=0)
        torch.testing.assert_close(out[:, 6:], model(b), atol=ATOL, rtol=0)
