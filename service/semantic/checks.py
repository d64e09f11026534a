"""Checks of a model's completion against the file it goes into, and its repair by truncation.

API:
- `FileAround(prefix, suffix, tree=None)`: the file without the completion, parsed once per job
  (`tree`: the analysis's or the session's tree of prefix + suffix, reused when given); frozen.
- `problems(file, completion) -> tuple[Problem, ...]`: what is wrong with the file once the
  completion is inserted, earliest first; `Problem(kind, offset, name)`, `offset` a character
  offset in the completion. Kinds:
  - "syntax": the completion adds a syntax error (`adds_syntax_error`; brackets included: a
    stray closer is an ERROR node, an unclosed opener a MISSING one), or Python's own parser
    rejects the definition around the cursor that it accepted without the completion
    (python_syntax.py: a header with no body, a `try:` with no `except`, which tree-sitter's
    recovery lets through);
  - "undefined_name": a name read in the completion that nothing binds: not a builtin, not in
    scope at the cursor (scope.py's rules), not bound by the completion itself (assignments,
    loop and comprehension variables, parameters, imports, definitions);
  - "unknown_attribute": `expr.attr` where `expr`'s type is known (types.py) and complete (a
    class of the file whose bases are all known, without `__getattr__`), and lacks `attr`.
- `adds_syntax_error(file, completion) -> bool`: the completed region has an ERROR or MISSING
  node, unless the file was already broken at the cursor and the completion adds no error to its
  count, or the completion lowers the count (it fixes the half-typed line); or Python rejects it
  (above). This is the "parses in context" of the served-suggestion metric.
- `valid_part(file, completion) -> str`: the completion cut before its first problem (at the
  line boundary before it; on the first line, at the problem itself), re-checked until nothing
  is wrong; "" when no part is valid.

Checks read the tree, nothing is imported or run. What the checks cannot know (a file with
`from x import *`, a class with an unknown base) is let through, never guessed at: a false
alarm cuts a good suggestion, a miss only keeps the model's.
"""

from dataclasses import dataclass, field
from functools import cached_property

from tree_sitter import Node, Tree

from service.semantic import scope as scopes_
from service.semantic import types as types_
from service.semantic.brackets import depth_after, stray_closer
from service.semantic.postprocess import drop_unfinished_tail, goes_on
from service.semantic.python_syntax import (
    Statement,
    parses_as_it_is,
    statement_around,
    syntax_error_at,
)
from service.semantic.stopping import cursor_line, indentation
from service.semantic.syntax import _PARSER, _point, error_count, errors_in, parse

# Module globals every module has besides the builtins.
MODULE_NAMES = frozenset(
    {
        "__file__",
        "__name__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
        "__path__",
        "__builtins__",
        "__annotations__",
        "__dict__",
        "__class__",
    }  # fmt: skip
)
# An identifier under these is not a name being read: a module path or a match pattern.
NOT_READ = ("dotted_name", "aliased_import", "relative_import", "keyword_pattern", "case_pattern")
TAIL_CHARS = 2_000  # enough for the statement around the cursor; a scan costs ~0.1 ms


@dataclass(frozen=True)
class Problem:
    kind: str  # "syntax" | "undefined_name" | "unknown_attribute"
    offset: int  # characters into the completion
    name: str = ""


