"""Parsing Python with tree-sitter, from scratch or incrementally across an editor's keystrokes.

API:
- `parse(text) -> Tree`: one parse of UTF-8 source.
- `SessionParser().parse(text) -> Tree`: the same tree, reusing the previous keystroke's tree of
  this session (one edit found by common prefix and suffix; tree-sitter re-parses only around it).
- `errors_in(tree, start_byte, end_byte) -> bool`: an ERROR or MISSING node overlaps the range.
- `parses_in_context(prefix, completion, suffix, before=None) -> bool`: the completion adds no
  syntax error to what the file had (errors already around the cursor are not the suggestion's);
  `before`, the tree of prefix + suffix (the session's), makes it an incremental parse.

Offsets are bytes of the UTF-8 text, as tree-sitter counts; `byte_offset` converts.
"""

from dataclasses import dataclass

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Point, Tree

LANGUAGE = Language(tree_sitter_python.language())


def new_parser() -> Parser:
    return Parser(LANGUAGE)


_PARSER = new_parser()  # one per process: parse() is not re-entrant, the server is one thread


def parse(text: str) -> Tree:
    return _PARSER.parse(text.encode())


def byte_offset(text: str) -> int:
    return len(text.encode())


def _point(data: bytes, offset: int) -> Point:
    row = data.count(b"\n", 0, offset)
    return Point(row, offset - (data.rfind(b"\n", 0, offset) + 1))


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix, by bisection on slice equality (memcmp in C): a Python loop
    over a 50 KB file costs more than the incremental parse saves."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class SessionParser:
    """The tree of one editor session's last text: the next keystroke edits it, not re-parses.

    Mutable by design (it is a cache of one tree); one per editor session, not shared.
    """

    parser: Parser | None = None
    data: bytes = b""
    tree: Tree | None = None

    def parse(self, text: str) -> Tree:
        if self.parser is None:
            self.parser = new_parser()
        data = text.encode()
        old = self.tree
        if old is not None:
            # The one edit that turns the old text into the new: keystrokes, pastes, deletions.
            start = _common_prefix(data, self.data)
            end = _common_prefix(data[start:][::-1], self.data[start:][::-1])
            old_end, new_end = len(self.data) - end, len(data) - end
            old.edit(
                start_byte=start,
                old_end_byte=old_end,
                new_end_byte=new_end,
                start_point=_point(self.data, start),
                old_end_point=_point(self.data, old_end),
                new_end_point=_point(data, new_end),
            )
        self.tree = self.parser.parse(data) if old is None else self.parser.parse(data, old)
        self.data = data
        return self.tree


def errors_in(tree: Tree, start_byte: int, end_byte: int) -> bool:
    """Whether an ERROR or MISSING node overlaps [start_byte, end_byte] (a MISSING node is empty:
    it counts when it sits inside or at either end of the range)."""
    stack: list[Node] = [tree.root_node]
    while stack:
        node = stack.pop()
        inside = node.start_byte < end_byte and node.end_byte > start_byte
        touching = node.start_byte <= end_byte and node.end_byte >= start_byte
        if not (inside or (touching and node.start_byte == node.end_byte) or node.has_error):
            continue
        if (node.is_error and inside) or (node.is_missing and touching):
            return True
        if node.has_error and touching:
            stack.extend(node.children)
    return False


def error_count(tree: Tree) -> int:
    count, stack = 0, [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        if node.has_error:
            stack.extend(node.children)
    return count


def parses_in_context(
    prefix: str, completion: str, suffix: str, before: Tree | None = None
) -> bool:
    """No syntax error in the completed region of the file with the completion inserted, unless
    the completion lowers the file's error count (it fixes what the half-typed line broke).

    `before`: the tree of prefix + suffix when the caller has it (the analysis's, from the
    session): the file with the completion is then parsed incrementally from a copy of it.
    """
    old_data = (prefix + suffix).encode()
    if before is None:
        before = _PARSER.parse(old_data)
    start, added = byte_offset(prefix), byte_offset(completion)
    new_data = old_data[:start] + completion.encode() + old_data[start:]
    edited = before.copy()
    at = _point(old_data, start)
    edited.edit(
        start_byte=start,
        old_end_byte=start,
        new_end_byte=start + added,
        start_point=at,
        old_end_point=at,
        new_end_point=_point(new_data, start + added),
    )
    after = _PARSER.parse(new_data, edited)
    if not errors_in(after, start, start + added):
        return True
    return error_count(after) < error_count(before)
