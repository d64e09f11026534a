"""Error-correction pairs: corrupt one line of a document with an editor mistake, train on the fix.

A document piece becomes, with probability `error_correction_rate`, a correction example: one code
line (found with tree-sitter; never blank, a comment, inside a multi-line string or already broken)
gets one of the mistakes of `CORRUPTIONS`, and the model learns to write the line as it was.

Layout. The broken line stays in the file, just above the hole, as a marked comment at the line's
indentation; the hole is the fixed line from its first non-space character to its end:

    prefix = <code before the line> + indent + "# fix-line: " + broken line + "\\n" + indent
    middle = the fixed line (no indentation, no newline)
    suffix = "\\n" + <code after the line>

assembled with the ordinary FIM sentinels, PSM or SPM at the phase's `spm_rate`, so serving needs
nothing new. This is what an editor's "fix this line" command sends: prefix/suffix around the
line, the broken line re-sent as that comment, and the completion replaces the line (the comment
never enters the buffer). Why not leave the broken line as ordinary code beside the hole: an
editor sends exactly that layout for every plain completion (a cursor on a new line next to a
finished one), so the model would learn to echo a neighbouring line; the marker keeps the
correction objective out of the way of plain completion. The hole is the same as FIM's structured
"line" span, the cursor an editor puts after the indentation.

Length. The comment adds a line, so the example clips as many tokens from the far ends (the start
of the prefix, then the end of the suffix) as it adds: it is never longer than the FIM example of
the same piece would be, so `Curriculum`'s FIM slack keeps it whole, fix included.
"""

import keyword
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tree_sitter import Tree

from training.fim import FimTransform
from training.spans import PARSER, walk

MARKER = "# fix-line: "
CLOSING_BRACKETS = (")", "]", "}")
COMPOUND_KEYWORDS = (
    "def", "class", "if", "elif", "else", "for", "while", "with", "try", "except", "finally",
    "async", "match", "case",
)  # fmt: skip


@dataclass(frozen=True)
class Token:
    type: str  # tree-sitter's leaf type: "identifier", ")", ":", "def", ...
    start: int  # character columns within the line
    end: int


@dataclass(frozen=True)
class CodeLine:
    start: int  # character offset of the line in the document
    text: str  # the line with its indentation, without its newline
    tokens: tuple[Token, ...]

    def token_text(self, token: Token) -> str:
        return self.text[token.start : token.end]


@dataclass(frozen=True)
class Correction:
    kind: str  # the name of the corruption in CORRUPTIONS
    corrupted: str  # the broken line, indentation included
    fixed: str  # the line as the document has it
    start: int  # the line's character span in the document (newline excluded)
    end: int


Corruption = Callable[[CodeLine, Counter, np.random.Generator], str | None]


def drop_closing_bracket(line: CodeLine, names: Counter, rng: np.random.Generator) -> str | None:
    """`print(f(x))` -> `print(f(x)`: the line's last closing bracket forgotten."""
    closing = [t for t in line.tokens if t.type in CLOSING_BRACKETS]
    if not closing:
        return None
    return line.text[: closing[-1].start] + line.text[closing[-1].end :]


def drop_block_colon(line: CodeLine, names: Counter, rng: np.random.Generator) -> str | None:
    """`if x > 0:` -> `if x > 0`: the colon that opens a block forgotten."""
    first, last = line.tokens[0], line.tokens[-1]
    if first.type not in COMPOUND_KEYWORDS or last.type != ":":
        return None
    return line.text[: last.start] + line.text[last.end :]


def transpositions(name: str) -> list[str]:
    swaps = (name[:i] + name[i + 1] + name[i] + name[i + 2 :] for i in range(len(name) - 1))
    return sorted(set(swaps) - {name})  # sorted: set order depends on the hash seed


def drops_and_doubles(name: str) -> list[str]:
    drops = {name[:i] + name[i + 1 :] for i in range(len(name))}
    doubles = {name[:i] + name[i] + name[i:] for i in range(len(name))}
    return sorted(drops | doubles)


def _respell(
    line: CodeLine,
    names: Counter,
    rng: np.random.Generator,
    edits: Callable[[str], list[str]],
) -> str | None:
    """An identifier the document uses elsewhere, respelled to a name it never uses: the right
    spelling is in the context, so the fix is learnable rather than a guess."""
    known = [
        t
        for t in line.tokens
        if t.type == "identifier" and names[line.token_text(t)] > 1 and line.token_text(t).isascii()
    ]
    if not known:
        return None
    token = known[rng.integers(len(known))]
    typos = [
        typo
        for typo in edits(line.token_text(token))
        if typo.isidentifier() and not keyword.iskeyword(typo) and typo not in names
    ]
    if not typos:
        return None
    return line.text[: token.start] + typos[rng.integers(len(typos))] + line.text[token.end :]


def transpose_identifier_chars(
    line: CodeLine, names: Counter, rng: np.random.Generator
) -> str | None:
    """`self.value` -> `self.vaule`: two adjacent characters of a known identifier swapped."""
    return _respell(line, names, rng, transpositions)


def misspell_identifier(line: CodeLine, names: Counter, rng: np.random.Generator) -> str | None:
    """`self.value` -> `self.vlue` or `self.vallue`: a known identifier with a character dropped
    or doubled (one edit)."""
    return _respell(line, names, rng, drops_and_doubles)


CORRUPTIONS: dict[str, Corruption] = {
    "drop_closing_bracket": drop_closing_bracket,
    "drop_block_colon": drop_block_colon,
    "transpose_identifier_chars": transpose_identifier_chars,
    "misspell_identifier": misspell_identifier,
}


