"""Context window: token budgets cut at line boundaries; snippets as comment lines."""

from service.prompt.window import (
    Snippet,
    clip_prefix,
    clip_suffix,
    imports_before,
    render_snippets,
)
from tests.support.fim_tokenizers import build_tokenizer

TOKENIZER = build_tokenizer("starcoder")
LINES = [f"value_{i} = compute({i})\n" for i in range(40)]


def n_tokens(text: str) -> int:
    return len(TOKENIZER.encode(text).ids)


def test_prefix_within_budget_is_kept_whole():
    prefix = "".join(LINES[:3]) + "    ret"
    assert clip_prefix(prefix, TOKENIZER.encode(prefix), 1000) == prefix


def test_prefix_keeps_last_whole_lines_within_budget():
    prefix = "".join(LINES) + "result = "
    for budget in (5, 17, 40, 100):
        clipped = clip_prefix(prefix, TOKENIZER.encode(prefix), budget)
        assert prefix.endswith(clipped)
        assert clipped.endswith("result = ")
        assert clipped == "result = " or prefix[len(prefix) - len(clipped) - 1] == "\n"
        assert n_tokens(clipped) <= budget + 1  # one token of slack at the seam
        # Greedy: one more line would not have fit.
        longer = prefix[: len(prefix) - len(clipped)].rsplit("\n", 2)[-2] + "\n" + clipped
        assert n_tokens(longer) > budget - 1


def test_cursor_line_longer_than_budget_is_cut_mid_line():
    prefix = "x = 1\n" + "a" * 10 + " + b" * 50
    clipped = clip_prefix(prefix, TOKENIZER.encode(prefix), 10)
    assert "\n" not in clipped and prefix.endswith(clipped) and 0 < n_tokens(clipped) <= 11


def test_suffix_keeps_first_whole_lines_within_budget():
    suffix = ")\n" + "".join(LINES)
    clipped = clip_suffix(suffix, TOKENIZER.encode(suffix), 30)
    assert suffix.startswith(clipped) and clipped.endswith("\n")
    assert n_tokens(clipped) <= 31
    assert n_tokens(suffix[: len(clipped) + len(LINES[0])]) > 30 - 1


def test_zero_budget_keeps_nothing():
    assert clip_prefix("a\nb", TOKENIZER.encode("a\nb"), 0) == ""
    assert clip_suffix("a\nb", TOKENIZER.encode("a\nb"), 0) == ""


def test_snippets_render_as_comment_lines():
    snippets = [Snippet("src/geometry.py", "class Point:\n    x: int\n")]
    assert render_snippets(snippets, "python", TOKENIZER, 1000) == (
        "# Path: src/geometry.py\n# class Point:\n#     x: int\n"
    )
    assert render_snippets(snippets, "typescript", TOKENIZER, 1000).startswith("// Path: ")


def test_snippets_respect_their_budget():
    big = Snippet("big.py", "".join(LINES))
    small = Snippet("small.py", "x = 1")
    rendered = render_snippets([big, small], "python", TOKENIZER, 40)
    assert rendered == "# Path: small.py\n# x = 1\n"
    assert render_snippets([big], "python", TOKENIZER, 5) == ""


def test_imports_before_a_window_are_the_module_level_ones_within_the_budget():
    text = (
        "import os\nfrom .lib import (\n    a,\n    b,\n)\nx = 1\nimport sys, re  # two\n\n"
        "def f():\n    import json\n    return os\nfrom z import y\n"
    )
    cut = text.index("def f")
    assert imports_before(text, cut, 1000) == (
        "import os\nfrom .lib import (\n    a,\n    b,\n)\nimport sys, re  # two\n"
    )
    assert imports_before(text, len(text), 1000).endswith("# two\nfrom z import y\n")  # not json
    assert imports_before(text, cut, 12) == "import os\n"  # the first ones that fit
    assert imports_before("def f():\n    pass\n", 18, 100) == ""
