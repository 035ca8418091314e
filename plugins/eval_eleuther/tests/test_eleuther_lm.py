"""TunesmithLM through lm_eval: log-likelihoods equal transformers' on the same checkpoint,
rolling log-likelihoods cover every token once, and generation stops where it should."""

from __future__ import annotations

import math

import pytest
from _eleuther_reference import GEN_PROMPTS, MC_DOCS, MC_TEMPLATE, PPL_TEXTS, PPL_WINDOW
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance

from tunesmith_eval_eleuther import TunesmithLM
from tunesmith_eval_eleuther._lm import cut_at_stop

TOL = 1e-4


def _instances(request_type: str, args: list[tuple]) -> list[Instance]:
    return [
        Instance(request_type=request_type, doc={}, arguments=a, idx=i) for i, a in enumerate(args)
    ]


def _by_doc(samples: list[dict]) -> list[dict]:
    return sorted(samples, key=lambda s: s["doc_id"])


def test_loglikelihood_through_lm_eval_equals_transformers(loaded, task_manager, reference):
    """Every (context, choice) request lm_eval makes for tiny_mc is scored as
    LlamaForCausalLM scores it: summed continuation log-probs and the greedy flag."""
    model, tokenizer = loaded
    lm = TunesmithLM(model, tokenizer, batch_size=4)  # 18 requests: batches of mixed lengths
    out = simple_evaluate(model=lm, tasks=["tiny_mc"], task_manager=task_manager, log_samples=True)
    samples = _by_doc(out["samples"]["tiny_mc"])
    assert len(samples) == len(MC_DOCS)
    worst = 0.0
    for sample, lls, greedy in zip(samples, reference.mc_lls, reference.mc_greedy, strict=True):
        got = [resp[0] for resp in sample["resps"]]  # one [(logprob, is_greedy)] per choice
        assert len(got) == len(lls)
        for (logprob, is_greedy), want, want_greedy in zip(got, lls, greedy, strict=True):
            assert logprob == pytest.approx(want, abs=TOL)
            assert is_greedy == want_greedy
            worst = max(worst, abs(logprob - want))
    assert worst < TOL


def test_loglikelihood_batching_and_empty_context(loaded, hf):
    """Batch size does not change a score; an empty context conditions on bos."""
    model, tokenizer = loaded
    requests = [(MC_TEMPLATE.format(q=q), " " + c) for q, cs in MC_DOCS[:3] for c in cs]
    one = TunesmithLM(model, tokenizer, batch_size=1).loglikelihood(
        _instances("loglikelihood", requests)
    )
    many = TunesmithLM(model, tokenizer, batch_size=7).loglikelihood(
        _instances("loglikelihood", requests)
    )
    for (a, ga), (b, gb) in zip(one, many, strict=True):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb

    [(logprob, _)] = TunesmithLM(model, tokenizer).loglikelihood(
        _instances("loglikelihood", [("", "Hello world")])
    )
    want = float(hf.logprobs(hf.encode("Hello world")).sum())  # log p(Hello world | bos)
    assert logprob == pytest.approx(want, abs=TOL)


def test_greedy_flag_marks_the_models_own_continuation(loaded):
    from tunesmith.generation import generate_tokens

    model, tokenizer = loaded
    context = tokenizer.encode("The lighthouse keeper wrote", add_bos=True, add_eos=False)
    [greedy] = generate_tokens(model, [context], max_new_tokens=4)
    other = [*greedy[:-1], (greedy[-1] + 1) % tokenizer.vocab_size]
    lm = TunesmithLM(model, tokenizer)
    (lp_greedy, is_greedy), (lp_other, is_other) = lm._loglikelihood_tokens(
        [(None, context, greedy), (None, context, other)]
    )
    assert is_greedy and not is_other
    assert lp_greedy > lp_other


def test_long_context_keeps_its_end(loaded, hf):
    """A context longer than max_seq_len is left-truncated, as lm_eval's HF model does."""
    model, tokenizer = loaded
    context, continuation = "The quick brown fox jumps over the lazy dog while the cat", " watches"
    lm = TunesmithLM(model, tokenizer, max_seq_len=6)
    [(logprob, greedy)] = lm.loglikelihood(_instances("loglikelihood", [(context, continuation)]))
    want, want_greedy = hf.continuation(context, continuation, max_len=6)
    assert logprob == pytest.approx(want, abs=TOL)
    assert greedy == want_greedy
    full, _ = hf.continuation(context, continuation)
    assert abs(full - want) > 1e-3  # the truncation mattered


