"""The semantic engine's output side (service/completion/finishing.py): one rule per test, plain
Python snippets; the cursor is where `|` stands; metrics read from the default registry."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from service.completion.finishing import (
    PARSED_FILES,
    SourceFile,
    count_parse,
    finish_code,
    ranks_last,
)
from service.completion.runner import CompletionRunner, Job, decoding_key
from service.completion.semantics import SessionTrees, legal_members
from service.engine import RequestOutput, SamplingParams
from service.engine.output_processor import Candidate
from service.prompt.builder import Prompt
from service.semantic import cursor
from service.semantic.syntax import parse


def source(text: str) -> SourceFile:
    prefix, suffix = text.split("|")
    return SourceFile(prefix, suffix)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counted(outcome: str) -> float:
    return sample("semantic_suggestions_total", outcome=outcome)


FILE = source("def total(items):\n    s = 0\n    |\n\nprint(total([1]))\n")


def test_a_suggestion_that_passes_is_kept_and_counted_as_parsing():
    before = counted("kept"), sample("semantic_served_parsed_total", semantic="on")
    text = "for x in items:\n        s += x\n    return s"
    assert finish_code(text, FILE, "drop") == text
    after = counted("kept"), sample("semantic_served_parsed_total", semantic="on")
    assert after == (before[0] + 1, before[1] + 1)


def test_post_processing_stops_at_the_end_of_the_scope():
    before = counted("cleaned")
    assert finish_code("return sum(items)\n\ndef other():\n    pass", FILE, "drop") == (
        "return sum(items)"
    )
    assert counted("cleaned") == before + 1


def test_style_follows_the_file():
    two_spaces = source("def f(items):\n  if items:\n    return 'a'\n  |\n")
    assert finish_code('for x in items:\n    print("x")', two_spaces, "drop") == (
        "for x in items:\n    print('x')"  # the file's quote; its 2-space unit already
    )


def test_a_failing_suggestion_is_cut_to_its_valid_part():
    before = counted("repaired")
    text = "s = len(items)\n    return s + undefined_total"
    assert finish_code(text, FILE, "drop") == "s = len(items)"
    assert counted("repaired") == before + 1


@pytest.mark.parametrize(
    ("text", "outcome"),
    [(")", "dropped_empty"), ("   ", "dropped_empty"), ("nowhere(items)", "dropped_invalid")],
)
def test_nothing_worth_showing_is_dropped(text, outcome):
    before = counted(outcome)
    assert finish_code(text, FILE, "drop") == ""
    assert counted(outcome) == before + 1


UNSAFE = "return eval(items)"


def test_unsafe_suggestions_are_dropped_by_default_and_counted_by_rule():
    before = sample("semantic_unsafe_suggestions_total", rule="eval_exec", action="dropped")
    assert finish_code(UNSAFE, FILE, "drop") == ""
    after = sample("semantic_unsafe_suggestions_total", rule="eval_exec", action="dropped")
    assert after == before + 1
    assert not ranks_last("", FILE, "drop")


def test_unsafe_suggestions_ranked_last_or_allowed_are_kept():
    assert finish_code(UNSAFE, FILE, "last") == UNSAFE
    assert ranks_last(UNSAFE, FILE, "last")
    assert not ranks_last("return sum(items)", FILE, "last")
    assert finish_code(UNSAFE, FILE, "allow") == UNSAFE
    assert not ranks_last(UNSAFE, FILE, "allow")


def test_the_parse_share_without_the_checks():
    served = sample("semantic_served_suggestions_total", semantic="off")
    parsed = sample("semantic_served_parsed_total", semantic="off")
    count_parse("return s", FILE)
    count_parse("return (s", FILE)
    count_parse("", FILE)  # an empty choice is not a served suggestion
    assert sample("semantic_served_suggestions_total", semantic="off") == served + 2
    assert sample("semantic_served_parsed_total", semantic="off") == parsed + 1


# Through the completion runner, with an engine that answers scripted texts.


class Scripted:
    """Answers request i with texts[i] (its stream: each text's halves, then the whole), or with
    beam candidates when `beams` is set."""

    def __init__(self, texts: list[str], beams: bool = False):
        self.texts, self.beams = texts, beams

    def generate(self, prompt_token_ids, params, request_id, cache_salt=None):
        return self.answer(int(request_id))

    async def answer(self, i: int) -> AsyncIterator[RequestOutput]:
        if self.beams:
            candidates = [Candidate(t, [7], -1.0, "stop") for t in self.texts]
            yield RequestOutput(str(i), self.texts[0], [7], True, "stop", 3, 0, candidates)
            return
        text = self.texts[i]
        yield RequestOutput(str(i), text[: len(text) // 2], [7], False, None, 3, 0)
        yield RequestOutput(str(i), text, [7, 8], True, "stop", 3, 0)

    def abort(self, request_id: str) -> None:
        pass


PROMPT = Prompt([1, 2, 3], "", FILE.prefix, FILE.suffix, newline="\n")


def jobs(count: int, unsafe: str = "drop", semantic: bool = True, num_choices: int = 1):
    return [
        Job(str(i), "acme", None, PROMPT, SamplingParams(max_tokens=8), None, True,
            num_choices=num_choices, semantic=semantic, unsafe_suggestions=unsafe)
        for i in range(count)
    ]  # fmt: skip


async def no_disconnect() -> None:
    await asyncio.Event().wait()


def texts(runner: CompletionRunner, batch: list[Job]) -> list[str]:
    completions = asyncio.run(runner.generate(batch, 5.0, no_disconnect))
    assert [c.index for c in completions] == list(range(len(completions)))
    return [c.text for c in completions]


SAFE, INVALID = "return sum(items)", "nowhere(items)"


def test_with_n_choices_the_next_candidate_moves_up():
    runner = CompletionRunner(Scripted([UNSAFE, INVALID, SAFE]))
    assert texts(runner, jobs(3)) == [SAFE, "", ""]
    assert texts(runner, jobs(3, unsafe="last")) == [SAFE, UNSAFE, ""]
    # The switch off: the model's texts, in the model's order.
    assert texts(runner, jobs(3, semantic=False)) == [UNSAFE, INVALID, SAFE]


def test_a_beam_search_passes_over_a_try_python_rejects():
    # tree-sitter's recovery accepts a `try:` with no `except`; Python's parser does not.
    open_try = "try:\n        s = sum(items)\n    return s"
    runner = CompletionRunner(Scripted([open_try, SAFE], beams=True))
    assert texts(runner, jobs(1)) == [SAFE]
    closed = "try:\n        s = sum(items)\n    except TypeError:\n        s = -1"
    runner = CompletionRunner(Scripted([closed, SAFE], beams=True))
    assert texts(runner, jobs(1)) == [closed]


def test_a_beam_search_skips_dropped_candidates():
    runner = CompletionRunner(Scripted([UNSAFE, INVALID, SAFE, "return s"], beams=True))
    assert texts(runner, jobs(1, num_choices=2)) == [SAFE, "return s"]
    runner = CompletionRunner(Scripted([UNSAFE, INVALID], beams=True))
    assert texts(runner, jobs(1, num_choices=2)) == [""]  # all dropped: one empty choice


class Recording(Scripted):
    """Scripted, and keeps the parameters each request reached the engine with."""

    def __init__(self, texts: list[str], beams: bool = False):
        super().__init__(texts, beams)
        self.params: list[SamplingParams] = []

    def generate(self, prompt_token_ids, params, request_id, cache_salt=None):
        self.params.append(params)
        return super().generate(prompt_token_ids, params, request_id, cache_salt)


def test_a_semantic_beam_search_is_told_the_brackets_open_at_the_cursor():
    """So it can prune a beam that closes one more (service/engine/beam_pruning.py)."""
    engine = Recording([SAFE], beams=True)
    runner = CompletionRunner(engine)
    prompt = Prompt([1, 2, 3], "", "x = f(a, [b,", ")\n", newline="\n")
    beam = SamplingParams(max_tokens=8, num_beams=2)
    for semantic in (True, False):
        job = Job("0", "acme", None, prompt, beam, None, True, semantic=semantic)
        texts(runner, [job])
    assert [p.open_brackets for p in engine.params] == [2, None]
    job = Job("0", "acme", None, PROMPT, SamplingParams(max_tokens=8), None, True, semantic=True)
    texts(runner, [job])  # greedy: nothing to prune
    assert engine.params[-1].open_brackets is None


def test_after_a_dot_n_choices_are_n_members_first():
    """Hybrid ranking: the best candidate of each member first, in the model's order, then the
    second ways to use one."""
    prompt = Prompt([1, 2, 3], "", 'x = "a"\ny = x.', "\n", newline="\n")
    beams = ["upper()", "upper().strip()", "lower()", "strip()"]

    def choices(semantic: bool, n: int) -> list[str]:
        runner = CompletionRunner(Scripted(beams, beams=True))
        params = SamplingParams(max_tokens=8, num_beams=4)
        job = Job("0", "acme", None, prompt, params, None, True, num_choices=n, semantic=semantic)
        return texts(runner, [job])

    assert choices(True, 3) == ["upper()", "lower()", "strip()"]
    assert choices(True, 4) == ["upper()", "lower()", "strip()", "upper().strip()"]
    assert choices(False, 3) == beams[:3]  # the switch off: the model's order


def test_a_checked_stream_is_buffered_until_the_text_is_final():
    text = "return sum(items)\n\ndef other():\n    pass"
    runner = CompletionRunner(Scripted([text]))

    async def deltas(batch: list[Job]) -> list[str]:
        return [d.text async for d in runner.stream(batch, runner.start(batch), 5.0)]

    assert asyncio.run(deltas(jobs(1))) == ["return sum(items)"]
    # The switch off: streamed piece by piece, as the model wrote it.
    assert asyncio.run(deltas(jobs(1, semantic=False))) == ["return sum(items)\n\n", text[19:]]


def test_the_cache_key_tells_the_output_policies_apart():
    keys = {
        str(decoding_key(job))
        for job in (jobs(1)[0], jobs(1, semantic=False)[0], jobs(1, unsafe="last")[0])
    }
    assert len(keys) == 3


def test_the_analysis_hands_its_parse_to_the_checks():
    """The job's analysis parsed this very text (incrementally, from the editor session's last
    tree): the checks take that tree, not a fresh parse, and judge as they would on a fresh one."""
    trees = SessionTrees()
    first = source("import os\n\ndef f(path):\n    return os.|\n")
    legal_members(first, "editor-1", trees)
    file = source("import os\n\ndef f(path):\n    x = 1\n    return os.|\n")
    legal_members(file, "editor-1", trees)
    handed = PARSED_FILES.around(file).tree
    assert handed is not None
    assert str(handed.root_node) == str(parse(file.prefix + file.suffix).root_node)
    assert finish_code("path.join(path)", file, "drop") == "path.join(path)"
    assert finish_code("nowhere(path)", file, "drop") == ""


def test_a_file_too_large_to_parse_in_a_keystroke_is_not_checked(monkeypatch):
    """Past the analysis's size bound the output side parses nothing either (four 900 KB bodies
    once held the event loop for seconds): the suggestion is cleaned, not checked."""
    monkeypatch.setattr(cursor, "MAX_BYTES", len(FILE.prefix) + len(FILE.suffix) - 1)
    before = counted("unchecked")
    assert finish_code("nowhere(items)", FILE, "drop") == "nowhere(items)"
    assert counted("unchecked") == before + 1
