"""Beam search in the engine against `transformers` generate(num_beams=K) on the same tiny
checkpoints: same ranked hypotheses and scores, the member constraint's masks, shared prefix
blocks, stop strings per beam and aborts; diverse (group) beam search against a plain reference
written here, since `transformers` 5 no longer has it; token healing's forced prefix."""

import re

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.member_constraint import MemberConstraint, token_texts
from service.engine.output_processor import OutputProcessor
from tests.support.engine_runs import run_to_completion
from tests.support.sweeps import fast_first
from tests.support.tiny_checkpoints import build_checkpoint

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
        kwargs = hf_kwargs(ids) if callable(hf_kwargs) else hf_kwargs
        expected, expected_scores = hf_beams(model, ids, params, **kwargs)
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
    fast_first([(2, 1.0, False), (4, 1.0, False), (3, 0.5, True), (4, 2.0, "never")]),
)
def test_same_hypotheses_as_transformers(
    checkpoint, tokenizer, num_beams, length_penalty, early_stopping
):
    params = beam_params(num_beams, length_penalty, early_stopping, ignore_eos=True)
    check_against_transformers(checkpoint, tokenizer, params, {"eos_token_id": None})


@pytest.mark.slow  # Triton's interpreter on a CPU
def test_triton_beam_step_in_the_engine(checkpoint, tokenizer, monkeypatch):
    monkeypatch.setenv("KERNELS", "triton")  # interpreted on CPU: one short case
    params = beam_params(2, ignore_eos=True, max_tokens=4)
    check_against_transformers(checkpoint, tokenizer, params, {"eos_token_id": None}, PROMPTS[1:2])


@pytest.mark.parametrize(
    ("num_beams", "early_stopping"), fast_first([(4, False), (3, True), (4, "never")])
)
def test_beams_ending_at_eos_match_transformers(
    eos_checkpoint, tokenizer, num_beams, early_stopping
):
    params = beam_params(num_beams, early_stopping=early_stopping)
    results = check_against_transformers(eos_checkpoint, tokenizer, params, {})
    ends = [c.output_token_ids[-1] == EOS for seq in results for c in seq.candidates]
    assert any(ends) and not all(ends)


NAMES = frozenset({"fibonacci", "range", "return_value", "n", "self"})


def member_constraint(tokenizer: Tokenizer) -> MemberConstraint:
    """The engine's own member masks for the tiny tokenizer (its special tokens stop)."""
    stops = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    return MemberConstraint(token_texts(tokenizer, stops), stops)


def test_member_constraint_matches_prefix_constrained_transformers(checkpoint, tokenizer):
    """The packed member mask in the beam kernel ranks as `transformers` does with the same
    allowed tokens through prefix_allowed_tokens_fn (both mask after the log-softmax)."""
    vocab = AutoModelForCausalLM.from_pretrained(checkpoint).config.vocab_size
    member = member_constraint(tokenizer)

    def allowed_after(prompt_length: int):
        def allowed(_batch_id: int, input_ids: torch.Tensor) -> list[int]:
            generated = member.generated(NAMES, "", input_ids[prompt_length:].tolist())
            if generated is None:
                return list(range(vocab))
            return member.mask(NAMES, generated, vocab).nonzero().flatten().tolist()

        return allowed

    params = beam_params(3, ignore_eos=True, allowed_continuations=NAMES)
    results = check_against_transformers(
        checkpoint,
        tokenizer,
        params,
        lambda ids: {"eos_token_id": None, "prefix_allowed_tokens_fn": allowed_after(len(ids))},
    )
    for seq in results:
        for candidate in seq.candidates:
            head = re.match(r"\w*", candidate.text).group()
            assert head in NAMES, candidate.text


def test_a_single_name_forces_every_beam_to_spell_it(checkpoint, tokenizer):
    engine = make_engine(checkpoint)
    ids = tokenizer.encode(PROMPTS[0]).ids
    names = frozenset({"fibonacci"})
    params = beam_params(4, ignore_eos=True, max_tokens=12, allowed_continuations=names)
    engine.add_request("m", ids, params)
    seq = engine.seqs["m"]
    run_to_completion(engine)
    assert len(seq.candidates) > 1
    for candidate in seq.candidates:
        assert re.match(r"\w*", candidate.text).group() == "fibonacci", candidate.text


