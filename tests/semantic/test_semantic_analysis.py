"""service.semantic analysis at the cursor: scopes, string/comment, names in scope, receiver types
and members, the incremental parse and the time budget. Fixtures are plain Python snippets; the
cursor is where `|` stands."""

import pytest

from service.semantic import cursor as cursor_module
from service.semantic import stdlib_members
from service.semantic.cursor import analyze
from service.semantic.scope import BUILTINS
from service.semantic.syntax import SessionParser, parse, parses_in_context
from service.semantic.types import KnownType, receiver_before_dot


def at(source: str, **kwargs):
    prefix, suffix = source.split("|")
    context = analyze(prefix, suffix, budget_s=1.0, **kwargs)
    assert context is not None
    return context


def own_names(source: str) -> set[str]:
    return set(at(source).names - BUILTINS)


CLASS_FILE = """import os
import os.path as osp
from collections import OrderedDict, deque as dq
from pathlib import Path

class Base:
    kind = "base"

    def hello(self):
        pass


class Shape(Base):
    sides: int = 0

    def __init__(self, name: str, points: list):
        self.name = name
        self.points = points
        self._cache = {}

    @property
    def area(self) -> float:
        return 0.0

    def copy(self) -> "Shape":
        return Shape(self.name, self.points)

    def body(self, path: Path, size: "Optional[int]"):
        local = OrderedDict()
        text = "abc"
        numbers = [1, 2]
        |
"""


def test_enclosing_scopes_on_a_fresh_indented_line():
    context = at(CLASS_FILE)
    assert [(s.kind, s.name) for s in context.scopes] == [
        ("class_definition", "Shape"),
        ("function_definition", "body"),
    ]
    assert context.function.name == "body" and context.class_.name == "Shape"
    assert context.indent == 8


def test_a_dedented_cursor_leaves_the_function():
    context = at("class A:\n    def f(self):\n        x = 1\n    |\n")
    assert [s.name for s in context.scopes] == ["A"]
    assert at("def f():\n    x = 1\n|").scopes == ()


def test_blocks_are_scopes_too():
    context = at("def f(xs):\n    for x in xs:\n        if x:\n            |\n")
    assert [s.kind for s in context.scopes] == [
        "function_definition",
        "for_statement",
        "if_statement",
    ]


@pytest.mark.parametrize(
    ("source", "in_string", "in_comment"),
    [
        ('x = "abc|', True, False),
        ("x = 'a' + 'b|'", True, False),
        ('x = "a" + |', False, False),
        ("x = 1  # note |", False, True),
        ('x = "#" + |', False, False),
        ('def f():\n    """Doc |string."""\n', True, False),
        ('s = """line one\nline |two"""\n', True, False),
        ("x = f'{a|}'", True, False),
    ],
)
def test_string_and_comment(source, in_string, in_comment):
    context = at(source)
    assert (context.in_string, context.in_comment) == (in_string, in_comment)


def test_names_in_a_function_scope():
    source = """import os, sys as system
from a.b import c, d as e
G = 1

def outer(p, q: int, *args, r=2, s: str = "", **kw):
    global H
    x, (y, z) = 1, (2, 3)
    for i, j in pairs:
        pass
    with open(p) as fh, lock:
        pass
    try:
        pass
    except ValueError as err:
        pass
    if (n := 3):
        pass
    import json
    def inner():
        hidden = 1
    class Local:
        attr = 1
    |

LATER = 2
"""
    names = own_names(source)
    expected = {"os", "system", "c", "e", "G", "outer", "LATER", "H", "p", "q", "args", "r", "s"}
    expected |= {"kw", "x", "y", "z", "i", "j", "fh", "err", "n", "json", "inner", "Local"}
    assert names == expected
    assert {"hidden", "attr", "pairs", "lock"}.isdisjoint(names)
    assert {"print", "len", "ValueError"} <= at(source).names


def test_a_class_body_sees_its_names_but_its_methods_do_not():
    assert "attr" in own_names("class A:\n    attr = 1\n    |\n")
    method = own_names("class A:\n    attr = 1\n    def m(self):\n        |\n")
    assert "attr" not in method and "m" not in method and {"A", "self"} <= method


