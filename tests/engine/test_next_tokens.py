"""Constraints on a completion's first tokens (service/engine/next_tokens.py): token healing's
forced prefix, code on the first line at a cursor on a blank line, and the member after `expr.`
combined with token healing and verified under speculation."""

import random
import sys

import pytest
import torch
from tokenizers import Tokenizer

from service.completion.plan import sampling_params
from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.member_constraint import MemberConstraint
from service.engine.next_tokens import NextTokens
from service.engine.sequence import Sequence
from service.prompt.builder import Prompt
from tests.support.scripted_checkpoint import build_scripted_checkpoint

STRINGS = ["\n", "  \n", "x\n", "    ", " x", "\n    ", "<eos>"]
EOS = 6


def next_tokens(strings: list[str]) -> NextTokens:
    texts = [None if i == EOS else s for i, s in enumerate(strings)]
    return NextTokens(strings, {EOS}, MemberConstraint(texts, {EOS}))


def allowed(forced: str = "", generated: str = "", code: bool = True) -> set[int] | None:
    seq = Sequence("r", [1], SamplingParams(forced_prefix=forced, code_on_first_line=code))
    seq.raw_text = generated
    mask = next_tokens(STRINGS).allowed(seq, len(STRINGS) + 2)  # the model's vocab pads
    return None if mask is None else set(mask.nonzero().flatten().tolist())


def test_blank_first_line_cannot_end():
    # "\n    " ends the cursor's line too, blank, and starts the next one.
    assert allowed() == allowed(generated="   ") == {2, 3, 4}
    assert allowed(generated="  x") is None and allowed(code=False) is None


def test_forced_prefix_tokens_that_end_the_line_blank_are_excluded():
    assert allowed(forced="  ", code=False) == {1, 3}
    assert allowed(forced="  ") == {3}  # "  \n" spells the prefix, then ends the line blank
    # The forced newline is the prompt's own: spelling it is no blank line of the output.
    assert allowed(forced="\n  ") == {0, 5}


def test_spelling_is_every_token_that_continues_the_text():
    """The bisection over sorted texts finds what a scan of the vocabulary finds, on random
    vocabularies (duplicates, the last code point, the stop token) and texts."""
    rng = random.Random(0)
    alphabet = [" ", "\n", "a", "b", "é", chr(sys.maxunicode)]
    for _ in range(300):
        strings = ["".join(rng.choices(alphabet, k=rng.randint(1, 4))) for _ in range(40)]
        strings[EOS] = "<eos>"
        tokens = next_tokens(strings)
        for _ in range(10):
            remaining = "".join(rng.choices(alphabet, k=rng.randint(1, 5)))
            scan = {
                t
                for t, text in enumerate(strings)
                if t != EOS and (text.startswith(remaining) or remaining.startswith(text))
            }
            assert sorted(tokens.spelling(remaining)) == sorted(scan)


def test_healing_masks_are_cached_and_stay_right():
    tokens = next_tokens(STRINGS)
    seq = Sequence("r", [1], SamplingParams(forced_prefix="  ", code_on_first_line=True))
    first = tokens.allowed(seq, len(STRINGS))
    assert tokens.allowed(seq, len(STRINGS)) is first  # built once
    assert set(first.nonzero().flatten().tolist()) == {3}
    seq.params = SamplingParams(forced_prefix="  ", code_on_first_line=False)
    assert set(tokens.allowed(seq, len(STRINGS)).nonzero().flatten().tolist()) == {1, 3}


MEMBER_STRINGS = ["a", "ap", "app", "append", "apx", "pend", "<eos>", "(", "pop", "x", "endleft"]


def member_allowed(forced: str, names: set[str], output: list[int]) -> set[int] | None:
    params = SamplingParams(forced_prefix=forced, allowed_continuations=frozenset(names))
    seq = Sequence("r", [1], params)
    seq.token_ids += output
    seq.raw_text = "".join(MEMBER_STRINGS[t] for t in output)
    mask = next_tokens(MEMBER_STRINGS).allowed(seq, len(MEMBER_STRINGS) + 1)
    return None if mask is None else set(mask.nonzero().flatten().tolist())


