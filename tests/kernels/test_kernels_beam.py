"""Triton beam step vs the torch reference: compiled on CUDA, else in the Triton interpreter on
CPU (tests/conftest.py sets TRITON_INTERPRET=1 there)."""

import pytest
import torch
from completion_kernels import beam_step as bs
from completion_kernels import triton_beam_step as tbs

pytestmark = pytest.mark.slow  # Triton's interpreter on a CPU (≈15 s)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def beam_step_triton(logits, beam_scores, allowed, num_beams):
    """The kernel on DEVICE; its (parents, tokens, scores) back on the CPU beside the reference."""
    moved = [None if t is None else t.to(DEVICE) for t in (logits, beam_scores, allowed)]
    return tuple(t.cpu() for t in tbs.beam_step_triton(*moved, num_beams))


def _pack(allowed: torch.Tensor) -> torch.Tensor:
    """bool [R, V] -> int32 words [R, ceil(V/32)], bit t % 32 of word t // 32."""
    rows, vocab = allowed.shape
    padded = torch.zeros(rows, (vocab + 31) // 32 * 32, dtype=torch.int64)
    padded[:, :vocab] = allowed.long()
    words = (padded.view(rows, -1, 32) << torch.arange(32)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def _case(num_requests, num_beams, vocab, seed, mask_density=None):
    gen = torch.Generator().manual_seed(seed)
    rows = num_requests * num_beams
    logits = torch.randn(rows, vocab, generator=gen) * 3
    beam_scores = -torch.rand(rows, generator=gen) * 5
    allowed = None
    if mask_density is not None:
        allowed = _pack(torch.rand(rows, vocab, generator=gen) < mask_density)
    return logits, beam_scores, allowed


def _check(logits, beam_scores, allowed, num_beams):
    parents, tokens, scores = beam_step_triton(logits, beam_scores, allowed, num_beams)
    want_parents, want_tokens, want_scores = bs.beam_step_reference(
        logits, beam_scores, allowed, num_beams
    )
    assert torch.equal(parents, want_parents)
    assert torch.equal(tokens, want_tokens)
    torch.testing.assert_close(scores, want_scores, atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Interpreter-sized vocab chunks, so small vocabularies still span several chunks."""
    monkeypatch.setattr(tbs, "VOCAB_CHUNK", 256)


@pytest.mark.parametrize(("num_beams", "vocab"), [(1, 100), (2, 1000), (4, 777), (8, 1500)])
def test_unmasked(num_beams, vocab):
    _check(*_case(3, num_beams, vocab, seed=vocab), num_beams)


@pytest.mark.parametrize("density", [0.5, 0.01])
def test_masked(density):
    _check(*_case(3, 4, 1000, seed=1, mask_density=density), 4)


def test_single_and_no_allowed_token():
    """Beam 0 may emit one token, beam 1 none, beam 2 three: fewer than 2K finite candidates."""
    logits, beam_scores, _ = _case(1, 4, 600, seed=2)
    allowed = torch.zeros(4, 600, dtype=torch.bool)
    allowed[0, 517] = True
    allowed[2, [5, 300, 599]] = True
    allowed[3, 31:33] = True  # straddles two mask words
    packed = _pack(allowed)
    _check(logits, beam_scores, packed, 4)
    parents, tokens, scores = beam_step_triton(logits, beam_scores, packed, 4)
    assert scores[0, :6].isfinite().all() and scores[0, 6:].isinf().all()
    assert {(p, t) for p, t in zip(parents[0, :6].tolist(), tokens[0, :6].tolist(), strict=True)} == {
        (0, 517), (2, 5), (2, 300), (2, 599), (3, 31), (3, 32)
    }  # fmt: skip
    # The -inf tail follows the flat index: beam 0's first disallowed tokens.
    assert tokens[0, 6:].tolist() == [0, 1] and parents[0, 6:].tolist() == [0, 0]


def test_not_renormalized_over_allowed_tokens():
    """A beam allowed one token pays that token's full-vocabulary log-prob."""
    logits, beam_scores, _ = _case(1, 2, 300, seed=3)
    allowed = torch.zeros(2, 300, dtype=torch.bool)
    allowed[0, 7] = True
    allowed[1, 3] = True
    parents, tokens, scores = beam_step_triton(logits, beam_scores, _pack(allowed), 2)
    hit = (parents[0] == 0) & (tokens[0] == 7)
    expected = beam_scores[0] + torch.log_softmax(logits[0], -1)[7]
    torch.testing.assert_close(scores[0][hit], expected.view(1))
    assert expected < beam_scores[0]


def test_ties_prefer_lower_parent_then_token():
    """Equal logits everywhere and equal beam scores: the order is the flat index order."""
    logits = torch.zeros(6, 700)
    logits[:, 650] = 1.0  # a tie across beams in the last chunk
    beam_scores = torch.zeros(6)
    parents, tokens, scores = beam_step_triton(logits, beam_scores, None, 3)
    _check(logits, beam_scores, None, 3)
    assert parents[0].tolist() == [0, 1, 2, 0, 0, 0]
    assert tokens[0].tolist() == [650, 650, 650, 0, 1, 2]


def test_real_vocab_size_with_default_chunks(monkeypatch):
    """GPT-2's 50,257 tokens at the production chunk size, with a fp16 logits input."""
    monkeypatch.setattr(tbs, "VOCAB_CHUNK", 4096)
    logits, beam_scores, allowed = _case(2, 2, 50257, seed=4, mask_density=0.3)
    _check(logits.half(), beam_scores, allowed, 2)


def test_dispatch_forced_reference(monkeypatch):
    monkeypatch.setenv("KERNELS", "reference")
    logits, beam_scores, _ = _case(2, 2, 100, seed=5)
    got = bs.beam_step(logits, beam_scores, None, 2)
    want = bs.beam_step_reference(logits, beam_scores, None, 2)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("vocab", [31, 32, 1000])
def test_pack_allowed_inverts_unpack(vocab):
    bits = torch.rand(3, vocab, generator=torch.Generator().manual_seed(vocab)) < 0.5
    words = bs.pack_allowed(bits)
    assert words.dtype == torch.int32 and words.shape == (3, -(-vocab // 32))
    assert torch.equal(words, _pack(bits))
    assert torch.equal(bs.unpack_allowed(words, vocab), bits)
