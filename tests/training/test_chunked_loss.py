import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tunesmith.errors import ConfigError
from tunesmith.training import ChunkedCrossEntropyLoss, _loss, scale_grads, shift_labels


def _batch(b=3, s=37, v=50, ignore_frac=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, s, v, generator=g, dtype=torch.float64).float() * 3
    labels = torch.randint(0, v, (b, s), generator=g)
    labels[torch.rand(b, s, generator=g) < ignore_frac] = -100
    return logits, labels


@pytest.mark.parametrize("chunks", [1, 3, 8, 100])
def test_matches_cross_entropy_sum_and_grad(chunks):
    logits, labels = _batch()
    ref_in = logits.clone().requires_grad_()
    ref = F.cross_entropy(ref_in.view(-1, 50), labels.view(-1), ignore_index=-100, reduction="sum")
    ref.backward()

    x = logits.clone().requires_grad_()
    loss_sum, n = ChunkedCrossEntropyLoss(num_output_chunks=chunks)(x, labels)
    loss_sum.backward()

    assert loss_sum.dtype == torch.float32 and loss_sum.dim() == 0
    assert n.dtype == torch.int64 and n.dim() == 0
    assert n.item() == int((labels != -100).sum())
    assert torch.allclose(loss_sum, ref, rtol=1e-6, atol=1e-6)
    assert torch.allclose(x.grad, ref_in.grad, rtol=1e-6, atol=1e-6)
    assert (x.grad[labels == -100] == 0).all()


def test_bf16_logits_computed_in_fp32():
    logits, labels = _batch(s=16)
    x = logits.to(torch.bfloat16).requires_grad_()
    loss_sum, _ = ChunkedCrossEntropyLoss(num_output_chunks=4)(x, labels)
    ref = F.cross_entropy(x.detach().float().view(-1, 50), labels.view(-1), reduction="sum")
    assert loss_sum.dtype == torch.float32
    assert torch.allclose(loss_sum, ref, rtol=1e-6)
    loss_sum.backward()
    assert x.grad.dtype == torch.bfloat16

    ref_in = x.detach().float().requires_grad_()
    F.cross_entropy(ref_in.view(-1, 50), labels.view(-1), reduction="sum").backward()
    assert torch.allclose(x.grad.float(), ref_in.grad, atol=1e-2)


def test_grad_output_scale_is_applied():
    logits, labels = _batch(s=8)
    x = logits.clone().requires_grad_()
    loss_sum, n = ChunkedCrossEntropyLoss(num_output_chunks=2)(x, labels)
    (loss_sum / n * 3).backward()
    ref_in = logits.clone().requires_grad_()
    (F.cross_entropy(ref_in.view(-1, 50), labels.view(-1)) * 3).backward()
    assert torch.allclose(x.grad, ref_in.grad, atol=1e-6)


def test_all_ignored_gives_zero_loss_and_tokens():
    logits, labels = _batch(s=5)
    labels.fill_(-100)
    x = logits.clone().requires_grad_()
    loss_sum, n = ChunkedCrossEntropyLoss()(x, labels)
    loss_sum.backward()
    assert loss_sum.item() == 0.0 and n.item() == 0
    assert (x.grad == 0).all()


def test_custom_ignore_index_and_no_grad():
    logits, labels = _batch(s=6, ignore_frac=0.0)
    labels[:, :2] = 7
    with torch.no_grad():
        loss_sum, n = ChunkedCrossEntropyLoss(ignore_index=7)(logits, labels)
    mask = labels != 7
    ref = F.cross_entropy(logits[mask], labels[mask], reduction="sum")
    assert n.item() == int(mask.sum())
    assert torch.allclose(loss_sum, ref, rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="num_output_chunks must be a positive integer"):
        ChunkedCrossEntropyLoss(num_output_chunks=0)
    with pytest.raises(ConfigError, match="loss.min_chunk_rows must be a positive integer"):
        ChunkedCrossEntropyLoss(min_chunk_rows=0)
    with pytest.raises(ValueError, match=r"expected logits \[b, s, v\] and labels \[b, s\]"):
        ChunkedCrossEntropyLoss()(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_shift_labels():
    labels = torch.tensor([[1, 2, 3, 4], [5, -100, 6, 7]])
    assert shift_labels(labels).tolist() == [[2, 3, 4, -100], [-100, 6, 7, -100]]
    assert shift_labels(labels, ignore_index=0)[:, -1].tolist() == [0, 0]
    assert labels.tolist()[0] == [1, 2, 3, 4]  # input untouched


def test_scale_grads_skips_missing_grads():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    a.grad = torch.full((3,), 4.0)
    scale_grads([a, b], torch.tensor(0.25))
    assert a.grad.tolist() == [1.0, 1.0, 1.0] and b.grad is None
    model = torch.nn.Linear(2, 1)
    model.weight.grad = torch.ones(1, 2)
    scale_grads(model, 3.0)
    assert model.weight.grad.tolist() == [[3.0, 3.0]]


class _TinyLM(torch.nn.Module):
    def __init__(self, vocab=20, dim=8):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, tokens):
        return self.out(torch.tanh(self.proj(self.emb(tokens))))