def test_comprehension_and_lambda_variables_only_inside_them():
    assert {"v", "w"} <= own_names("total = [v + w | for v, w in pairs]\n")
    assert "v" not in own_names("total = [v for v in pairs]\n|")
    assert "q" in own_names("f = lambda q: q + |1\n")


@pytest.mark.parametrize(
    ("prefix", "split"),
    [
        ("x = self.", ("self", "")),
        ("    os.pa", ("os", "pa")),
        ("foo(a, b).bar.ba", ("foo(a, b).bar", "ba")),
        ("'abc'.up", ("'abc'", "up")),
        ("[1, 2].", ("[1, 2]", "")),
        ("call(x.", ("x", "")),
        ("x = y", None),
        ("x = 1.", None),
    ],
)
def test_receiver_before_dot(prefix, split):
    assert receiver_before_dot(prefix) == split


def members_at(expr: str) -> frozenset[str] | None:
    return at(CLASS_FILE.replace("|", "value = " + expr + ".|")).members


@pytest.mark.parametrize(
    ("expr", "type_name"),
    [
        ('"x"', "str"),
        ("text", "str"),
        ("numbers", "list"),
        ("{}", "dict"),
        ("{1}", "set"),
        ("(1, 2)", "tuple"),
        ("b'x'", "bytes"),
        ("1.5", "float"),
        ("str(3)", "str"),
        ("dict()", "dict"),
        ("self.name", "str"),
        ("self.points", "list"),
        ("self._cache", "dict"),
        ("size", "int"),
    ],
)
def test_builtin_types_from_literals_constructors_annotations_and_attributes(expr, type_name):
    context = at(CLASS_FILE.replace("|", expr + ".|"))
    assert context.receiver_type == KnownType("builtin", type_name)
    assert context.members == frozenset(dir(__builtins__[type_name] if isinstance(__builtins__, dict) else getattr(__builtins__, type_name)))  # fmt: skip


def test_self_has_methods_attributes_and_base_members():
    members = members_at("self")
    assert {"name", "points", "_cache", "area", "copy", "body", "sides", "__init__"} <= members
    assert {"hello", "kind"} <= members  # from Base, defined in the file
    assert "append" not in members


def test_classes_in_the_file_and_return_annotations():
    assert members_at("Shape('a', [])") == members_at("self")
    assert members_at("self.copy()") == members_at("self")  # "Shape" as a string annotation
    assert members_at("self.area") == frozenset(dir(float))


def test_stdlib_modules_and_classes_from_the_build_time_table():
    assert members_at("os") == frozenset(stdlib_members.MODULES["os"]["members"])
    assert "join" in members_at("os.path") and "join" in members_at("osp")
    assert {"move_to_end", "popitem", "keys"} <= members_at("local")
    assert {"appendleft", "rotate"} <= members_at("dq()")
    assert {"exists", "read_text", "parent"} <= members_at("path")


def test_unknown_receivers_give_no_member_set():
    for expr in ("unknown", "unknown()", "self.missing", "text.upper()"):
        assert members_at(expr) is None, expr


def members_in(source: str) -> frozenset[str] | None:
    return at(source).members


@pytest.mark.parametrize(
    "source",
    [
        # A call of `super` or `type` is no instance of them (it was: `super().save` refused).
        "class A(dict):\n    def f(self):\n        super().|\n",
        "def f(x):\n    type(x).|\n",
        # A variable shadows the builtin, module or class of its name.
        "import os\ndef f(os, type):\n    type.|\n",
        "import os\ndef f(os):\n    os.|\n",
        "def f():\n    msg = []\n    if x:\n        msg = 'a'\n    msg.|\n",  # two types
        "def f(items):\n    for x in items:\n        x.|\n",
        # The user's own class on a base we cannot read: its inherited members are unknown.
        "from django.db import models\nclass Article(models.Model):\n    title = 1\n"
        "    def save(self):\n        self.|\n",
        # `self.` starting a statement may assign a new attribute.
        "class A:\n    def __init__(self, kind):\n        self.|\n",
        # A mixin or an abstract class: what its methods use, the classes deriving from it set.
        "class SerializationMixin:\n    def f(self):\n        return self.|\n",
        "import abc\nclass Base:\n    @abc.abstractmethod\n    def g(self): ...\n"
        "    def f(self):\n        return self.|\n",
        # An attribute annotated `Any` (it was typing.Any's members).
        "import typing as _t\nclass A:\n    client: _t.Any = None\n    def f(self):\n"
        "        return self.client.|\n",
        # A class whose subclass in the file sets what its methods use.
        "class Flavour:\n    def split(self, p):\n        return self.|\n"
        "class Windows(Flavour):\n    sep = '\\\\'\n",
        # An exception from a C module, an `ast` node: the table does not hold their attributes.
        "import ast\nnode = ast.Name()\nnode.|\n",
    ],
)
def test_no_member_set_where_more_may_exist_than_the_file_and_tables_show(source):
    """The constraint forbids, and the checks flag, whatever is not in the set: where the set
    may be partial there is none (found on the standard library's own code: `super().x`,
    parameters named like builtins, attributes set by subclasses or in `__init__`)."""
    assert members_in(source) is None


