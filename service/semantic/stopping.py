"""Code-aware stopping: where an editor completion should end, decided while it is generated.

A stop rule is data, `LineEnd()` or `BlockEnd(min_indent)`, whose fields are its cache key;
the engine calls `rule.cut(text) -> cut index | None` on the text generated so far (forced
prefix already removed). Modes:

- "line": the completion ends with the cursor's line (the cursor sits before other code on it);
- "block": the completion ends when a line's indentation falls below the cursor's block (to or
  below the cursor line's own when that line opens a block, e.g. ends with ":"), or at a run of
  two blank lines;
- "auto": "line" when code follows the cursor on its line, else "block";
- "none": no rule; OpenAI's own semantics (EOS, stop strings, max_tokens) only.

In every mode but "none", a cursor on a blank line asks for code on that line (`on_blank_line`).
After generation, `drop_suffix_overlap` removes the end of a completion that repeats the code
already after the cursor.
"""

from dataclasses import dataclass
from typing import Literal

StopMode = Literal["none", "line", "block", "auto"]

OPENERS = ("(", "[", "{", ":")
TAB_WIDTH = 4


def indentation(line: str) -> int:
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(TAB_WIDTH))


def cursor_line(prefix: str) -> str:
    return prefix[prefix.rfind("\n") + 1 :]


def rest_of_line(suffix: str) -> str:
    return suffix.split("\n", 1)[0]


def on_blank_line(prefix: str, suffix: str) -> bool:
    """The cursor's line holds nothing but whitespace: a suggestion must put code on it
    (`SamplingParams.code_on_first_line`)."""
    return not cursor_line(prefix).strip() and not rest_of_line(suffix).strip()


@dataclass(frozen=True)
class LineEnd:
    """The completion ends with the cursor's line."""

    def cut(self, text: str) -> int | None:
        newline = text.find("\n")
        return None if newline == -1 else newline


@dataclass(frozen=True)
class BlockEnd:
    """The completion ends before its first line indented less than `min_indent` columns (a
    line that leaves the block), or at a run of two blank lines."""

    min_indent: int

    def cut(self, text: str) -> int | None:
        lines = text.split("\n")
        start = len(lines[0]) + 1  # line 0 continues the cursor's line: never judged
        blank_run = 0
        for number, line in enumerate(lines[1:], start=1):
            complete = number < len(lines) - 1
            if not line.strip():
                blank_run += complete
                if blank_run == 2:
                    return len(text[:start].rstrip())
            else:
                blank_run = 0
                if indentation(line) < self.min_indent:
                    return len(text[:start].rstrip())
            start += len(line) + 1
        return None


StopRule = LineEnd | BlockEnd


def block_stop_rule(line_at_cursor: str) -> BlockEnd:
    """Stop before the first line that leaves the cursor's block, or at two blank lines."""
    base = indentation(line_at_cursor)
    # A cursor line that opens a block: its body is deeper, and a line at its level ends it.
    return BlockEnd(base + 1 if line_at_cursor.rstrip().endswith(OPENERS) else base)


def make_stop_rule(mode: StopMode, prefix: str, suffix: str) -> StopRule | None:
    """The rule for `mode` at the cursor between `prefix` and `suffix` (LF text)."""
    if mode == "auto":
        mode = "line" if rest_of_line(suffix).strip() else "block"
    if mode == "line":
        return LineEnd()
    if mode == "block":
        return block_stop_rule(cursor_line(prefix))
    return None


def bracket_balance(text: str) -> int:
    return sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")


def drop_suffix_overlap(text: str, prefix: str, suffix: str) -> str:
    """`text` without an ending that the code after the cursor already has.

    Two cases: a one-line completion that ends with the rest of the cursor's line and closes one
    bracket too many with it (`foo(x)` before `)`), and a multi-line completion whose last lines
    repeat the first lines after the cursor.
    """
    line_rest = rest_of_line(suffix).strip()
    if line_rest and "\n" not in text and text.rstrip().endswith(line_rest):
        kept = text.rstrip()[: -len(line_rest)]
        line = cursor_line(prefix)
        if bracket_balance(line + text + line_rest) < 0 <= bracket_balance(line + kept + line_rest):
            return kept
    following = [line.strip() for line in suffix.split("\n")[1:] if line.strip()]
    lines = text.rstrip().split("\n")
    for n in range(min(len(lines) - 1, len(following)), 0, -1):
        if [line.strip() for line in lines[-n:]] == following[:n]:
            return "\n".join(lines[:-n]).rstrip()
    return text