def test_loglikelihood_rolling_sums_every_token(loaded, hf):
    """One window: the sum of log p(t_i | bos, t_<i) over the whole encoded text (bos
    first, as lm_eval encodes it). Short windows: every token still predicted exactly
    once, each window as transformers scores it."""
    model, tokenizer = loaded
    texts = list(PPL_TEXTS)
    lm = TunesmithLM(model, tokenizer, batch_size=2)
    got = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in texts]))
    for text, logprob in zip(texts, got, strict=True):
        whole = [hf.tokenizer.bos_token_id, *hf.encode(text)]
        assert logprob == pytest.approx(float(hf.logprobs(whole).sum()), abs=TOL)

    lm = TunesmithLM(model, tokenizer, batch_size=2, max_seq_len=PPL_WINDOW)
    got = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in texts]))
    for text, logprob in zip(texts, got, strict=True):
        assert logprob == pytest.approx(hf.rolling(text, PPL_WINDOW), abs=TOL)
    assert len(hf.encode(texts[1])) > 2 * PPL_WINDOW  # it did span several windows


@pytest.mark.parametrize(
    "adds_bos, dtype",
    [(True, "fp32"), (False, "fp32"), (True, "bf16")],
    ids=["adds-bos", "bos-never-added", "bf16"],
)
def test_requests_score_as_lm_evals_own_hf_model(tmp_path, checkpoint, adds_bos, dtype):
    """The numbers of lm_eval's HF model (HFLM) on the same checkpoint, request by
    request: contexts and continuations, an empty context, and rolling windows — with a
    tokenizer that adds bos, one that has a bos token it never adds (HFLM then still
    conditions on bos, not eos), and in bf16 (log-softmax in bf16, as HFLM takes it)."""
    import json
    import shutil

    from lm_eval.models.huggingface import HFLM

    import tunesmith

    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoint, directory)
    if not adds_bos:
        tokenizer_json = directory / "tokenizer.json"
        tokenizer_json.write_text(
            json.dumps({**json.loads(tokenizer_json.read_text()), "post_processor": None})
        )
    theirs = HFLM(pretrained=str(directory), batch_size=2, device="cpu",
                  dtype={"fp32": "float32", "bf16": "bfloat16"}[dtype], max_length=PPL_WINDOW)  # fmt: skip
    model, tokenizer = tunesmith.load_pretrained(directory, dtype=dtype, device="cpu")
    ours = TunesmithLM(model, tokenizer, batch_size=2, max_seq_len=PPL_WINDOW)
    assert (ours.prefix_token_id, ours.tok_encode("Hello")) == (
        theirs.prefix_token_id,
        theirs.tok_encode("Hello"),
    )
    pairs = [(MC_TEMPLATE.format(q=MC_DOCS[0][0]), " Paris"), ("", "Hello world!")]
    for request_type, args in [("loglikelihood", pairs),
                               ("loglikelihood_rolling", [(t,) for t in PPL_TEXTS])]:  # fmt: skip
        want = getattr(theirs, request_type)(_instances(request_type, args))
        got = getattr(ours, request_type)(_instances(request_type, args))
        if request_type == "loglikelihood":  # (log-prob, greedy?) pairs
            assert [greedy for _, greedy in got] == [greedy for _, greedy in want]
            got, want = [lp for lp, _ in got], [lp for lp, _ in want]
        assert got == pytest.approx(want, abs=TOL)


def test_rolling_task_perplexity_through_lm_eval(loaded, task_manager, reference):
    """lm_eval's byte perplexity of tiny_ppl equals exp(-sum log p / bytes) by hand."""
    model, tokenizer = loaded
    lm = TunesmithLM(model, tokenizer, max_seq_len=PPL_WINDOW)
    out = simple_evaluate(model=lm, tasks=["tiny_ppl"], task_manager=task_manager, log_samples=True)
    result = out["results"]["tiny_ppl"]
    assert result["byte_perplexity,none"] == pytest.approx(reference.byte_perplexity, rel=1e-5)
    lls = [s["resps"][0][0] for s in _by_doc(out["samples"]["tiny_ppl"])]
    assert lls == pytest.approx(reference.ppl_lls, abs=TOL)
    assert math.isfinite(result["word_perplexity,none"])


