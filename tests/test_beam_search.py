"""Beam search in the engine against `transformers` generate(num_beams=K) on the same tiny
checkpoints: same ranked hypotheses and scores, masks through the allowed-token hook, shared prefix
blocks, stop strings per beam and aborts."""

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from kernels.beam_step import unpack_allowed
from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.output_processor import OutputProcessor
from tests.tiny_checkpoints import build_checkpoint

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "x = 1",
    "import os\n\nclass Config:\n    def __init__(self, path):\n",
    "for i in range(10):\n",
]
EOS = 0  # the tiny tokenizer's end of text


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("gpt2"), "gpt2", n_positions=512)


@pytest.fixture(scope="module")
def eos_checkpoint(tmp_path_factory):
    """The same model with a larger end-of-text embedding, so beams end at EOS now and then."""
    path = build_checkpoint(tmp_path_factory.mktemp("gpt2_eos"), "gpt2", n_positions=512)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.transformer.wte.weight[EOS] *= 1.6
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return Tokenizer.from_file(str(checkpoint / "tokenizer.json"))


def make_engine(checkpoint, **kwargs) -> LLMEngine:
    return LLMEngine(EngineConfig(model_path=checkpoint, num_threads=1, block_size=4, **kwargs))


def run_to_completion(engine: LLMEngine, max_steps: int = 2000) -> None:
    for _ in range(max_steps):
        if not engine.has_work():
            return
        engine.step()
    raise AssertionError("engine did not finish")


def hf_beams(model, ids, params: SamplingParams, **kwargs) -> tuple[list[list[int]], list[float]]:
    """transformers' ranked hypotheses (cut after EOS) and their scores."""
    out = model.generate(
        torch.tensor([ids]),
        num_beams=params.num_beams,
        num_return_sequences=params.num_beams,
        length_penalty=params.length_penalty,
        early_stopping=params.early_stopping,
        do_sample=False,
        max_new_tokens=params.max_tokens,
        pad_token_id=EOS,
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs,
    )
    hypotheses = []
    for row in out.sequences[:, len(ids) :].tolist():
        hypotheses.append(
            row[: row.index(EOS) + 1] if EOS in row and not params.ignore_eos else row
        )
    return hypotheses, out.sequences_scores.tolist()


def beam_params(num_beams, length_penalty=1.0, early_stopping=False, **kwargs) -> SamplingParams:
    kwargs.setdefault("max_tokens", 10)
    return SamplingParams(
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        **kwargs,
    )


