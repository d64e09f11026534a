"""Checks of ML completions against their file (service/semantic/checks.py): plain Python snippets
as fixtures; the cursor is where `|` stands in each source."""

import signal
from pathlib import Path

import pytest

from service.semantic.checks import FileAround, Problem, adds_syntax_error, problems, valid_part


def around(source: str) -> FileAround:
    prefix, suffix = source.split("|")
    return FileAround(prefix, suffix)


FUNCTION = "import os\n\ndef f(items, *rest, key=None):\n    total = 0\n    |\n"


@pytest.mark.parametrize(
    "completion",
    [
        "for x in items:\n        total += x",  # loop variable bound by the completion
        "return [y * 2 for y in items if y]",  # comprehension variable
        "return sorted(rest, key=key)",  # parameters, builtins
        "g = lambda q, *r: q + len(r)",  # lambda parameters
        "with open(items) as fh:\n        return fh.read()",  # `with ... as`
        "try:\n        pass\n    except ValueError as e:\n        print(e)",  # `except ... as`
        "import json\n    return json.dumps(items)",  # an import in the completion
        "def inner(a):\n        return a + total\n    return inner",  # a nested definition
        "return os.path.join(__file__, 'x')",  # module globals
        "return helper(items)",  # defined below the cursor, at module level
        "return f(items, key=total)",  # a keyword argument's name is not read
    ],
)
def test_names_that_resolve_pass(completion):
    file = around(FUNCTION + "\ndef helper(x):\n    return x\n")
    assert problems(file, completion) == ()


def test_attributes_on_subscripts_and_calls_are_checked_in_bounded_time():
    """`a[0].b`: a subscript's receiver is its `value` field. Reading `object` there found
    nothing and looped forever: the check held the server's event loop on a suggestion as common
    as `lines[0].strip()` (found by the semantic evaluation on real code)."""

    def hung(signum, frame):
        raise TimeoutError("problems() did not return")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        assert problems(around(FUNCTION), "return items[0].strip()") == ()
        assert problems(around(FUNCTION), "return key()[1:].upper().lower()") == ()
        found = problems(around(FUNCTION), "return zork[0].strip()")
        assert [(p.kind, p.name) for p in found] == [("undefined_name", "zork")]
        unknown = problems(around(FUNCTION), "return [os][0].zork")
        assert unknown == ()  # a list's item: no known type, nothing to say
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_match_captures_are_bound():
    source = "def slots(value):\n    match value:\n        |\n"
    for completion in (
        "case str(slot):\n            yield slot",
        "case other if hasattr(other, 'x'):\n            yield other",
        "case [first, *rest]:\n            yield first, rest",
        "case {'k': v, **others}:\n            yield v, others",
        "case Point(x=px) as whole:\n            yield px, whole",
    ):
        assert problems(around(source), completion) == (), completion
    found = problems(around(source), "case Color.RED:\n            yield RED")
    # A dotted name is a value to compare, not a capture: `RED` stays unbound.
    assert [(p.kind, p.name) for p in found] == [("undefined_name", "RED")]


# Real code by experts: every third line deep in a function of these modules is sent as the
# completion at its own place. A check that flags one would drop a right suggestion.
REAL_CODE = ("argparse", "pathlib", "logging.handlers", "collections", "dataclasses",
             "email.message", "http.client", "configparser", "typing")  # fmt: skip


@pytest.mark.slow  # ~20 s: a few thousand checks
@pytest.mark.parametrize("module", REAL_CODE)
def test_the_standard_librarys_own_lines_pass_the_checks(module):
    import importlib
    import re

    source = Path(importlib.import_module(module).__file__).read_text()
    flagged, offset, checked, judged_by_python = [], 0, 0, 0
    for number, line in enumerate(source.splitlines(keepends=True)):
        body = line.strip()
        code = body and not body.startswith(("#", '"', "'")) and line.startswith(" " * 8)
        if code and number % 3 == 0 and not re.match(r"[\w ,]*\)", body):  # not docstring prose
            indent = len(line) - len(line.lstrip())
            file = FileAround(source[: offset + indent], source[offset + len(line.rstrip("\n")) :])
            kinds = {p.kind for p in problems(file, line[indent:].rstrip("\n"))}
            if kinds:
                flagged.append((number + 1, body, kinds))
            checked += 1
            judged_by_python += file.python_judges
        offset += len(line)
    assert flagged == []
    assert judged_by_python > checked / 2  # Python's parser had its say on most of them


def test_an_undefined_name_is_found_where_it_is_read():
    file = around(FUNCTION)
    assert problems(file, "return len(itemz)") == (Problem("undefined_name", 11, "itemz"),)
    # A method's local is not in scope in another function.
    file = around("def f():\n    secret = 1\n\ndef g():\n    return |\n")
    assert problems(file, "secret")[0].kind == "undefined_name"


