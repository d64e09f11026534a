"""Tabby's character clip stays put while the user types (issue 24), like the token window."""

from service.prompt.window import StickyWindows, clip_prefix_chars

MAX = 1536


def typed_prefixes(lines: int = 200, keystrokes: int = 300) -> list[str]:
    text = "".join(f"    value_{i} = compute({i}, other={i * 7})\n" for i in range(lines))
    start = len(text) // 2
    return [text[: start + k] for k in range(keystrokes)]


def starts(clipped: list[str], prefixes: list[str]) -> list[int]:
    return [len(p) - len(c) for p, c in zip(prefixes, clipped, strict=True)]


def test_the_sticky_clip_moves_far_less_often_than_the_plain_one_and_keeps_its_contract():
    prefixes = typed_prefixes()
    windows = StickyWindows()
    sticky = [windows.clip_prefix_chars(p, MAX, session="s1") for p in prefixes]
    plain = [clip_prefix_chars(p, MAX) for p in prefixes]
    for prefix, clipped in zip(prefixes, sticky, strict=True):
        assert prefix.endswith(clipped) and len(clipped) <= MAX
        assert prefix[len(prefix) - len(clipped) - 1] == "\n"  # a whole line first
    moves = lambda s: sum(a != b for a, b in zip(s, s[1:], strict=False))  # noqa: E731
    assert moves(starts(plain, prefixes)) >= 6  # one per line typed: 300 chars, ~45 per line
    assert moves(starts(sticky, prefixes)) <= 1  # a step is a quarter of MAX: 384 chars


def test_without_a_session_the_start_is_found_by_its_text():
    prefixes = typed_prefixes()
    windows = StickyWindows()
    sticky = [windows.clip_prefix_chars(p, MAX, cache_salt="tenant") for p in prefixes]
    assert len(set(starts(sticky, prefixes))) <= 2


def test_a_short_prefix_is_unchanged():
    assert StickyWindows().clip_prefix_chars("x = 1\n", MAX, session="s") == "x = 1\n"