@dataclass(frozen=True)
class FileAround:
    prefix: str
    suffix: str
    tree: Tree | None = field(default=None, compare=False)

    @cached_property
    def before(self) -> Tree:
        return self.tree if self.tree is not None else parse(self.prefix + self.suffix)

    @cached_property
    def data(self) -> bytes:
        return (self.prefix + self.suffix).encode()

    @cached_property
    def start(self) -> int:
        return len(self.prefix.encode())

    @cached_property
    def broken_at_cursor(self) -> bool:
        """An error ends or starts at the cursor: the half-typed line (`x = foo(`)."""
        return errors_in(self.before, max(self.start - 1, 0), self.start + 1)

    @cached_property
    def open_brackets(self) -> int | None:
        """Brackets open at the cursor, read from the prefix's last lines (strings and comments
        skipped); a closer the completion adds past them closes nothing. None inside a string
        (an f-string's `{` is not counted there)."""
        return depth_after(self.prefix[-TAIL_CHARS:])

    @cached_property
    def error_count(self) -> int:
        return error_count(self.before)

    @cached_property
    def star_import(self) -> bool:
        """`from x import *` binds names no tree shows: undefined names cannot be told."""
        return "import *" in self.prefix or "import *" in self.suffix

    def with_completion(self, completion: str) -> tuple[Tree, int]:
        """The tree of the file with `completion` at the cursor (incrementally from `before`),
        and the completion's end byte."""
        added = completion.encode()
        new_data = self.data[: self.start] + added + self.data[self.start :]
        edited = self.before.copy()
        at = _point(self.data, self.start)
        end = self.start + len(added)
        edited.edit(
            start_byte=self.start,
            old_end_byte=self.start,
            new_end_byte=end,
            start_point=at,
            old_end_point=at,
            new_end_point=_point(new_data, end),
        )
        return _PARSER.parse(new_data, edited), end

    @cached_property
    def cursor_indent(self) -> int:
        line = cursor_line(self.prefix)
        return indentation(line) if line.strip() else len(line.expandtabs(4))

    @cached_property
    def statement(self) -> Statement | None:
        """The definition around the cursor, for Python's parser."""
        return statement_around(self.prefix, self.suffix)

    @cached_property
    def python_judges(self) -> bool:
        """Python's parser accepted the definition without the completion."""
        return self.statement is not None and parses_as_it_is(
            self.statement, self.prefix, self.suffix
        )

    def python_error_at(self, completion: str) -> int | None:
        """Where Python's parser rejects the completion (characters into it); None where it
        accepts it or cannot judge."""
        if self.statement is None:
            return None
        at = syntax_error_at(self.statement, self.prefix, completion, self.suffix)
        return at if at is not None and self.python_judges else None

    @cached_property
    def anchor(self) -> int:
        """The end of the last code before the cursor (cursor.py's anchor for the scopes)."""
        return len(self.prefix.rstrip().encode())


def _adds_error(file: FileAround, after: Tree, end: int) -> bool:
    if not errors_in(after, file.start, end):
        return False
    count = error_count(after)
    if file.broken_at_cursor:
        return count > file.error_count
    return count >= file.error_count


def adds_syntax_error(file: FileAround, completion: str) -> bool:
    after, end = file.with_completion(completion)
    return _adds_error(file, after, end) or file.python_error_at(completion) is not None