def test_token_normalised_accumulation_equals_one_big_batch():
    """Uneven micro-batches, summed losses, grads scaled by 1/total tokens == big-batch mean."""
    torch.manual_seed(0)
    model = _TinyLM()
    ref_model = _TinyLM()
    ref_model.load_state_dict(model.state_dict())

    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 20, (4, 12), generator=g)
    labels = tokens.clone()
    # Very different numbers of real tokens per micro-batch (padding / masked prompts).
    labels[0, 3:] = -100
    labels[1, :] = labels[1, :]
    labels[2, 1:] = -100
    labels[3, 8:] = -100
    labels = shift_labels(labels)

    # Reference: one batch, mean over all counted tokens.
    logits = ref_model(tokens)
    ref_loss = F.cross_entropy(logits.reshape(-1, 20), labels.reshape(-1), ignore_index=-100)
    ref_loss.backward()

    loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=3)
    total_loss = torch.zeros(())
    total_tokens = torch.zeros((), dtype=torch.long)
    for idx in ([0], [1, 2], [3]):  # micro-batches of different sizes
        loss_sum, n = loss_fn(model(tokens[idx]), labels[idx])
        loss_sum.backward()
        total_loss += loss_sum.detach()
        total_tokens += n
    scale_grads(model.parameters(), 1.0 / total_tokens.clamp(min=1))

    assert (total_loss / total_tokens).item() == pytest.approx(ref_loss.item(), rel=1e-6)
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name


# ---- hidden states + head: no logits of the whole batch ---------------------------


def _hidden_batch(b=2, s=19, d=12, v=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, s, d, generator=g)
    labels = torch.randint(0, v, (b, s), generator=g)
    labels[torch.rand(b, s, generator=g) < 0.3] = -100
    head = torch.nn.Linear(d, v, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(v, d, generator=g))
    return hidden, labels, head


def _plain(hidden, labels, project):
    logits = project(hidden).float()
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")


@pytest.mark.parametrize("softcap", [None, 4.0])
@pytest.mark.parametrize("chunks", [1, 3, 64])
def test_hidden_states_and_head_equal_the_plain_loss(softcap, chunks):
    hidden, labels, head = _hidden_batch()

    def project(h):
        z = head(h)
        return z if softcap is None else softcap * torch.tanh(z / softcap)

    h_ref = hidden.clone().requires_grad_()
    ref = _plain(h_ref, labels, project)
    ref.backward()
    w_ref, head.weight.grad = head.weight.grad, None

    h = hidden.clone().requires_grad_()
    loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=chunks, min_chunk_rows=1)
    loss_sum, n = loss_fn(h, labels, head=head, softcap=softcap)
    (loss_sum * 0.5).backward()
    assert n.item() == int((labels != -100).sum())
    torch.testing.assert_close(loss_sum, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h.grad, h_ref.grad * 0.5, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.weight.grad, w_ref * 0.5, rtol=1e-5, atol=1e-5)
    assert (h.grad[labels == -100] == 0).all()


def test_tied_head_frozen_head_and_a_wrapped_head():
    from tunesmith.modules import TiedLinear

    hidden, labels, head = _hidden_batch()
    embedding = torch.nn.Embedding(40, 12)
    with torch.no_grad():
        embedding.weight.copy_(head.weight)
    tied = TiedLinear(embedding)
    loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=4, min_chunk_rows=1)
    loss_sum, _ = loss_fn(hidden, labels, head=tied)
    loss_sum.backward()
    ref_w = head.weight.detach().clone().requires_grad_()
    _plain(hidden, labels, lambda h: h @ ref_w.T).backward()
    torch.testing.assert_close(embedding.weight.grad, ref_w.grad, rtol=1e-5, atol=1e-5)

    # A frozen head (LoRA without the output): only the hidden states get a gradient.
    head.weight.requires_grad_(False)
    h = hidden.clone().requires_grad_()
    loss_fn(h, labels, head=head)[0].backward()
    assert head.weight.grad is None and h.grad is not None

    # Any other head (here: with a bias, as a PEFT wrapper would be) is recomputed per chunk.
    biased = torch.nn.Linear(12, 40)
    h1, h2 = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    loss, _ = loss_fn(h1, labels, head=biased)
    ref = _plain(h2, labels, biased)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-5, atol=1e-6)