def test_member_constraint_after_token_healing():
    # `d.ap|` on a deque: healing backed the prompt up by "ap", the names are what follows it.
    names = {"pend", "pendleft", "pop"[2:]}
    # Spelling the forced "ap" and going on inside the set: "a", "ap", "app", "append"; not
    # "apx" (outside), nor EOS.
    assert member_allowed("ap", names, []) == {0, 1, 2, 3}
    assert member_allowed("ap", names, [1]) == {5}  # "pend" ("p" is not a token here)
    assert member_allowed("ap", names, [3]) == {7}  # "append" done: then "(" only
    assert member_allowed("ap", names, [3, 7]) is None  # over
    # Without healing: the names themselves; a dead end gives the stop token alone.
    assert member_allowed("", {"pop", "x"}, []) == {8, 9}
    assert member_allowed("", {"zz"}, []) == {EOS}


def test_drafts_are_verified_under_the_member_constraint():
    tokens = next_tokens(MEMBER_STRINGS)
    seq = Sequence("r", [1], SamplingParams(allowed_continuations=frozenset({"pop"})))
    rows = torch.zeros(3, len(MEMBER_STRINGS))
    rows[:, 9] = 5.0  # the model prefers "x" everywhere
    rows[:, 8] = 1.0
    rows[:, 7] = 2.0
    # The draft "x": outside the set, so the verifier's own choice there is "pop", a miss.
    assert tokens.verified_greedy(seq, [9, 7], rows) == [8, 9, 9]
    # The draft "pop" "(": "pop" matches; after it the constraint waits for a non-identifier
    # character, and "(" is the best of those; after "(" the model's own choice stands.
    assert tokens.verified_greedy(seq, [8, 7], rows) == [8, 7, 9]


SCRIPT = "  \nprint(add)"  # the model would rather leave the cursor's line blank


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_scripted_checkpoint(
        tmp_path_factory.mktemp("blank_first") / "model", SCRIPT, runner_up=(1, "pr")
    )


def complete(checkpoint, prompt: list[int], params: SamplingParams, speculative: int = 0) -> str:
    engine = LLMEngine(EngineConfig(checkpoint, num_threads=1, speculative_tokens=speculative))
    engine.add_request("r", prompt, params)
    seq = engine.seqs["r"]
    while engine.has_work():
        engine.step()
    return seq.text


@pytest.mark.parametrize(
    ("num_beams", "speculative"), [(1, 0), (1, 4), (2, 0)], ids=["greedy", "drafts", "beams"]
)
def test_code_on_the_first_line(checkpoint, num_beams, speculative):
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    middle = tokenizer.token_to_id("<fim_middle>")
    # The context holds "x = " <fim_middle> SCRIPT: once "  " is out, the prompt lookup drafts
    # "\n" and the rest, which the model's own choice would accept.
    equals = tokenizer.encode("x = ").ids
    prompt = [*equals, middle, *tokenizer.encode(SCRIPT + "\n").ids, *equals, middle]
    texts = {
        code: complete(
            checkpoint,
            prompt,
            SamplingParams(max_tokens=12, num_beams=num_beams, code_on_first_line=code),
            speculative,
        )
        for code in (False, True)
    }
    assert texts == {False: SCRIPT, True: "  print(add)"}


@pytest.mark.parametrize(
    ("prefix", "suffix", "stop_mode", "code"),
    [
        ("def f():\n    ", "\n    return 1\n", "auto", True),
        ("def f():\n", "", "line", True),
        ("def f():\n    ", "", "none", False),  # OpenAI's own semantics: the model's choice
        ("def f():\n    x", "\n", "auto", False),
        ("def f():\n    ", "  # later\n", "auto", False),
    ],
)
def test_dialects_ask_for_code_on_a_blank_cursor_line(prefix, suffix, stop_mode, code):
    prompt = Prompt([1], "", prefix, suffix, "\n")
    params = sampling_params(
        prompt, max_tokens=8, temperature=0.0, top_p=1.0, seed=None, stop=[], stop_mode=stop_mode
    )
    assert params.code_on_first_line is code