def test_generate_until_through_lm_eval(loaded, task_manager, reference):
    """tiny_gen's answers are greedy tunesmith.generate output cut before the task's
    `until` string, or max_gen_toks tokens where it never appears."""
    model, tokenizer = loaded
    lm = TunesmithLM(model, tokenizer, batch_size=2)
    out = simple_evaluate(model=lm, tasks=["tiny_gen"], task_manager=task_manager, log_samples=True)
    answers = [s["resps"][0][0] for s in _by_doc(out["samples"]["tiny_gen"])]
    assert answers == reference.gen_expected
    cut = [a != full for a, full in zip(answers, reference.gen_full, strict=True)]
    assert not all(cut), "some answer runs to max_gen_toks"
    assert any(a and c for a, c in zip(answers, cut, strict=True)), "some answer is cut mid-way"
    for answer, full in zip(answers, reference.gen_full, strict=True):
        assert reference.gen_until not in answer
        assert full.startswith(answer)
    # exact_match: even docs' targets are the expected answers, odd ones are "no".
    even = len(range(0, len(GEN_PROMPTS), 2))
    assert out["results"]["tiny_gen"]["exact_match,none"] == pytest.approx(even / len(GEN_PROMPTS))


def test_generate_until_per_request_settings(loaded):
    """Requests with different settings in one call: each gets its own until and
    max_gen_toks, in the original order."""
    import tunesmith

    model, tokenizer = loaded
    prompt = GEN_PROMPTS[1]
    full = tunesmith.generate(model, tokenizer, prompt, chat_format=False, max_new_tokens=12)
    ids = tokenizer.encode(full, add_bos=False, add_eos=False)
    stop = full[3:5]
    requests = [
        (prompt, {"until": [stop], "max_gen_toks": 12}),
        (prompt, {"until": "never-appears", "max_gen_toks": 3, "do_sample": False}),
        (GEN_PROMPTS[0], {"until": ["\n\n"], "max_gen_toks": 12}),
    ]
    got = TunesmithLM(model, tokenizer, batch_size=8).generate_until(
        _instances("generate_until", requests)
    )
    assert got[0] == cut_at_stop(full, [stop]) and len(got[0]) <= 3 + len(full.split(stop)[0])
    assert got[1] == tunesmith.generate(
        model, tokenizer, prompt, chat_format=False, max_new_tokens=3
    )
    assert len(tokenizer.encode(got[1], add_bos=False, add_eos=False)) <= 3 < len(ids)
    assert got[2] == cut_at_stop(
        tunesmith.generate(model, tokenizer, GEN_PROMPTS[0], chat_format=False, max_new_tokens=12),
        ["\n\n"],
    )


def test_cut_at_stop_takes_the_earliest():
    assert cut_at_stop("abc. def\nghi", ["\n", "."]) == "abc"
    assert cut_at_stop("abc", ["", "x"]) == "abc"


def test_chat_template_round_trips_through_text(loaded):
    """lm_eval gets chat-formatted prompts as text; encoding that text gives back the
    family's chat-format ids (one bos, special tokens as single ids)."""
    from tunesmith.generation import to_messages, tokenize_prompt

    model, tokenizer = loaded
    lm = TunesmithLM(model, tokenizer)
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    text = lm.apply_chat_template(history)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system")
    assert lm.tok_encode(text) == tokenize_prompt(tokenizer, to_messages(history))
    # A final assistant message (lm_eval's gen_prefix) is continued, not closed.
    prefill = [*history, {"role": "assistant", "content": "The answer is"}]
    text = lm.apply_chat_template(prefill, add_generation_prompt=False)
    assert text.endswith("The answer is")
    assert lm.tok_encode(text) == tokenize_prompt(tokenizer, to_messages(prefill))
    assert lm.chat_template(True) and lm.chat_template(False) is None