def test_hidden_states_without_grad_and_with_nothing_labelled():
    hidden, labels, head = _hidden_batch()
    with torch.no_grad():
        loss, n = ChunkedCrossEntropyLoss()(hidden, labels, head=head)
        torch.testing.assert_close(loss, _plain(hidden, labels, head), rtol=1e-5, atol=1e-5)
    h = hidden.clone().requires_grad_()
    loss, n = ChunkedCrossEntropyLoss()(h, torch.full_like(labels, -100), head=head)
    loss.backward()
    assert loss.item() == 0.0 and n.item() == 0 and (h.grad == 0).all()


@pytest.mark.parametrize(
    ("labelled", "chunks", "min_rows", "expected"),
    [(424, 8, 128, 3), (1000, 8, 128, 7), (2048, 8, 128, 8), (50, 8, 128, 1), (50, 8, 1, 8)],
)
def test_few_labelled_rows_make_fewer_larger_chunks(labelled, chunks, min_rows, expected):
    from tunesmith.training._loss import _chunk_loss_and_grad

    calls = []

    def spy(z, y, softcap, want):
        calls.append(z.shape[0])
        return _chunk_loss_and_grad(z, y, softcap, want)

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 2048, 8, generator=g, requires_grad=True)
    labels = torch.full((1, 2048), -100)
    labels[0, :labelled] = torch.randint(0, 16, (labelled,), generator=g)
    loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=chunks, min_chunk_rows=min_rows)
    loss_fn._chunk_fn = spy
    loss, _ = loss_fn(hidden, labels, head=torch.nn.Linear(8, 16, bias=False))
    loss.backward()
    assert len(calls) == expected and sum(calls) == labelled


def test_bf16_head_gradient_is_as_close_to_fp64_as_one_bf16_gemm():
    hidden, labels, head = _hidden_batch(b=4, s=128, d=64, v=3000)
    head = head.to(torch.bfloat16)
    h = hidden.to(torch.bfloat16).requires_grad_()
    loss, _ = ChunkedCrossEntropyLoss(num_output_chunks=8, min_chunk_rows=1)(h, labels, head=head)
    loss.backward()
    assert loss.dtype == torch.float32 and head.weight.grad.dtype == torch.bfloat16
    ref_w = head.weight.detach().float().requires_grad_()
    ref = _plain(h.detach().float(), labels, lambda x: (x.bfloat16() @ ref_w.bfloat16().T))
    torch.testing.assert_close(loss, ref, rtol=1e-3, atol=1e-2)

    # The weight gradient (rounded to bf16 once per chunk) against fp64, beside what
    # one bf16 GEMM over all rows gives (plain autograd, as transformers computes it).
    w64 = head.weight.detach().double().requires_grad_()
    _plain(h.detach().double(), labels, lambda x: x @ w64.T).backward()
    w16 = head.weight.detach().clone().requires_grad_()
    _plain(h.detach(), labels, lambda x: x @ w16.T).backward()

    def error(grad):
        return ((grad.double() - w64.grad).norm() / w64.grad.norm()).item()

    assert error(head.weight.grad) < 2 * error(w16.grad), (error(head.weight.grad), error(w16.grad))


class _RecordProducts(TorchDispatchMode):
    """The operand shapes of every matrix product computed inside."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_):
            self.shapes.append([tuple(a.shape) for a in args if isinstance(a, torch.Tensor)])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_cpu_head_products_have_row_counts_whose_kernels_are_reused(dtype):
    """oneDNN compiles a kernel for each new shape of a bf16 product on the CPU, so the
    head's chunks are rounded up to 64 rows there (zero rows, which change nothing);
    fp32 products (MKL) take the chunks' own rows."""
    hidden, labels, head = _hidden_batch(b=2, s=150, d=24, v=100, seed=3)
    assert int((labels != -100).sum()) % 64  # ~210 labelled rows
    head = head.to(dtype)
    results = {}
    for multiple in (None, 1):  # the real choice, then 1
        h = hidden.to(dtype).requires_grad_()
        head.weight.grad = None
        loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=3, min_chunk_rows=1)
        with pytest.MonkeyPatch.context() as patch:
            if multiple is not None:  # the chunks' own rows, as fp32 takes them
                patch.setattr(_loss, "gemm_row_multiple", lambda device, dtype: 1)
            with _RecordProducts() as record:
                loss, _ = loss_fn(h, labels, head=head)
                loss.backward()
        results[multiple] = loss, h.grad, head.weight.grad
        rows = {dim for shapes in record.shapes for shape in shapes for dim in shape} - {24, 100}
        if multiple is None and dtype == torch.bfloat16:
            assert rows and all(r % 64 == 0 for r in rows), rows
        else:
            assert any(r % 64 for r in rows), rows
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
    for padded, exact in zip(results[None], results[1], strict=True):
        torch.testing.assert_close(padded.float(), exact.float(), **tolerance)
