"""Python's own parser on the definition around the cursor (service/semantic/python_syntax.py):
plain Python snippets as fixtures; the cursor is where `|` stands in each source."""

import warnings

import pytest

from service.semantic.python_syntax import (
    MAX_CHARS,
    parses_as_it_is,
    statement_around,
    syntax_error_at,
)


def error_at(source: str, completion: str) -> int | None:
    prefix, suffix = source.split("|")
    statement = statement_around(prefix, suffix)
    assert statement is not None and parses_as_it_is(statement, prefix, suffix)
    return syntax_error_at(statement, prefix, completion, suffix)


def region(source: str) -> str | None:
    prefix, suffix = source.split("|")
    statement = statement_around(prefix, suffix)
    return None if statement is None else (prefix + suffix)[statement.start : statement.end]


METHOD = (
    "import os\n\nclass A:\n    def f(self, items):\n        total = 0\n        |\n"
    "        return total\n\n    def g(self):\n        return 1\n"
)


@pytest.mark.parametrize(
    "completion, at",
    [
        ("total += 1", None),
        ("for x in items:\n            total += x", None),
        ("if total:", len("if total:")),  # a header whose body is the next line's to write
        ("with open(x) as fh:", len("with open(x) as fh:")),
        ("try:\n            total = sum(items)", len("try:\n            total = sum(items)")),
        ("x = ope[", len("x = ope")),  # Python points at the bracket left open
        ("if self.z", len("if self.z")),  # a header that stops before its colon
        ("import sys\n        from glo", len("import sys\n        from glo")),  # runs into a line
        ("return total\n    def h(self):\n        pass", None),  # the next method: still fine
        ("return total\nx = 1", len("return total\nx = 1")),  # the method's rest is orphaned
    ],
)
def test_python_finds_what_the_completion_breaks(completion, at):
    assert error_at(METHOD, completion) == at


def test_the_region_is_the_innermost_definition_around_the_cursor():
    assert region(METHOD) == (
        "    def f(self, items):\n        total = 0\n        \n        return total\n\n"
    )
    # A header over several lines; a nested block at the cursor.
    source = "def f(\n    a,\n) -> int:\n    if a:\n        |\n    return a\nx = 1\n"
    assert region(source) == "def f(\n    a,\n) -> int:\n    if a:\n        \n    return a\n"
    # At module level: the statement the cursor is in, an `else:` with its `if`.
    source = "import os\nif os.sep:\n    a = 1\nelse:\n    |\n    b = 2\nc = 3\n"
    assert region(source) == "if os.sep:\n    a = 1\nelse:\n    \n    b = 2\n"
    assert region("import os\n|\nx = 1\n") == "\n"  # a blank line at column 0: its own statement


def test_tabs_and_the_rest_of_a_broken_file():
    source = "def f(a):\n\tb = a\n\t|\n\treturn b\n\ndef broken(:\n"
    assert error_at(source, "c = b") is None
    assert error_at(source, "if b:") == len("if b:")


def test_a_name_missing_at_the_cursor_is_the_completions_to_supply():
    source = "def f(a):\n    x = a.|\n    return x\n"
    assert error_at(source, "real") is None
    assert error_at(source, "") == 0


@pytest.mark.parametrize(
    "source",
    [
        "def f(a):\n    x = max(|\n    return x\n",  # broken at the cursor beyond a name
        'def f():\n    s = """\nsql at column 0\n"""\n    |\n',  # a string's line ends the walk
        "def f():\n" + "    x = 1\n" * (MAX_CHARS // 10) + "    |\n",  # too long to parse per key
    ],
)
def test_where_python_cannot_judge_it_says_nothing(source):
    prefix, suffix = source.split("|")
    statement = statement_around(prefix, suffix)
    assert statement is None or not parses_as_it_is(statement, prefix, suffix)


def test_the_users_invalid_escapes_warn_nobody():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert error_at('def f():\n    p = "\\d"\n    |\n', 'q = "\\w"') is None
