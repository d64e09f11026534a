"""Semantic pruning of beam search (service/engine/beam_pruning.py): a beam that closes a bracket
nothing opened is dropped during the search, on a scripted checkpoint whose best text does."""

import pytest
from tokenizers import Tokenizer

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.beam_pruning import unfixable
from tests.support.engine_runs import run_to_completion
from tests.support.scripted_checkpoint import build_scripted_checkpoint


@pytest.mark.parametrize(
    ("text", "open_brackets", "broken"),
    [
        ("x)", 0, True),  # closes nothing
        ("x)", 1, False),  # closes the cursor's bracket
        ("x))", 1, True),
        ("(a]", 0, True),  # the wrong kind for its own opener
        ("[a, (b)]", 0, False),
        ("')'", 0, False),  # in a string
        ('"""\n)\n"""', 0, False),  # in a triple-quoted string
        ("x  # )", 0, False),  # in a comment
        ("x\n)", 0, True),
        ("f(a,\n  b", 0, False),  # open is fine: a continuation may close it
        ("'it\\'s' )", 0, True),  # an escaped quote does not end the string
    ],
)
def test_unfixable(text, open_brackets, broken):
    assert unfixable(text, open_brackets) is broken


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A model whose best text closes a bracket: after `<fim_middle>` it spells `zork)`."""
    return build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model", "zork)")


def candidates(checkpoint, open_brackets: int | None) -> list[str]:
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    engine = LLMEngine(EngineConfig(model_path=checkpoint, num_threads=1, block_size=4))
    prompt = tokenizer.encode("x = 1\n").ids + [tokenizer.token_to_id("<fim_middle>")]
    params = SamplingParams(max_tokens=8, num_beams=3, ignore_eos=True, open_brackets=open_brackets)
    engine.add_request("b", prompt, params)
    seq = engine.seqs["b"]
    run_to_completion(engine)
    assert engine.block_manager.num_used_blocks == 0
    return [c.text for c in seq.candidates]


def test_beams_that_close_nothing_are_pruned_during_the_search(checkpoint):
    unpruned = candidates(checkpoint, None)
    assert unpruned[0].startswith("zork)")  # the model's best closes a bracket nothing opened
    pruned = candidates(checkpoint, 0)
    assert pruned and not any(unfixable(text, 0) for text in pruned)
    # With a bracket open at the cursor, the best closes it and stays first; a second `)` is
    # one too many.
    one_open = candidates(checkpoint, 1)
    assert one_open[0] == unpruned[0] and not any(unfixable(text, 1) for text in one_open)
