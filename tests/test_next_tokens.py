"""Constraints on a completion's first tokens (service/engine/next_tokens.py): token healing's
forced prefix, and code on the first line at a cursor on a blank line."""

import pytest
from tokenizers import Tokenizer

from service.api.dialects.sampling import sampling_params
from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.next_tokens import NextTokens
from service.engine.sequence import Sequence
from service.prompt.builder import Prompt
from tests.scripted_checkpoint import build_scripted_checkpoint

STRINGS = ["\n", "  \n", "x\n", "    ", " x", "\n    ", "<eos>"]
EOS = 6


def allowed(forced: str = "", generated: str = "", code: bool = True) -> set[int] | None:
    seq = Sequence("r", [1], SamplingParams(forced_prefix=forced, code_on_first_line=code))
    seq.raw_text = generated
    mask = NextTokens(STRINGS, {EOS}).allowed(seq, len(STRINGS) + 2)  # the model's vocab pads
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