def check_against_transformers(checkpoint, tokenizer, params, hf_kwargs, prompts=PROMPTS) -> list:
    """Run the prompts beside greedy requests; return the finished beam requests."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    engine = make_engine(checkpoint, max_num_batched_tokens=24)
    requests = {}
    for i, prompt in enumerate(prompts):
        ids = tokenizer.encode(prompt).ids
        engine.add_request(f"b{i}", ids, params)
        engine.add_request(f"g{i}", ids, SamplingParams(max_tokens=7))  # greedy neighbours
        requests[f"b{i}"] = (ids, engine.seqs[f"b{i}"])
        engine.step()  # arrivals while other beams are mid-search
    run_to_completion(engine)
    for ids, seq in requests.values():
        expected, expected_scores = hf_beams(model, ids, params, **hf_kwargs)
        assert seq.output_token_ids == expected[0]
        got = [c.output_token_ids for c in seq.candidates]
        assert got == expected[: len(got)]
        assert len({c.text for c in seq.candidates}) == len(got) >= 1
        scores = [c.score for c in seq.candidates]
        assert scores == pytest.approx(expected_scores[: len(got)], abs=1e-4)
    assert engine.block_manager.num_used_blocks == 0
    return [seq for _, seq in requests.values()]


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"),
    [(2, 1.0, False), (4, 1.0, False), (3, 0.5, True), (4, 2.0, "never")],
)
def test_same_hypotheses_as_transformers(
    checkpoint, tokenizer, num_beams, length_penalty, early_stopping
):
    params = beam_params(num_beams, length_penalty, early_stopping, ignore_eos=True)
    check_against_transformers(checkpoint, tokenizer, params, {"eos_token_id": None})


def test_triton_beam_step_in_the_engine(checkpoint, tokenizer, monkeypatch):
    monkeypatch.setenv("KERNELS", "triton")  # interpreted on CPU: one short case
    params = beam_params(2, ignore_eos=True, max_tokens=4)
    check_against_transformers(checkpoint, tokenizer, params, {"eos_token_id": None}, PROMPTS[1:2])


@pytest.mark.parametrize(("num_beams", "early_stopping"), [(4, False), (3, True), (4, "never")])
def test_beams_ending_at_eos_match_transformers(
    eos_checkpoint, tokenizer, num_beams, early_stopping
):
    params = beam_params(num_beams, early_stopping=early_stopping)
    results = check_against_transformers(eos_checkpoint, tokenizer, params, {})
    ends = [c.output_token_ids[-1] == EOS for seq in results for c in seq.candidates]
    assert any(ends) and not all(ends)


def test_allowed_token_mask_matches_prefix_constrained_transformers(checkpoint, tokenizer):
    vocab = AutoModelForCausalLM.from_pretrained(checkpoint).config.vocab_size
    allowed_ids = torch.randperm(vocab, generator=torch.Generator().manual_seed(3))[: vocab // 3]
    bits = torch.zeros(vocab, dtype=torch.bool)
    bits[allowed_ids] = True
    mask = pack(bits)
    params = beam_params(3, ignore_eos=True, allowed_tokens=lambda _: mask)
    hf_kwargs = {"eos_token_id": None, "prefix_allowed_tokens_fn": lambda *_: allowed_ids.tolist()}
    check_against_transformers(checkpoint, tokenizer, params, hf_kwargs)


def test_mask_allowing_one_token_forces_it(checkpoint, tokenizer):
    forced = tokenizer.encode("return fibonacci(n - 1)").ids
    vocab = AutoModelForCausalLM.from_pretrained(checkpoint).config.vocab_size

    def allow_next(generated: list[int]) -> torch.Tensor | None:
        if len(generated) % 2:
            return None  # unconstrained steps mixed in: None must mean "anything"
        bits = torch.zeros(vocab, dtype=torch.bool)
        bits[forced[len(generated)]] = True
        return pack(bits)

    engine = make_engine(checkpoint)
    ids = tokenizer.encode(PROMPTS[0]).ids
    engine.add_request(
        "m", ids, beam_params(4, ignore_eos=True, max_tokens=len(forced), allowed_tokens=allow_next)
    )
    seq = engine.seqs["m"]
    run_to_completion(engine)
    for candidate in seq.candidates:
        assert candidate.output_token_ids[::2] == forced[::2]
    assert len(seq.candidates) > 1


def test_beams_share_prefix_blocks_and_abort_frees_them(checkpoint, tokenizer):
    engine = make_engine(checkpoint)
    ids = tokenizer.encode(PROMPTS[2] * 3).ids
    prompt_blocks = -(-len(ids) // 4)
    engine.add_request("a", ids, beam_params(4, ignore_eos=True, max_tokens=40))
    for _ in range(6):
        engine.step()
    beams = engine.beam_search.groups["a"].beams
    assert len(beams) == 4
    assert len({b.block_table[0] for b in beams}) == 1  # the prompt's blocks are shared
    assert len({tuple(b.block_table) for b in beams}) == 4  # each beam has its own tail
    assert prompt_blocks < engine.block_manager.num_used_blocks < 4 * prompt_blocks
    seq = engine.abort("a")
    assert seq.finish_reason == "abort" and seq.is_finished
    assert engine.block_manager.num_used_blocks == 0
    assert not engine.beam_search.groups and not engine.has_work()


def test_stop_strings_end_beams(checkpoint, tokenizer):
    engine = make_engine(checkpoint)
    ids = tokenizer.encode(PROMPTS[0]).ids
    engine.add_request("free", ids, beam_params(4, ignore_eos=True))
    free = engine.seqs["free"]
    run_to_completion(engine)
    stop = free.text[4:6]
    engine.add_request("stopped", ids, beam_params(4, ignore_eos=True, stop=[stop]))
    stopped = engine.seqs["stopped"]
    run_to_completion(engine)
    assert any(c.finish_reason == "stop" for c in stopped.candidates)
    for candidate in stopped.candidates:
        assert stop not in candidate.text
    output = OutputProcessor.to_output(stopped)
    assert [c.text for c in output.candidates] == [c.text for c in stopped.candidates]
    assert output.text == output.candidates[0].text


def test_invalid_beam_params_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(num_beams=2, temperature=0.7)
    with pytest.raises(ValueError, match="num_beams"):
        SamplingParams(num_beams=0)


def pack(bits: torch.Tensor) -> torch.Tensor:
    """bool [V] -> int32 bitmask words [ceil(V / 32)], checked against the kernel's unpacking."""
    padded = torch.zeros(-(-bits.numel() // 32) * 32, dtype=torch.int64)
    padded[: bits.numel()] = bits.long()
    words = (padded.view(-1, 32) << torch.arange(32)).sum(1)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    assert torch.equal(unpack_allowed(words[None], bits.numel())[0], bits)
    return words


def test_beams_survive_preemption(checkpoint, tokenizer):
    """Out of blocks, beams are preempted and recomputed; their siblings wait, results stay exact."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    engine = make_engine(checkpoint, kv_cache_mb=1)
    engine.block_manager.__init__(30, 4)  # 120 tokens for four 4-beam requests
    params = beam_params(4, ignore_eos=True, max_tokens=12)
    requests = []
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer.encode(prompt).ids[:20]
        engine.add_request(f"p{i}", ids, params)
        requests.append((ids, engine.seqs[f"p{i}"]))
    run_to_completion(engine)
    assert engine.scheduler.num_preemptions > 0
    for ids, seq in requests:
        assert seq.output_token_ids == hf_beams(model, ids, params, eos_token_id=None)[0][0]
    assert engine.block_manager.num_used_blocks == 0