def _errors(tree: Tree) -> int:
    return sum(node.is_error or node.is_missing for node in walk(tree.root_node))


def _parse(source: bytes) -> Tree:
    """The piece without its first row, which may be a cut one (its `we'll` would open a string
    to the end). And a piece cut from the token stream may start or end inside a docstring, whose
    prose would parse as code, or swallow the code after it. An odd number of a triple quote says
    that one string is cut: reopened at the start or closed at the end, whichever parses with
    fewer errors. An even number may still be both ends cut (a piece of prose): that reading must
    beat the piece as it is by more than the few errors of a piece cut mid-statement."""
    source = source[source.find(b"\n") :] if b"\n" in source else b""  # rows keep their numbers
    readings = [(b"", b"", 0)]
    for quote in (b'"""', b"'''"):
        if source.count(quote) % 2:
            readings += [(quote, b"", 0), (b"", quote, 0)]
        else:
            readings.append((quote, quote, 4))
    scored = []
    for opener, closer, penalty in readings:
        tree = PARSER.parse(opener + source + closer)
        scored.append((_errors(tree) + penalty, len(scored), tree))
    return min(scored)[2]  # the first of equals


def code_lines(text: str) -> tuple[list[CodeLine], Counter]:
    """The lines worth corrupting and every identifier's count in the document."""
    source = text.encode()
    rows = source.split(b"\n")
    tokens: dict[int, list[tuple[str, int, int]]] = {}
    bad = {0}  # a piece cut from the token stream may start mid-line (and _parse skips it)
    if not source.endswith(b"\n"):
        bad.add(len(rows) - 1)  # ... and end mid-line
    names: Counter = Counter()
    for node in walk(_parse(source).root_node):
        (row, col), (end_row, end_col) = node.start_point, node.end_point
        leaf = node.child_count == 0
        # An ERROR node may wrap well-formed code; the tokens it could not place are its leaves.
        misplaced = leaf and node.parent is not None and node.parent.is_error
        if misplaced or node.is_missing or node.type == "comment" or (leaf and row != end_row):
            bad.update(range(row, end_row + 1))  # broken, a comment, or a multi-line string
        elif leaf:
            tokens.setdefault(row, []).append((node.type, col, end_col))
            if node.type == "identifier":
                names[node.text.decode()] += 1
    lines, offset = [], 0
    for row, raw in enumerate(rows):
        line = raw.decode()
        if row not in bad and row in tokens and line.strip():
            chars = [
                Token(kind, len(raw[:start].decode()), len(raw[:end].decode()))
                for kind, start, end in sorted(tokens[row], key=lambda t: t[1])
            ]
            lines.append(CodeLine(offset, line, tuple(chars)))
        offset += len(line) + 1
    return lines, names


def corrupt(text: str, rng: np.random.Generator) -> Correction | None:
    """A random corruption of a random code line of text, or None where none applies."""
    lines, names = code_lines(text)
    order = rng.permutation(len(lines))
    for kind in rng.permutation(list(CORRUPTIONS)):  # kinds first: each as likely as the others
        for i in order:
            line = lines[i]
            corrupted = CORRUPTIONS[kind](line, names, rng)
            if corrupted is not None:
                end = line.start + len(line.text)
                return Correction(str(kind), corrupted, line.text, line.start, end)
    return None


class ErrorCorrectionTransform:
    """A phase's objective: each document piece of a chunk becomes a correction example with
    probability `error_correction_rate`, and otherwise goes to FIM as before."""

    def __init__(self, fim: FimTransform):
        self.fim = fim
        self.rate = fim.config.error_correction_rate

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.rate == 0:
            return self.fim(tokens, rng)  # exactly FIM's samples, draw for draw
        eot = self.fim.sentinels.eot
        pieces = np.split(tokens, np.flatnonzero(tokens == eot) + 1)
        out: list[int] = []
        for piece in pieces:
            ends_with_eot = len(piece) > 0 and piece[-1] == eot
            body = piece[:-1] if ends_with_eot else piece
            example = None
            if len(body) > 0 and rng.random() < self.rate:
                example = self.example(body.tolist(), rng)
            out.extend(self.fim(body, rng).tolist() if example is None else example)
            if ends_with_eot:
                out.append(eot)
        return np.asarray(out, dtype=np.int64)

    def example(self, ids: list[int], rng: np.random.Generator) -> list[int] | None:
        """The correction example of one document piece, no longer than the piece plus the three
        sentinels; None where the piece has no line to corrupt or is too short to hold one."""
        text = self.fim.tokenizer.decode(ids, skip_special_tokens=False)
        fix = corrupt(text, rng)
        if fix is None:
            return None
        code = fix.fixed.lstrip()
        indent = fix.fixed[: len(fix.fixed) - len(code)]
        comment = f"{indent}{MARKER}{fix.corrupted.lstrip()}\n{indent}"
        encode = self.fim.encode
        prefix, middle = encode(text[: fix.start] + comment), encode(code)
        suffix = encode(text[fix.end :])
        excess = max(len(prefix) + len(middle) + len(suffix) - len(ids), 0)
        # The comment's own tokens (and one at its seam with the code before) are never clipped.
        from_prefix = min(excess, max(len(prefix) - len(encode(comment)) - 1, 0))
        from_suffix = excess - from_prefix
        if from_suffix > len(suffix):
            return None
        prefix, suffix = prefix[from_prefix:], suffix[: len(suffix) - from_suffix]
        s = self.fim.sentinels
        if rng.random() < self.fim.config.spm_rate:
            return [s.prefix, s.suffix, *suffix, s.middle, *prefix, *middle]
        return [s.prefix, *prefix, s.suffix, *suffix, s.middle, *middle]
