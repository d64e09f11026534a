"""Structure-aware FIM spans: the holes an editor actually asks the model to fill.

Random character splits teach infilling in general; these spans teach the cases that matter in
an IDE: finish the current line, write the whole next line, a block body, a docstring or the
arguments of a call. Spans come from tree-sitter, which parses partial documents (chunks cut
mid-file) with error recovery, so they work on training chunks as they are.
"""

from collections.abc import Iterator

import numpy as np
import tree_sitter_python
from tree_sitter import Language, Node, Parser

SPAN_KINDS = ("line", "rest_of_line", "block", "docstring", "call_args")

PARSER = Parser(Language(tree_sitter_python.language()))


def walk(node: Node) -> Iterator[Node]:
    """Every node of a tree-sitter (sub)tree, depth first."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _is_docstring(node: Node) -> bool:
    """A string that is the first statement of a module, class or function body."""
    stmt = node.parent
    if node.type != "string" or stmt is None or stmt.type != "expression_statement":
        return False
    body = stmt.parent
    return body is not None and body.type in ("block", "module") and body.children[0] == stmt


def _syntax_spans(source: bytes) -> dict[str, list[tuple[int, int]]]:
    spans: dict[str, list[tuple[int, int]]] = {"block": [], "docstring": [], "call_args": []}
    for node in walk(PARSER.parse(source).root_node):
        if node.type == "block" and node.end_byte - node.start_byte > 1:
            spans["block"].append((node.start_byte, node.end_byte))
        elif node.type == "argument_list" and node.end_byte - node.start_byte > 2:
            spans["call_args"].append((node.start_byte + 1, node.end_byte - 1))
        elif _is_docstring(node):
            spans["docstring"].append((node.start_byte, node.end_byte))
    return spans


def _line_spans(source: bytes) -> list[tuple[int, int]]:
    """Each non-blank line from its first non-space byte to its end (newline excluded)."""
    spans, start = [], 0
    for line in source.split(b"\n"):
        stripped = line.lstrip()
        if stripped:
            spans.append((start + len(line) - len(stripped), start + len(line)))
        start += len(line) + 1
    return spans


def candidate_spans(text: str) -> dict[str, list[tuple[int, int]]]:
    """All spans of each kind, as byte offsets into text.encode()."""
    source = text.encode()
    spans = _syntax_spans(source)
    spans["line"] = _line_spans(source)
    return spans


def _char_boundary(source: bytes, pos: int) -> int:
    while 0 < pos < len(source) and (source[pos] & 0xC0) == 0x80:
        pos += 1  # continuation byte of a multi-byte UTF-8 character
    return pos


def choose_span(
    text: str, rng: np.random.Generator, kinds: tuple[str, ...] = SPAN_KINDS
) -> tuple[int, int] | None:
    """A random (start, end) character span of a random kind present in text, or None."""
    source = text.encode()
    spans = candidate_spans(text)
    spans["rest_of_line"] = spans["line"]
    present = [kind for kind in kinds if spans[kind]]
    if not present:
        return None
    kind = present[rng.integers(len(present))]
    start, end = spans[kind][rng.integers(len(spans[kind]))]
    if kind == "rest_of_line":
        start = _char_boundary(source, int(rng.integers(start, end)))
    # Spans sit on UTF-8 character boundaries, so both halves decode cleanly.
    return len(source[:start].decode()), len(source[:end].decode())