def test_beams_share_prefix_blocks_and_abort_frees_them(checkpoint, tokenizer):
    engine = make_engine(checkpoint)
    ids = tokenizer.encode(PROMPTS[2] * 3).ids
    prompt_blocks = -(-len(ids) // 4)
    engine.add_request("a", ids, beam_params(4, ignore_eos=True, max_tokens=40))
    for _ in range(6):
        engine.step()
    beams = engine.beam_search.requests["a"].live_beams
    assert len(beams) == 4
    assert len({b.block_table[0] for b in beams}) == 1  # the prompt's blocks are shared
    assert len({tuple(b.block_table) for b in beams}) == 4  # each beam has its own tail
    assert prompt_blocks < engine.block_manager.num_used_blocks < 4 * prompt_blocks
    seq = engine.abort("a")
    assert seq.finish_reason == "abort" and seq.is_finished
    assert engine.block_manager.num_used_blocks == 0
    assert not engine.beam_search.requests and not engine.has_work()


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
    with pytest.raises(ValueError, match="temperature 0"):
        SamplingParams(num_beams=2, temperature=0.7)
    with pytest.raises(ValueError, match="num_beams"):
        SamplingParams(num_beams=0)


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


# -- diverse beam search --------------------------------------------------------------------------


def diverse_reference(
    model, tokenizer, ids, params: SamplingParams
) -> list[tuple[list[int], float]]:
    """Group beam search written out plainly for one request, every step recomputing the whole
    sequences densely: the ranked distinct hypotheses (output tokens, score)."""
    size = params.num_beams // params.num_beam_groups
    vocab = model.config.vocab_size
    groups = [{"beams": [([], 0.0)], "finished": []} for _ in range(params.num_beam_groups)]
    for step in range(1, params.max_tokens + 1):
        taken: list[int] = []  # this step's tokens of the earlier groups' live beams
        for group in groups:
            if not group["beams"]:
                continue
            outs = [out for out, _ in group["beams"]]
            with torch.no_grad():
                logits = model(torch.tensor([ids + out for out in outs])).logits[:, -1].float()
            counts = torch.bincount(torch.tensor(taken, dtype=torch.long), minlength=vocab)
            logprobs = torch.log_softmax(logits, -1) - params.diversity_penalty * counts
            scores = logprobs + torch.tensor([score for _, score in group["beams"]])[:, None]
            ranked = scores.flatten().sort(descending=True, stable=True)
            beams = []
            for rank, (score, flat) in enumerate(
                zip(ranked.values.tolist(), ranked.indices.tolist(), strict=True)
            ):
                parent, token = divmod(flat, vocab)
                out = outs[parent] + [token]
                if (token == EOS and not params.ignore_eos) or step == params.max_tokens:
                    if rank < size:
                        group["finished"].append((out, score / step**params.length_penalty))
                else:
                    beams.append((out, score))
                if len(beams) == size:
                    break
            group["finished"] = sorted(group["finished"], key=lambda h: -h[1])[:size]
            full = len(group["finished"]) == size
            if (
                full
                and beams
                and beams[0][1] / step**params.length_penalty <= group["finished"][-1][1]
            ):
                beams = []  # this group can no longer improve
            group["beams"] = beams
            taken += [out[-1] for out, _ in beams]
    hypotheses = sorted((h for g in groups for h in g["finished"]), key=lambda h: -h[1])
    distinct: dict[str, tuple[list[int], float]] = {}
    for out, score in hypotheses:
        distinct.setdefault(tokenizer.decode(out, skip_special_tokens=True), (out, score))
    return list(distinct.values())


def check_diverse(checkpoint, tokenizer, params: SamplingParams, prompts=PROMPTS) -> list:
    """The engine (all prompts in one batch, beside greedy requests) against the reference."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    engine = make_engine(checkpoint, max_num_batched_tokens=24)
    requests = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer.encode(prompt).ids
        engine.add_request(f"d{i}", ids, params)
        engine.add_request(f"g{i}", ids, SamplingParams(max_tokens=5))
        requests.append((ids, engine.seqs[f"d{i}"]))
    run_to_completion(engine)
    for ids, seq in requests:
        expected = diverse_reference(model, tokenizer, ids, params)
        assert [c.output_token_ids for c in seq.candidates] == [out for out, _ in expected]
        scores = [c.score for c in seq.candidates]
        assert scores == pytest.approx([score for _, score in expected], abs=1e-4)
    assert engine.block_manager.num_used_blocks == 0
    return [seq for _, seq in requests]


def test_reference_without_groups_is_transformers_beam_search(checkpoint, tokenizer):
    """The reference's one-group case is ordinary beam search: it checks the reference itself."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    params = beam_params(3, ignore_eos=True, max_tokens=6)
    ids = tokenizer.encode(PROMPTS[0]).ids
    expected, expected_scores = hf_beams(model, ids, params, eos_token_id=None)
    got = diverse_reference(model, tokenizer, ids, params)
    assert [out for out, _ in got] == expected[: len(got)]
    assert [s for _, s in got] == pytest.approx(expected_scores[: len(got)], abs=1e-4)


@pytest.mark.parametrize(
    ("num_beams", "num_groups", "penalty"), fast_first([(4, 2, 0.7), (6, 3, 2.0), (4, 4, 0.0)])
)
def test_diverse_beams_match_the_reference(checkpoint, tokenizer, num_beams, num_groups, penalty):
    params = beam_params(
        num_beams,
        ignore_eos=True,
        max_tokens=6,
        num_beam_groups=num_groups,
        diversity_penalty=penalty,
    )
    check_diverse(checkpoint, tokenizer, params)


@pytest.mark.slow  # Triton's interpreter on a CPU
def test_triton_beam_step_in_diverse_search(checkpoint, tokenizer, monkeypatch):
    monkeypatch.setenv("KERNELS", "triton")  # interpreted on CPU: one short case
    params = beam_params(4, ignore_eos=True, max_tokens=3, num_beam_groups=2, diversity_penalty=1.5)
    check_diverse(checkpoint, tokenizer, params, PROMPTS[1:2])


def test_diverse_groups_ending_at_eos_match_the_reference(eos_checkpoint, tokenizer):
    """Groups finish at different steps; the later groups go on alone."""
    params = beam_params(4, max_tokens=10, num_beam_groups=2, diversity_penalty=0.5)
    results = check_diverse(eos_checkpoint, tokenizer, params)
    ends = [c.output_token_ids[-1] == EOS for seq in results for c in seq.candidates]
    assert any(ends) and not all(ends)


def test_one_group_is_ordinary_beam_search(checkpoint, tokenizer):
    engine = make_engine(checkpoint)
    ids = tokenizer.encode(PROMPTS[2]).ids
    engine.add_request("plain", ids, beam_params(4, ignore_eos=True))
    engine.add_request("one", ids, beam_params(4, ignore_eos=True, num_beam_groups=1))
    plain, one = engine.seqs["plain"], engine.seqs["one"]
    run_to_completion(engine)
    assert [c.output_token_ids for c in one.candidates] == [
        c.output_token_ids for c in plain.candidates
    ]


def test_a_large_penalty_makes_the_groups_diverge(checkpoint, tokenizer):
    """Four groups of one beam: without a penalty all four are the greedy path; with a large one
    each group starts with a token no earlier group took."""
    first_tokens = {}
    for penalty in (0.0, 50.0):
        engine = make_engine(checkpoint)
        params = beam_params(
            4, ignore_eos=True, num_beam_groups=4, diversity_penalty=penalty, max_tokens=8
        )
        engine.add_request("d", tokenizer.encode(PROMPTS[3]).ids, params)
        seq = engine.seqs["d"]
        run_to_completion(engine)
        first_tokens[penalty] = {c.output_token_ids[0] for c in seq.candidates}
    assert len(first_tokens[0.0]) == 1
    assert len(first_tokens[50.0]) == 4


def test_forced_prefix_with_beams(checkpoint, tokenizer):
    """Token healing: every beam first spells the forced characters, which the texts omit."""
    engine = make_engine(checkpoint)
    prompt = PROMPTS[0]
    ids = tokenizer.encode(prompt[:-5]).ids  # as if token healing backed up by 5 characters
    forced = prompt[len(tokenizer.decode(ids)) :]
    engine.add_request("h", ids, beam_params(3, ignore_eos=True, forced_prefix=forced))
    seq = engine.seqs["h"]
    run_to_completion(engine)
    assert len(seq.candidates) > 1
    for candidate in seq.candidates:
        raw = tokenizer.decode(candidate.output_token_ids)
        assert raw.startswith(forced) and raw[len(forced) :] == candidate.text


def test_invalid_diverse_params_are_refused():
    with pytest.raises(ValueError, match="divide"):
        SamplingParams(num_beams=4, num_beam_groups=3)
    with pytest.raises(ValueError, match="num_beam_groups"):
        SamplingParams(num_beams=4, diversity_penalty=1.0)
    with pytest.raises(ValueError, match="diversity_penalty"):
        SamplingParams(num_beams=4, num_beam_groups=2, diversity_penalty=-1.0)