def test_a_star_import_turns_the_name_check_off():
    assert problems(around("from os import *\nx = |\n"), "getcwd()") == ()


def test_the_cursor_inside_a_word_checks_the_whole_word():
    assert problems(around("def f(a):\n    return pri|\n"), "nt(a)") == ()
    assert problems(around("def f(a):\n    return pri|\n"), "ntx(a)")[0].name == "printx"


CLASS = (
    "import os\n\nclass Point:\n    kind = 'p'\n\n    def __init__(self):\n"
    "        self.x = 0\n\n    def norm(self):\n        return self.|\n"
)


@pytest.mark.parametrize("member", ["x", "kind", "norm", "__class__"])
def test_attributes_that_exist_on_a_known_type_pass(member):
    assert problems(around(CLASS), member) == ()


def test_an_attribute_a_known_type_lacks_is_found():
    assert problems(around(CLASS), "y") == (Problem("unknown_attribute", 0, "y"),)
    assert problems(around("s = 'abc'\nt = s.|\n"), "upperx()")[0].name == "upperx"
    assert problems(around("import os\np = os.|\n"), "pathx")[0].name == "pathx"
    assert problems(around("import os\np = os.|\n"), "path.join('a')") == ()


@pytest.mark.parametrize(
    "source",
    [
        "class P(Unknown):\n    def f(self):\n        return self.|\n",  # a base we cannot see
        "class P(metaclass=M):\n    def f(self):\n        return self.|\n",
        "class P:\n    def __getattr__(self, n):\n        pass\n    def f(self):\n"
        "        return self.|\n",
        "def f(x):\n    return x.|\n",  # an unknown type
    ],
)
def test_members_the_tree_cannot_show_are_not_judged(source):
    assert problems(around(source), "anything") == ()


def test_an_attribute_the_completion_assigns_or_a_name_it_rebinds_is_not_judged():
    file = around(CLASS.replace("return self.|", "|"))
    assert problems(file, "self.y = 1\n        return self.y") == ()
    assert problems(around("s = 'abc'\n|\n"), "s = [1]\ns.append(2)") == ()


def test_brackets_a_stray_closer_is_found_where_it_stands():
    file = around("def f(a):\n    x = |\n")
    assert problems(file, "(a + 1))") == (Problem("syntax", 7, ")"),)
    assert valid_part(file, "(a + 1))") == "(a + 1)"
    # Closing what the cursor's line opened is no stray closer; inside a string nothing counts.
    assert problems(around("def f(a):\n    x = max(|\n"), "a, 1)") == ()
    assert problems(around('def f(a):\n    return f"{|"\n'), "a}") == ()


def test_syntax_errors_the_completion_adds():
    file = around("def f(a):\n    |\n")
    assert adds_syntax_error(file, "x = = 1")
    assert not adds_syntax_error(file, "x = 1")
    # The half-typed line was broken already: leaving it broken adds nothing, fixing it is fine.
    broken = around("def f(a):\n    x = max(|\n")
    assert not adds_syntax_error(broken, "a")
    assert not adds_syntax_error(broken, "a, 1)")


def test_python_rejects_what_tree_sitters_recovery_lets_through():
    # A header whose body would be the next line, a `try:` with no `except`, a line run into the
    # next: tree-sitter's tree has no error node in any of them, Python's parser rejects them.
    file = around("def f(a):\n    x = a + 1\n    |\n    return x\n")
    assert adds_syntax_error(file, "if x:")
    assert valid_part(file, "if x:") == ""
    assert valid_part(file, "y = x\n    try:\n        y = 2") == "y = x"
    assert valid_part(file, "y = x\n    from os") == "y = x"
    assert valid_part(file, "if x:\n        x = 2") == "if x:\n        x = 2"


def test_valid_part_keeps_the_lines_before_the_first_problem():
    file = around("def f(a):\n    x = a + 1\n    |\n")
    assert valid_part(file, "y = x * 2\n    return undefined_thing(y)") == "y = x * 2"
    assert valid_part(file, "y = x * 2\n    return y") == "y = x * 2\n    return y"
    # A parse error shows where its cause ends: whole lines are peeled from the end.
    assert valid_part(file, "y = x\n    z = max(a, 1\n    return z") == "y = x"
    # On the first line, the text before the problem; nothing valid: the suggestion is dropped.
    assert valid_part(file, "return nowhere") == "return"
    assert valid_part(file, "nowhere()") == ""
    # What is left must not stop where its statement cannot (the held-out packages' `x =`).
    assert valid_part(file, "y = nowhere(a)") == ""
    assert valid_part(file, "y = a and nowhere") == ""
    assert valid_part(file, "if a:\n        y = nowhere(a)") == ""  # a header left bodiless
    assert valid_part(file, "y = a\n    if a:\n        y = nowhere(a)") == "y = a"