def _overlapping(root: Node, start: int, end: int) -> list[Node]:
    """Every node that overlaps [start, end), ancestors included, in document order."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.end_byte <= start or node.start_byte >= end:
            continue
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def _completion_bindings(nodes: list[Node], start: int) -> set[str]:
    """Names the completed region binds (flat: a nested scope's names count everywhere, which
    can only let a wrong name through, never flag a right one). A definition around the cursor
    binds nothing new: its parameters are in scope already."""
    bound: set[str] = set()
    for node in nodes:
        inside = node.start_byte >= start
        if inside or node.type not in scopes_.DEFINITIONS:
            scopes_._binding(node, bound)
        if node.type in ("function_definition", "lambda") and inside:
            params = node.child_by_field_name("parameters")
            if params is not None:
                scopes_._parameters(params, bound)
        elif node.type in scopes_.COMPREHENSIONS:
            for clause in node.named_children:
                if clause.type == "for_in_clause":
                    scopes_._binding(clause, bound)
    return bound


def _is_read(node: Node) -> bool:
    parent = node.parent
    if parent is None or parent.type == "ERROR":
        return False  # in an ERROR node keywords parse as identifiers; the syntax check reports it
    if parent.type == "attribute" and parent.child_by_field_name("attribute") == node:
        return False
    if parent.type == "keyword_argument" and parent.child_by_field_name("name") == node:
        return False
    while parent is not None:
        if parent.type in NOT_READ:
            return False
        if parent.type in ("parameters", "lambda_parameters", "global_statement",
                           "nonlocal_statement"):  # fmt: skip
            return False
        parent = parent.parent if parent.type not in scopes_.NEW_SCOPES else None
    return True


# The field holding what each kind of expression is taken from: `a.b`, `a()`, `a[0]`.
RECEIVER_FIELD = {"attribute": "object", "call": "function", "subscript": "value"}


def _root_name(node: Node | None) -> str | None:
    """The name an expression like `a[0].b().c` starts from (`a`); None when it starts from
    something else (a literal, a parenthesized expression) or the tree has no receiver there."""
    while node is not None and node.type in RECEIVER_FIELD:
        node = node.child_by_field_name(RECEIVER_FIELD[node.type])
    return scopes_.text(node) if node is not None and node.type == "identifier" else None


def _char_offset(completion_bytes: bytes, byte_offset: int) -> int:
    return len(completion_bytes[: max(byte_offset, 0)].decode(errors="ignore"))


def _syntax_offset(after: Tree, start: int, end: int) -> int:
    """Byte where the first error in the completed region starts (clamped to the region)."""
    first = end
    stack: list[Node] = [after.root_node]
    while stack:
        node = stack.pop()
        if not node.has_error and not node.is_missing:
            continue
        if node.end_byte < start or node.start_byte > end:
            continue
        if node.is_error or node.is_missing:
            first = min(first, max(node.start_byte, start))
            if node.is_missing:
                continue
        stack.extend(node.children)
    return first - start


def _member_name(node: Node) -> Node | None:
    """The object of `obj.attr` when `node` is its `attr`."""
    parent = node.parent
    if parent is None or parent.type != "attribute":
        return None
    return (
        parent.child_by_field_name("object")
        if parent.child_by_field_name("attribute") == node
        else None
    )


def _assigned_attributes(nodes: list[Node]) -> set[str]:
    """`x.attr` assigned in the completed region: it exists once the completion runs."""
    out = set()
    for node in nodes:
        if node.type == "assignment":
            left = node.child_by_field_name("left")
            if left is not None and left.type == "attribute":
                out.add(scopes_.text(left.child_by_field_name("attribute")))
    return out


def problems(file: FileAround, completion: str) -> tuple[Problem, ...]:
    after, end = file.with_completion(completion)
    start, added = file.start, completion.encode()
    found: list[Problem] = []
    opened = file.open_brackets
    stray = None if opened is None else stray_closer(completion, opened)
    if stray is not None:
        found.append(Problem("syntax", stray, completion[stray]))
    elif _adds_error(file, after, end):
        found.append(Problem("syntax", _char_offset(added, _syntax_offset(after, start, end))))
    elif (at := file.python_error_at(completion)) is not None:
        found.append(Problem("syntax", at))
    nodes = _overlapping(after.root_node, start, end)
    bound = _completion_bindings(nodes, start)
    assigned = _assigned_attributes(nodes)
    scopes = scopes_.enclosing(after, file.anchor, file.cursor_indent)
    classes = [s for s in scopes if s.type == "class_definition"]
    names = None if file.star_import else scopes_.names_in_scope(after, start, scopes)
    index = types_.FileIndex(after)  # lazy: reads the tree only when an attribute is typed
    for node in (n for n in nodes if n.type == "identifier" and n.end_byte > start):
        name = scopes_.text(node)
        offset = _char_offset(added, node.start_byte - start)
        obj = _member_name(node)
        if obj is not None:
            root = _root_name(obj)
            if root is None or root in bound or name in assigned:
                continue  # the completion may rebind what the file's tree says
            known = types_.infer(scopes_.text(obj), index, scopes, classes[-1] if classes else None)
            members = types_.complete_members(known, index) if known is not None else None
            if members is not None and name not in members:
                found.append(Problem("unknown_attribute", offset, name))
        elif names is not None and _is_read(node) and not {name} & (names | bound | MODULE_NAMES):
            found.append(Problem("undefined_name", offset, name))
    return tuple(sorted(found, key=lambda p: p.offset))


def _cut(completion: str, offset: int) -> str:
    """Before the problem at `offset`: whole lines above it, or on the first line, the text up
    to it without a dangling `.` or blanks (then `_finished`)."""
    line_start = completion.rfind("\n", 0, offset)
    if line_start > 0:
        return _finished(completion[:line_start])
    return _finished(completion[:offset].rstrip().rstrip("."))


def _finished(cut: str) -> str:
    """A cut completion without the unfinished lines at its end; nothing when all that is left
    is a first line that stops where its statement cannot (`x =`, a header whose body went)."""
    cut = drop_unfinished_tail(cut.rstrip())
    return "" if "\n" not in cut and goes_on(cut) else cut


def _without_last_line(completion: str) -> str:
    return _finished(completion[: max(completion.rstrip().rfind("\n"), 0)])


def valid_part(file: FileAround, completion: str, max_checks: int = 6) -> str:
    """Each check is one incremental parse; past `max_checks` the completion is given up."""
    for _ in range(max_checks):
        if not completion.strip():
            break
        found = problems(file, completion)
        if not found:
            return completion
        first = found[0]
        if first.kind == "syntax" and "\n" in completion.rstrip() and not first.name:
            # A parse error may show where its cause ends: peel whole lines from the end.
            completion = _without_last_line(completion)
        else:
            cut = _cut(completion, first.offset)
            if cut == completion:
                break  # the problem is past the line's end: the line as a whole (`if x:` alone)
            completion = cut
    return ""
