"""What the server knows about Python at the cursor: one analysis per request, within a budget.

API (the request path calls `analyze`, once per request, before planning the job):
- `analyze(prefix, suffix, session=None, budget_s=BUDGET_S, with_names=True) -> CursorContext | None`:
  parse prefix + suffix (incrementally with the editor session's `SessionParser`) and read the
  cursor's context; None ("no semantics") past the budget, counted in `COUNTERS.over_budget`.
- `CursorContext`: frozen, comparable: enclosing scopes (`Scope`), indentation, string/comment,
  names in scope, and after `expr.` the receiver, the partial member typed, its type and members.
- `CursorContext.continuations() -> frozenset[str] | None`: what the completion may start with
  after `expr.partial`: the rest of each member starting with `partial` (the member-mask input).
- `COUNTERS`: plain counts (analyses, over budget, receivers typed) for the metrics layer.

tree-sitter's parse cannot be interrupted in this binding, so the budget is checked after the parse
and after each later step; a text past `MAX_BYTES` is not parsed at all.

With token healing the prompt is backed up by the partial member, and the generated text starts
with it: the engine applies `continuations()` to the text past that forced prefix
(service/engine/next_tokens.py), so the two agree.
"""

import re
import time
from dataclasses import dataclass, field, replace

from tree_sitter import Node

from service.semantic import scope as scopes_
from service.semantic import types as types_
from service.semantic.stopping import cursor_line, indentation
from service.semantic.syntax import SessionParser, byte_offset, parse

# The cursor in a `from module import ...` list, on its line (`from x import (a,\n b` lists are
# not followed across lines).
FROM_IMPORT = re.compile(
    r"^\s*from\s+(?P<module>[A-Za-z_][\w.]*)\s+import\s+\(?\s*(?:\w+(?:\s+as\s+\w+)?\s*,\s*)*"
    r"(?P<partial>\w*)$"
)
BUDGET_S = 0.010  # 10 ms: ~10% of a keystroke's p50 on the 2-core CPU (docs/benchmarks.md)
# A fresh parse of 1 MB takes ~100 ms, and the output side's checks parse again around the
# completion: past this size a file goes without semantics (not started), so that one request
# holds the event loop tens of milliseconds, not seconds (4 bodies of 900 KB once slowed health
# checks to 0.6 s). The standard library's largest module is ~230 KB.
MAX_BYTES = 256_000


def parsable(prefix: str, suffix: str) -> bool:
    """Whether the semantic engine reads this file at all (analysis and output checks alike)."""
    return len(prefix) + len(suffix) <= MAX_BYTES


@dataclass
class Counters:
    """Plain counts, for the metrics layer to export (one process, one thread: no locks)."""

    analyses: int = 0
    over_budget: int = 0
    too_large: int = 0
    receivers: int = 0  # cursors after `expr.`
    receivers_typed: int = 0  # ... whose member set was known


COUNTERS = Counters()


@dataclass(frozen=True)
class Scope:
    kind: str  # tree-sitter's node type: function_definition, class_definition, if_statement, ...
    name: str  # the function's or class's name; "" for blocks
    indent: int  # columns of the header line
    start_line: int  # 0-based


@dataclass(frozen=True)
class CursorContext:
    scopes: tuple[Scope, ...]  # outermost first
    indent: int  # the cursor line's indentation (columns; a blank line's: the cursor's column)
    in_string: bool
    in_comment: bool
    names: frozenset[str] | None  # None: not asked for (`with_names=False`)
    receiver: str | None = None  # `expr` when the cursor follows `expr.partial`
    partial: str = ""
    receiver_type: types_.KnownType | None = None
    members: frozenset[str] | None = None  # None: unknown (no constraint); else the whole set
    elapsed_s: float = field(default=0.0, compare=False)

    @property
    def function(self) -> Scope | None:
        return next((s for s in reversed(self.scopes) if s.kind == "function_definition"), None)

    @property
    def class_(self) -> Scope | None:
        return next((s for s in reversed(self.scopes) if s.kind == "class_definition"), None)

    def continuations(self) -> frozenset[str] | None:
        if self.members is None or self.in_string or self.in_comment:
            return None
        rest = frozenset(m[len(self.partial) :] for m in self.members if m.startswith(self.partial))
        return rest or None


