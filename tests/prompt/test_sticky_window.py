"""Long files' windows stay put while the user types: the prefix window's start (the suffix
window's end) is kept while the text fits its budget, and moves by a large step to a line
boundary, a definition where there is one, when it must. Prompts that fit are untouched."""

from service.completion.sessions import EditorSession
from service.prompt.window import StickyWindows, clip_prefix, clip_suffix, line_rank
from tests.support.fim_tokenizers import build_tokenizer

TOKENIZER = build_tokenizer("starcoder")
BUDGET = 240
# A long file: functions of five lines, with a top-level statement between some of them.
FILE = "".join(
    f"def function_{i}(value):\n    total = value + {i}\n    total *= {i + 1}\n"
    f"    return total\n\n" + (f"TABLE_{i} = [{i}, {i + 1}]\n\n" if i % 3 == 0 else "")
    for i in range(60)
)


def encode(text: str):
    return TOKENIZER.encode(text, add_special_tokens=False)


def n_tokens(text: str) -> int:
    return len(encode(text).ids)


def keystrokes(text: str, start: int, typed: str):
    """The prefixes a user typing `typed` at `start` sends, one per character."""
    return [text[:start] + typed[: i + 1] for i in range(len(typed))]


def window_starts(windows: StickyWindows, prefixes: list[str], **who) -> list[int]:
    """Where each prefix's window begins, as an offset into the prefix."""
    starts = []
    for prefix in prefixes:
        kept = windows.clip_prefix(prefix, encode(prefix), BUDGET, **who)
        assert prefix.endswith(kept) and n_tokens(kept) <= BUDGET + 1
        starts.append(len(prefix) - len(kept))
    return starts


def test_a_prompt_that_fits_is_unchanged_and_nothing_is_remembered():
    windows = StickyWindows()
    prefix, suffix = FILE[:200], FILE[300:500]
    assert n_tokens(prefix) <= BUDGET and n_tokens(suffix) <= BUDGET
    assert windows.clip_prefix(prefix, encode(prefix), BUDGET, session="s") == prefix
    assert windows.clip_suffix(suffix, encode(suffix), BUDGET, session="s") == suffix
    assert not windows.sessions and not windows.edges


def test_the_start_stays_put_while_typing_then_moves_by_a_large_step_to_a_definition():
    windows, session = StickyWindows(step_fraction=0.25), EditorSession("tenant", "editor")
    step = windows.step(BUDGET)
    typed = "    extra = total + value\n" * 8
    prefixes = keystrokes(FILE, 2000, typed)
    starts = window_starts(windows, prefixes, session=session)
    moves = [i for i in range(1, len(starts)) if starts[i] != starts[i - 1]]
    # Once per `step` tokens typed at most, not with every line as the last-N-tokens window.
    assert 1 <= len(moves) <= n_tokens(typed) // step + 1
    old = {len(p) - len(clip_prefix(p, encode(p), BUDGET)) for p in prefixes}
    assert len(old) >= 3 * len(moves)
    for i in moves:
        prefix, start = prefixes[i], starts[i]
        assert prefix[start - 1] == "\n"
        assert line_rank(prefix, start) == 0  # a `def`: one begins every five lines
        # The window moved only because the text from the old start no longer fit...
        assert n_tokens(prefix[starts[i - 1] :]) > BUDGET - 2
        # ...and by a large step: it keeps room for `step` tokens of typing.
        assert n_tokens(prefix[start:]) <= BUDGET - step + 2


def test_requests_without_a_session_find_their_start_by_its_text():
    windows = StickyWindows()
    prefixes = keystrokes(FILE, 2000, "    extra = total")
    starts = window_starts(windows, prefixes)
    assert len(set(starts)) == 1
    # Another tenant's salt does not find the edges this one's requests left.
    other = StickyWindows()
    other.edges = windows.edges.copy()
    prefix = prefixes[-1]
    assert other.clip_prefix(prefix, encode(prefix), BUDGET, cache_salt="tenant-b") == (
        StickyWindows().clip_prefix(prefix, encode(prefix), BUDGET)
    )


def test_a_session_keeps_its_own_start_and_sessions_are_bounded():
    windows = StickyWindows(max_sessions=2)
    prefix = FILE[:2000]
    for tenant in ("a", "b", "c"):
        windows.clip_prefix(prefix, encode(prefix), BUDGET, session=EditorSession(tenant, "s"))
    assert len(windows.sessions) == 2
    assert (EditorSession("a", "s"), "prefix") not in windows.sessions


def test_the_suffix_end_stays_put_as_the_cursor_moves_down_then_moves_by_a_large_step():
    windows, session = StickyWindows(step_fraction=0.25), EditorSession("tenant", "editor")
    step = windows.step(BUDGET)
    line_starts = [i + 1 for i, c in enumerate(FILE) if c == "\n"][100:130]
    ends, suffixes = [], []
    for cursor in line_starts:  # the cursor moves down one line at a time
        suffix = FILE[cursor:]
        kept = windows.clip_suffix(suffix, encode(suffix), BUDGET, session=session)
        assert suffix.startswith(kept) and kept.endswith("\n") and n_tokens(kept) <= BUDGET + 1
        ends.append(cursor + len(kept))  # the window's end, as an offset into the file
        suffixes.append(suffix)
    moves = [i for i in range(1, len(ends)) if ends[i] != ends[i - 1]]
    # Once per `step` tokens the cursor passes at most, not with every line.
    passed = n_tokens(FILE[line_starts[0] : line_starts[-1]])
    assert 1 <= len(moves) <= passed // step + 1
    for i in moves:
        suffix, kept_end = suffixes[i], ends[i] - line_starts[i]
        assert ends[i] > ends[i - 1]  # the end moved forward, to a line end
        assert line_rank(suffix, kept_end) <= 1  # before a line at column 0
        assert n_tokens(suffix[:kept_end]) >= BUDGET - step - 2
        # It moved because the window had shrunk below budget - 2 steps.
        assert n_tokens(FILE[line_starts[i] : ends[i - 1]]) < BUDGET - 2 * step + 2
    # The old window's end followed the cursor.
    old = {c + len(clip_suffix(FILE[c:], encode(FILE[c:]), BUDGET)) for c in line_starts}
    assert len(old) >= 2 * len(moves)


def test_line_rank_prefers_definitions_over_their_decorators_body():
    text = "x = 1\n@cache\ndef f():\n    pass\nclass A:\n)\n"
    ranks = [line_rank(text, i) for i in (0, 6, 13, 22, 31, 40)]
    assert ranks == [1, 0, 1, 2, 0, 2]
