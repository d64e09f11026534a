"""The member constraint on every decoding path, through the real engine: whatever the member set,
the prompt, token healing's forced prefix or max_tokens, a greedy, speculative, sampled or beam
request's first identifier is one of the names (or the start of one, where max_tokens or a dead
end cut it), and speculative greedy is token for token plain greedy under the constraint.

The model is a tiny random GPT-2, which left alone almost never starts with one of the names, so
the mask decides. The masks themselves are checked over many random vocabularies in
tests/engine/test_member_constraint.py; here the vocabulary is the tiny tokenizer's, and the names are
drawn from it (its identifier tokens joined, so names take several tokens) and from random
identifiers.
"""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.member_constraint import constraint_state
from tests.support.engine_runs import run_to_completion
from tests.support.tiny_checkpoints import build_checkpoint

# After `expr.`, with members the context already used: once the output starts one, the prompt
# lookup drafts what followed it there, so drafts are verified while the constraint is active.
AFTER_DOT = {
    "items = []\nitems.append(1)\nitems.append(2)\nitems.": {"append", "appendleft", "pop"},
    "self.total = 0\nself.count = 0\nself.": {"total", "total_count", "count"},
    "os.path.join(a, b)\nos.path.exists(a)\nos.path.": {"join", "exists", "expanduser"},
}
PROMPTS = [*AFTER_DOT, "x = 1", "def f(n):\n    return n"]
IDENTIFIER = re.compile(r"\w*")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("gpt2"), "gpt2", n_positions=512)


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return Tokenizer.from_file(str(checkpoint / "tokenizer.json"))


@pytest.fixture(scope="module")
def engines(checkpoint):
    """One engine without speculation and one drafting up to 4 tokens a step."""
    return {
        k: LLMEngine(EngineConfig(checkpoint, num_threads=1, block_size=4, speculative_tokens=k))
        for k in (0, 4)
    }


def identifier_tokens(tokenizer: Tokenizer) -> list[str]:
    words = (tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size()))
    return sorted({w for w in words if w and IDENTIFIER.fullmatch(w)})


@st.composite
def names(draw, pieces: list[str]) -> frozenset[str]:
    from_vocabulary = st.lists(st.sampled_from(pieces), min_size=1, max_size=3).map("".join)
    random_word = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True)
    words = draw(st.frozensets(st.one_of(from_vocabulary, random_word), min_size=1, max_size=8))
    # "": the user typed a whole member already (`items.append|`); the output may end it.
    return words | ({""} if draw(st.booleans()) else set())


def assert_inside(allowed: frozenset[str], text: str) -> None:
    """The text's first identifier is a name, or the start of one where the text ends in it."""
    state = constraint_state(allowed, text)
    assert state != "violated", (sorted(allowed), text)
    head = IDENTIFIER.match(text).group()
    if state == "done":
        assert head in allowed, (sorted(allowed), text)


def generate(engine: LLMEngine, ids: list[int], params: SamplingParams) -> list[str]:
    """The texts the request returns (a beam search's every candidate), with the forced prefix
    removed as the engine does; stop rules and strings are not set here, so nothing is cut."""
    engine.add_request("r", ids, params)
    seq = engine.seqs["r"]
    run_to_completion(engine)
    return [c.text for c in seq.candidates] if params.beam_search else [seq.text]


PATHS = {
    "greedy": dict(speculative=0),
    "speculative": dict(speculative=4),
    "sampled": dict(speculative=0, temperature=1.0),
    "beam": dict(speculative=0, num_beams=3),
}


@pytest.mark.slow  # hypothesis: 40 requests through the engine per path
@pytest.mark.parametrize("path", PATHS)
def test_the_first_identifier_is_an_allowed_member(engines, tokenizer, path):
    pieces = identifier_tokens(tokenizer)
    options = dict(PATHS[path])
    engine = engines[options.pop("speculative")]

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        allowed=names(pieces),
        prompt=st.sampled_from(PROMPTS),
        healed=st.booleans(),
        max_tokens=st.integers(1, 10),
        seed=st.integers(0, 2**16),
    )
    def check(allowed, prompt, healed, max_tokens, seed):
        # Token healing backed the prompt up by "." (the cursor is after `expr.`): the output
        # re-spells it first, and the names follow it.
        forced = "." if healed else ""
        params = SamplingParams(
            max_tokens=max_tokens,
            forced_prefix=forced,
            allowed_continuations=allowed,
            seed=seed,
            **options,
        )
        for text in generate(engine, tokenizer.encode(prompt).ids, params):
            assert_inside(allowed, text)

    check()


def test_speculative_greedy_is_plain_greedy_under_the_constraint(engines, tokenizer):
    """Drafts are verified under the mask: the tokens are exactly those of plain greedy decoding
    with the same constraint, and drafting did happen while the constraint was active."""
    pieces = identifier_tokens(tokenizer)
    verified_active = []
    next_tokens = engines[4].sampler.next_tokens
    verify = next_tokens.verified_greedy

    def counting(seq, draft, rows):
        names, _ = next_tokens.member_names(seq, seq.output_token_ids)
        verified_active.append(bool(names))
        return verify(seq, draft, rows)

    next_tokens.verified_greedy = counting
    try:

        @settings(max_examples=40, deadline=None, derandomize=True)
        @given(prompt=st.sampled_from(list(AFTER_DOT)), extra=names(pieces), mix=st.booleans())
        def check(prompt, extra, mix):
            allowed = frozenset(AFTER_DOT[prompt]) | (extra if mix else frozenset())
            ids = tokenizer.encode(prompt).ids
            params = SamplingParams(max_tokens=12, allowed_continuations=allowed)
            outputs = {}
            for k, engine in engines.items():
                engine.add_request("r", ids, params)
                seq = engine.seqs["r"]
                run_to_completion(engine)
                outputs[k] = seq.output_token_ids
            assert outputs[4] == outputs[0]

        check()
    finally:
        del next_tokens.verified_greedy
    assert any(verified_active)