def test_member_sets_that_are_whole():
    # What `__init__` sets on `self`, read from the standard library's source at build time.
    assert {"returncode", "pid", "poll"} <= members_in(
        "import subprocess\np = subprocess.Popen(['ls'])\np.|\n"
    )
    assert "baseFilename" in members_in("import logging\nh = logging.FileHandler('x')\nh.|\n")
    # A package's submodules, though the table lists what the package itself imports only.
    assert {"client", "server"} <= members_in("import http.client\nhttp.|\n")
    # A chained class attribute (`update = __update = ...`), `(self.a, self.b) = ...`, and the
    # attributes any instance has.
    source = (
        "class A:\n    update = _update = dict.update\n    def __init__(self):\n"
        "        (self.host, self.port) = 1, 2\n    def f(self):\n        return self.|\n"
    )
    assert {"update", "_update", "host", "port", "__dict__", "__class__"} <= members_in(source)
    # A base in the file, and the classes of the file that derive from nothing unknown.
    assert {"hello", "kind", "name"} <= members_at("self")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from os import pa|\n", {"th", "thsep", "rdir"}),
        ("from os.path import jo|\n", {"in"}),
        ("from collections import (OrderedDict, de|\n", {"que", "faultdict"}),
        ("from http import cl|\n", {"ient"}),  # a submodule
        ("from mypkg import x|\n", None),  # not the standard library's: unknown
        ("from . import x|\n", None),
        ("from os import path as p|\n", None),  # an alias is any name
        ("# from os import pa|\n", None),
    ],
)
def test_names_after_from_a_standard_library_module_import(source, expected):
    found = at(source).continuations()
    assert found == expected if expected is None else expected <= found


def test_continuations_follow_the_partial_member():
    context = at("import os\nos.pa|\n")
    assert context.partial == "pa"
    assert {"th", "thsep", "rdir"} <= context.continuations()
    assert all(
        "pa" + rest in stdlib_members.MODULES["os"]["members"] for rest in context.continuations()
    )
    assert at("x = 1\nx|").continuations() is None
    assert at('s = "a.|"').continuations() is None


def test_the_table_is_data_never_an_import():
    assert (
        stdlib_members.PYTHON and "OrderedDict" in stdlib_members.MODULES["collections"]["classes"]
    )
    assert "move_to_end" in stdlib_members.CLASSES["collections.OrderedDict"]


def test_incremental_parse_gives_the_same_tree_as_a_fresh_one():
    with open(__import__("argparse").__file__) as f:
        source = f.read()
    session = SessionParser()
    cut = len(source) // 2
    edits = [source, source[:cut] + "x" + source[cut:], source[:cut] + "xy" + source[cut:]]
    edits += [source[:cut] + source[cut + 5 :], source + "\ndef tail(:\n", "", source[:100]]
    for text in edits:
        assert str(session.parse(text).root_node) == str(parse(text).root_node)


def test_analysis_with_a_session_equals_without():
    session = SessionParser()
    prefix = CLASS_FILE.split("|")[0]
    for typed in ("s", "se", "sel", "self", "self.", "self.na"):
        with_session = analyze(prefix + typed, "\n", session=session, budget_s=1.0)
        assert with_session == analyze(prefix + typed, "\n", budget_s=1.0)


