"""Prompt-lookup speculative decoding: drafts from the context, verified in the same pass, and
output token for token equal to plain greedy decoding."""

import random

import pytest
from tokenizers import Tokenizer

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.sequence import Sequence
from service.engine.speculation import MAX_DRAFT_PAUSE, accepted_tokens, pace_drafts, propose_draft
from tests.support.scripted_checkpoint import SCRIPT, build_scripted_checkpoint
from tests.support.tiny_checkpoints import build_checkpoint

REPETITIVE = "for item in items:\n    total += item.price * item.quantity\n" * 4


def test_draft_follows_the_latest_match_of_the_longest_ngram():
    tokens = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 5, 2, 3]
    assert propose_draft(tokens, 3, max_ngram=3, min_ngram=2) == [7, 8, 5]  # 2-gram [2, 3]
    assert propose_draft(tokens + [7], 2, max_ngram=3, min_ngram=2) == [8, 5]  # 3-gram [2, 3, 7]
    assert propose_draft([4, 5, 6], 3, max_ngram=3, min_ngram=2) == []


def latest_match_by_loop(tokens: list[int], max_tokens: int, max_ngram: int, min_ngram: int):
    """The definition, as a plain scan back from the end."""
    for n in range(max_ngram, min_ngram - 1, -1):
        for end in range(len(tokens) - 2, n - 2, -1):
            if tokens[end - n + 1 : end + 1] == tokens[-n:]:
                return tokens[end + 1 : end + 1 + max_tokens]
    return []


@pytest.mark.parametrize("vocab", [2, 5, 70_000, 2**20])  # large ids: byte matches off alignment
def test_bytes_search_finds_what_the_scan_finds(vocab):
    rng = random.Random(vocab)
    for _ in range(1500):
        tokens = [rng.randrange(vocab) for _ in range(rng.randint(0, 50))]
        for args in ((4, 3, 2), (2, 3, 1)):
            assert propose_draft(tokens, *args) == latest_match_by_loop(tokens, *args)


def test_accepted_tokens_stop_at_the_first_miss():
    assert accepted_tokens([5, 6, 7], [5, 6, 7, 8]) == [5, 6, 7, 8]  # all kept, plus the bonus
    assert accepted_tokens([5, 6, 7], [5, 9, 7, 8]) == [5, 9]
    assert accepted_tokens([5, 6, 7], [4, 6, 7, 8]) == [4]


def test_rejected_drafts_pause_drafting_longer_each_time_in_a_row():
    seq = Sequence("r", [1, 2, 3], SamplingParams(max_tokens=8, temperature=0.0))
    pauses = []
    for _ in range(7):
        pace_drafts(seq, accepted=0)
        pauses.append(seq.draft_pause)
    assert pauses == [1, 2, 4, 8, 16, MAX_DRAFT_PAUSE, MAX_DRAFT_PAUSE]
    pace_drafts(seq, accepted=2)  # an accepted token: the next miss pauses one step again
    pace_drafts(seq, accepted=0)
    assert seq.draft_pause == 1


def run(engine: LLMEngine, requests: dict[str, tuple[list[int], SamplingParams]]) -> tuple:
    for request_id, (ids, params) in requests.items():
        engine.add_request(request_id, ids, params)
    seqs = {request_id: engine.seqs[request_id] for request_id in requests}
    steps = 0
    while engine.has_work():
        engine.step()
        steps += 1
    return {r: (s.output_token_ids, s.text, s.finish_reason) for r, s in seqs.items()}, steps


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_outputs_equal_plain_greedy(tmp_path, family):
    """Greedy alone and beside sampled and beam requests, with stop strings and token limits."""
    checkpoint = build_checkpoint(tmp_path / family, family, n_positions=512)
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    ids = tokenizer.encode(REPETITIVE).ids
    requests = {
        "long": (ids, SamplingParams(max_tokens=40, ignore_eos=True)),
        "stop": (ids[:-5], SamplingParams(max_tokens=30, stop=["item"], ignore_eos=True)),
        "short": (ids[:20], SamplingParams(max_tokens=3, ignore_eos=True)),
        "sampled": (ids[:30], SamplingParams(max_tokens=10, temperature=0.8, seed=1)),
        "beams": (ids[:25], SamplingParams(max_tokens=6, num_beams=3)),
    }
    outputs = {}
    for k in (0, 4):
        engine = LLMEngine(
            EngineConfig(checkpoint, num_threads=1, block_size=4, speculative_tokens=k)
        )
        outputs[k], _ = run(engine, requests)
    assert outputs[4] == outputs[0]


def test_drafts_from_the_context_are_accepted(tmp_path):
    """The scripted model spells SCRIPT after <fim_middle>; a prompt that already holds
    `<fim_middle>` + SCRIPT lets the lookup draft the rest, so it takes far fewer steps."""
    checkpoint = build_scripted_checkpoint(tmp_path / "scripted")
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    middle = tokenizer.token_to_id("<fim_middle>")
    script = tokenizer.encode(SCRIPT, add_special_tokens=False).ids
    prompt = [middle, *script, *tokenizer.encode("\nx = 1\n").ids, middle]
    outputs, steps = {}, {}
    for k in (0, 4):
        engine = LLMEngine(EngineConfig(checkpoint, num_threads=1, speculative_tokens=k))
        outputs[k], steps[k] = run(engine, {"r": (prompt, SamplingParams(max_tokens=20))})
    assert outputs[4] == outputs[0] and outputs[0]["r"][1] == SCRIPT
    assert steps[4] <= steps[0] - len(script) // 2
