"""Code-aware stopping rules and suffix-overlap removal."""

import pytest

from service.semantic.stopping import drop_suffix_overlap, make_stop_rule


def complete(rule, text: str) -> str:
    """What the engine would return: the rule is asked after every character, as tokens arrive."""
    for end in range(1, len(text) + 1):
        cut = rule.cut(text[:end])
        if cut is not None:
            return text[:end][:cut]
    return text


def test_none_mode_has_no_rule():
    assert make_stop_rule("none", "x = ", "") is None


def test_line_mode_stops_at_end_of_line():
    rule = make_stop_rule("line", "result = compute(", "")
    assert complete(rule, "value, 2)\nprint(result)\n") == "value, 2)"


def test_auto_is_line_mode_when_code_follows_the_cursor():
    rule = make_stop_rule("auto", "total = add(", ")\nprint(total)\n")
    assert complete(rule, "a, b\n    more = 1\n") == "a, b"


def test_block_mode_stops_when_indentation_falls_below_the_cursor_block():
    prefix = "def area(w, h):\n    "
    rule = make_stop_rule("auto", prefix, "")
    text = "if w < 0:\n        raise ValueError(w)\n    return w * h\n\ndef other():\n    pass\n"
    assert complete(rule, text) == "if w < 0:\n        raise ValueError(w)\n    return w * h"


def test_block_mode_after_a_line_that_opens_a_block():
    rule = make_stop_rule("block", "for item in items:", "")
    text = "\n    total += item\n    count += 1\nprint(total)\n"
    assert complete(rule, text) == "\n    total += item\n    count += 1"


def test_block_mode_stops_at_a_blank_line_run():
    rule = make_stop_rule("block", "", "")
    text = "import os\nimport sys\n\n\nx = 1\n"
    assert complete(rule, text) == "import os\nimport sys"


def test_block_mode_keeps_single_blank_lines_inside_the_block():
    rule = make_stop_rule("block", "def f():\n    ", "")
    text = "a = 1\n\n    return a\nx = 2\n"
    assert complete(rule, text) == "a = 1\n\n    return a"


def test_block_rule_waits_for_a_line_to_show_its_indentation():
    rule = make_stop_rule("block", "def f():\n    ", "")
    assert rule.cut("x = 1\n") is None  # the next line has not started
    assert rule.cut("x = 1\n   ") is None  # only whitespace so far: could still be deeper
    assert rule.cut("x = 1\ny") == len("x = 1")


@pytest.mark.parametrize(
    "prefix, text, suffix, expected",
    [
        ("print(compute(", "x, y))", ")\n", "x, y)"),  # the closing bracket is already there
        ("print(", "x)", ")\n", "x"),
        ("foo(", "bar(1)", ")\n", "bar(1)"),  # balanced: the ")" closes bar, keep it
        ("x = ", "1", "\n", "1"),
        (
            "def f():\n    ",
            "a = 1\n    return a",
            "\n    return a\n",
            "a = 1",
        ),
        ("def f():\n    ", "a = 1\n    b = 2", "\n    return a\n", "a = 1\n    b = 2"),
    ],
)
def test_drop_suffix_overlap(prefix, text, suffix, expected):
    assert drop_suffix_overlap(text, prefix, suffix) == expected