def _line_state(line: str) -> tuple[bool, bool]:
    """(in string, in comment) at the end of one line's text, single-line quotes only: the tree
    cannot say it when the string is still open (it becomes an ERROR node)."""
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif line.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif c == "#":
            return False, True
        elif c in "\"'":
            quote = c * 3 if line.startswith(c * 3, i) else c
            i += len(quote) - 1
        i += 1
    return bool(quote), False


def _in_tree_string(root: Node, cursor: int) -> bool:
    """Inside a string the tree closed (triple-quoted strings across lines, docstrings)."""
    node = root.descendant_for_byte_range(cursor, cursor)
    while node is not None:
        if node.type == "string" and node.start_byte < cursor < node.end_byte:
            return True
        node = node.parent
    return False


def _scope(node: Node) -> Scope:
    name = node.child_by_field_name("name")
    return Scope(
        kind=node.type,
        name=scopes_.text(name) if name is not None else "",
        indent=node.start_point.column,
        start_line=node.start_point.row,
    )


def analyze(
    prefix: str,
    suffix: str,
    session: SessionParser | None = None,
    budget_s: float = BUDGET_S,
    with_names: bool = True,
) -> CursorContext | None:
    """The context at the cursor. The request path asks `with_names=False`: its constraint reads
    no names, and the output checks find the names in scope around the completion themselves;
    collecting them was ~0.8 ms of every long file's keystroke on the event loop."""
    start = time.perf_counter()
    COUNTERS.analyses += 1
    if not parsable(prefix, suffix):
        COUNTERS.too_large += 1
        return None
    source = prefix + suffix

    def over() -> bool:
        if time.perf_counter() - start > budget_s:
            COUNTERS.over_budget += 1
            return True
        return False

    tree = session.parse(source) if session is not None else parse(source)
    if over():
        return None
    cursor = byte_offset(prefix)
    line = cursor_line(prefix)
    indent = indentation(line) if line.strip() else len(line.expandtabs(4))
    in_string, in_comment = _line_state(line)
    in_string = in_string or (not in_comment and _in_tree_string(tree.root_node, cursor))
    # The last code before the cursor: a fresh indented line lies past its block's end.
    anchor = byte_offset(prefix.rstrip())
    nodes = scopes_.enclosing(tree, anchor, indent)
    names = scopes_.names_in_scope(tree, cursor, nodes) if with_names else None
    if over():
        return None
    context = CursorContext(
        scopes=tuple(_scope(n) for n in nodes),
        indent=indent,
        in_string=in_string,
        in_comment=in_comment,
        names=names,
    )
    imported = None if in_string or in_comment else FROM_IMPORT.match(line)
    if imported is not None:
        # `from os import pa|`: the names a standard-library module has (a third-party or
        # relative one: unknown, no constraint).
        module = types_.stdlib_module(imported.group("module"))
        member_set = (
            types_.complete_members(module, types_.FileIndex(tree)) if module is not None else None
        )
        return replace(
            context,
            receiver=imported.group("module"),
            partial=imported.group("partial"),
            receiver_type=module,
            members=member_set or None,
            elapsed_s=time.perf_counter() - start,
        )
    split = None if in_string or in_comment else types_.receiver_before_dot(prefix)
    if split is not None:
        COUNTERS.receivers += 1
        receiver, partial = split
        classes = [n for n in nodes if n.type == "class_definition"]
        index = types_.FileIndex(tree)
        known = types_.infer(receiver, index, nodes, classes[-1] if classes else None)
        member_set = types_.complete_members(known, index) if known is not None else None
        if receiver == "self" and line.strip() == f"self.{partial}":
            # `self.` starting a statement in a method may start `self.new_attribute = ...`.
            member_set = None
        if over():
            return None
        COUNTERS.receivers_typed += bool(member_set)
        context = replace(
            context,
            receiver=receiver,
            partial=partial,
            receiver_type=known,
            members=member_set or None,
        )
    return replace(context, elapsed_s=time.perf_counter() - start)