def test_chat_template_through_lm_eval(loaded, task_manager):
    """With apply_chat_template the model is asked in the chat format."""
    model, tokenizer = loaded
    lm = TunesmithLM(model, tokenizer)
    out = simple_evaluate(
        model=lm,
        tasks=["tiny_mc"],
        task_manager=task_manager,
        apply_chat_template=True,
        log_samples=True,
        limit=2,
    )
    sample = _by_doc(out["samples"]["tiny_mc"])[0]
    context = sample["arguments"][0][0]
    assert context.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    assert 0.0 <= out["results"]["tiny_mc"]["acc,none"] <= 1.0


def test_thinking_settings_render_and_cut_as_lm_evals_own_hf_model(tmp_path, checkpoint, loaded):
    """enable_thinking and chat_template_args reach the chat template as HFLM passes them;
    think_end_token (text or id) cuts the answer as HFLM cuts it; what HFLM refuses is
    refused."""
    import copy
    import json
    import shutil

    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import postprocess_generated_text

    import tunesmith
    from tunesmith import ConfigError
    from tunesmith.testing import LLAMA3_CHAT_TEMPLATE

    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoint, directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["chat_template"] = LLAMA3_CHAT_TEMPLATE + (
        "{% if add_generation_prompt and enable_thinking is defined and not enable_thinking %}"
        "{{ '<think>\n\n</think>\n\n' }}{% endif %}{{ tail | default('') }}"
    )
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    model, tokenizer = tunesmith.load_pretrained(directory, dtype="fp32", device="cpu")
    history = [{"role": "user", "content": "What is 2+2?"}]
    for settings in ({}, {"enable_thinking": False, "chat_template_args": {"tail": "Sure:"}}):
        theirs = HFLM(pretrained=str(directory), device="cpu", dtype="float32", **settings)
        ours = TunesmithLM(model, tokenizer, **settings)
        assert ours.apply_chat_template(history) == theirs.apply_chat_template(history)
    assert ours.apply_chat_template(history).endswith("<think>\n\n</think>\n\nSure:")
    assert tokenizer.chat_template_kwargs == {}  # the caller's tokenizer is left as it was

    model, tokenizer = loaded
    prompt = GEN_PROMPTS[1]
    ids = tokenizer.encode(
        tunesmith.generate(model, tokenizer, prompt, chat_format=False, max_new_tokens=12),
        add_bos=False,
        add_eos=False,
    )
    full = tokenizer.decode(ids)
    request = _instances("generate_until", [(prompt, {"until": ["never"], "max_gen_toks": 12})])
    word = full.split()[len(full.split()) // 2]
    cut = TunesmithLM(model, tokenizer, think_end_token=word).generate_until(request)
    assert cut == [postprocess_generated_text(full, ["never"], word)] and cut != [full]
    token = ids[len(ids) // 2]
    last = max(i for i, t in enumerate(ids) if t == token)
    cut = TunesmithLM(model, tokenizer, think_end_token=str(token)).generate_until(request)
    assert cut == [tokenizer.decode(ids[last + 1 :]).lstrip()]

    with pytest.raises(ConfigError, match=r"enable_thinking=true needs think_end_token"):
        TunesmithLM(model, tokenizer, enable_thinking=True)
    thinking = TunesmithLM(model, tokenizer, enable_thinking=True, think_end_token="</think>")
    with pytest.raises(ConfigError, match=r"enable_thinking=true is for generative tasks only"):
        thinking.loglikelihood(_instances("loglikelihood", [("2+2=", " 4")]))
    plain = copy.copy(tokenizer)
    plain.chat_template = None
    with pytest.raises(ConfigError, match=r"does not render a chat template: remove them"):
        TunesmithLM(model, plain, enable_thinking=False)


def test_a_tasks_repetition_penalty_applies_as_in_lm_evals_hf_model(loaded):
    """HFLM hands generation_kwargs to transformers' generate, which applies
    repetition_penalty greedy or not; so does TunesmithLM."""
    import tunesmith

    model, tokenizer = loaded
    prompt = GEN_PROMPTS[1]
    kwargs = {"until": ["never"], "max_gen_toks": 8, "repetition_penalty": 8.0}
    [got] = TunesmithLM(model, tokenizer).generate_until(
        _instances("generate_until", [(prompt, kwargs)])
    )
    want = tunesmith.generate(
        model, tokenizer, prompt, chat_format=False, max_new_tokens=8, repetition_penalty=8.0
    )
    plain = tunesmith.generate(model, tokenizer, prompt, chat_format=False, max_new_tokens=8)
    assert got == want != plain