def test_over_budget_is_no_semantics_and_counted():
    before = cursor_module.COUNTERS.over_budget
    assert analyze(CLASS_FILE.split("|")[0], "", budget_s=0.0) is None
    assert cursor_module.COUNTERS.over_budget == before + 1


def test_too_large_is_not_parsed(monkeypatch):
    monkeypatch.setattr(cursor_module, "MAX_BYTES", 10)
    before = cursor_module.COUNTERS.too_large
    assert analyze("x = 1\n" * 5, "") is None
    assert cursor_module.COUNTERS.too_large == before + 1


@pytest.mark.parametrize(
    ("prefix", "completion", "suffix", "ok"),
    [
        ("x = foo(", "1, 2)", "\n", True),
        ("x = foo(", "1, 2))", "\n", False),
        ("foo(", "a, b", ")\n", True),
        ("def f():\n    return ", "a +", "\n", False),
        ("def f():\n    return ", "a + 1", "\n", True),
        ("if x", ":\n    pass", "\n", True),
        ("x = ", "[1, 2", "\ny = 3\n", False),
    ],
)
def test_parses_in_context(prefix, completion, suffix, ok):
    assert parses_in_context(prefix, completion, suffix) is ok
    before = parse(prefix + suffix)
    assert parses_in_context(prefix, completion, suffix, before=before) is ok
    assert str(before.root_node) == str(parse(prefix + suffix).root_node)  # a copy was edited


def test_the_table_is_what_the_build_step_writes_for_this_python():
    """A spot check of the build step against the committed table (the full rebuild imports
    the whole standard library: `python -m service.semantic.build_stdlib_members`)."""
    import sys

    from service.semantic import build_stdlib_members

    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != stdlib_members.PYTHON:
        pytest.skip(f"table built on Python {stdlib_members.PYTHON}, running {running}: rebuild it")
    for name in ("collections", "json", "pathlib"):
        assert build_stdlib_members.describe(name) == stdlib_members.MODULES[name]
    assert stdlib_members.OBJECT_MEMBERS == build_stdlib_members.OBJECT_MEMBERS


def test_non_ascii_text_before_the_cursor():
    """tree-sitter counts bytes: the cursor's offset is the prefix's UTF-8 length."""
    source = 'def f(naïve: str):\n    """Ünïcode — docs."""\n    naïve.|\n'
    context = at(source)
    assert context.function.name == "f" and not context.in_string
    assert context.receiver == "naïve" and context.members == frozenset(dir(str))
    assert at('s = "é|"').in_string


@pytest.mark.parametrize("seed", range(20))
def test_incremental_parse_over_random_edits(seed):
    """Random insertions, deletions and replacements anywhere: the session's tree is always the
    fresh parse's."""
    import random

    rng = random.Random(seed)
    with open(__import__("textwrap").__file__) as f:
        text = f.read()
    session = SessionParser()
    session.parse(text)
    pieces = ["x", "(", ")", ":", "\n    ", '"', "def g(", "\n", "é", "    return 1\n", ""]
    for _ in range(15):
        start = rng.randrange(len(text) + 1)
        end = min(len(text), start + rng.choice([0, 0, 1, 3, 40]))
        text = text[:start] + rng.choice(pieces) + text[end:]
        assert str(session.parse(text).root_node) == str(parse(text).root_node)


@pytest.mark.parametrize("module", ["argparse", "textwrap", "json.decoder", "dataclasses"])
def test_never_raises_at_random_cursors_of_real_files(module):
    """The analysis is on the request path: at any cursor of real code, half-typed or not, it
    answers a context (or None past its budget) and never raises."""
    import importlib
    import random

    rng = random.Random(module)
    with open(importlib.import_module(module).__file__) as f:
        text = f.read()
    session = SessionParser()
    for _ in range(60):
        at = rng.randrange(len(text) + 1)
        cut = rng.choice([0, 0, 1, 7, 200])  # the suffix may lose what the user is retyping
        context = analyze(text[:at], text[at + cut :], session=session, budget_s=1.0)
        assert context is not None
        if context.members is not None:
            assert context.members and context.receiver
        assert analyze(text[:at] + ".", text[at:], budget_s=1.0) is not None
