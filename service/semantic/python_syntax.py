"""Python's own parser as the last word on a completion's syntax.

tree-sitter's error recovery accepts code that Python rejects: a block header with no body
(`if x:` followed by a line at the same indentation), a `try:` with no `except`, a `from glo`
that runs on into the next line's `import`. Python's parser rejects all three, so the checks
(checks.py) ask it too, on the one definition around the cursor, not on the whole file: a file
being edited is often broken somewhere else, and a large file would take milliseconds.

API:
- `statement_around(prefix, suffix) -> Statement | None`: the code the cursor is in, as Python
  compiles it: the innermost `def`/`class` whose body holds the cursor, else the module-level
  statement; None when it is over `MAX_CHARS`.
- `parses_as_it_is(statement, prefix, suffix) -> bool`: Python judges a completion only where
  the code parsed without it (else tree-sitter alone does: a cursor inside a half-typed line, a
  region that starts inside a string). Asked only once a completion fails: most parse.
- `syntax_error_at(statement, prefix, completion, suffix) -> int | None`: where Python's parser
  finds the first error once the completion is in, as characters into the completion (0 when it
  lies before the completion; `len(completion)` when after it: a header whose body is missing
  is the completion's fault, not the following line's); None when it parses.
"""

import ast
import re
import warnings
from dataclasses import dataclass

from service.semantic.brackets import CLOSERS
from service.semantic.stopping import indentation

MAX_CHARS = 4_000  # ~0.5 ms to parse (95% of definitions are shorter); longer: not checked
HEADER = re.compile(r"(?:async\s+def|def|class)\b")
# Module-level lines that go on a statement above them, which the region must start before.
GOES_ON_ABOVE = re.compile(r"(?:else|elif|except|finally)\b|[)\]}]")
# An indented region is compiled as the body of this header, so that its indentation stands.
INDENTED_UNDER = "if 1:\n"


@dataclass(frozen=True)
class Statement:
    start: int  # characters into prefix + suffix
    end: int
    indented: bool  # starts past column 0: compiled under INDENTED_UNDER


def _is_code(line: str) -> bool:
    stripped = line.lstrip()
    return bool(stripped) and not stripped.startswith("#")


def _line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end == -1 else text[start:end]


def _start(text: str, cursor: int) -> tuple[int, int] | None:
    """(first character, indentation) of the region: walking up from the cursor's line, the
    first `def`/`class` indented less than the code it holds, else the first module-level line
    that starts a statement. The cursor's own line counts when it is such a line."""
    start = text.rfind("\n", 0, cursor) + 1
    limit = indentation(text[start:cursor])  # a blank cursor line: the cursor's column
    own = True  # the cursor's line; blank, it stands at the cursor's column
    while cursor - start <= MAX_CHARS:
        line = _line(text, start)
        code = line.lstrip()
        # A line starting with a closer goes on the one above (`) -> int:` of a long header).
        if own or _is_code(line) and code[0] not in CLOSERS:
            indent = indentation(line) if code else limit
            if indent < limit or own and (indent == 0 or HEADER.match(code)):
                if HEADER.match(code):
                    return start, indent
                if indent == 0 and not GOES_ON_ABOVE.match(code):
                    return start, 0
                limit = max(indent, 1)  # an `else:` at column 0: its `if` is above
        if start == 0:
            return None
        start, own = text.rfind("\n", 0, start - 1) + 1, False
    return None


def _end(text: str, cursor: int, indent: int) -> int | None:
    """The first line after the cursor's whose code is indented no deeper than the region's
    first line (at column 0, one that does not go on the statement above); else the text's end."""
    newline = text.find("\n", cursor)
    while newline != -1 and newline - cursor <= MAX_CHARS:
        start = newline + 1
        line = _line(text, start)
        ends = _is_code(line) and indentation(line) <= indent
        if ends and (indent > 0 or not GOES_ON_ABOVE.match(line)):
            return start
        newline = text.find("\n", start)
    return len(text) if newline == -1 else None


def _error(source: str) -> SyntaxError | None:
    """Python's first syntax error in `source` (AST only: nothing is compiled or run)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in the user's strings
            compile(source, "<completion>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as error:
        return error
    except (ValueError, RecursionError):  # a NUL byte; nesting past the parser's limits
        return SyntaxError("unparsable", ("<completion>", 1, 1, "", 1, 1))
    return None


def _source(statement: Statement, prefix: str, completion: str, suffix: str) -> tuple[str, int]:
    """The region's source with the completion in, and where the completion starts in it."""
    head = (INDENTED_UNDER if statement.indented else "") + prefix[statement.start :]
    return head + completion + suffix[: statement.end - len(prefix)], len(head)


def statement_around(prefix: str, suffix: str) -> Statement | None:
    text, cursor = prefix + suffix, len(prefix)
    found = _start(text, cursor)
    if found is None:
        return None
    start, indent = found
    end = _end(text, cursor, indent)
    if end is None or end - start > MAX_CHARS:
        return None
    return Statement(start, end, indented=indent > 0)


def parses_as_it_is(statement: Statement, prefix: str, suffix: str) -> bool:
    """As it is, or broken only by a name missing at the cursor (`self.`, `x = `), which a
    completion then has to supply."""
    return any(_error(_source(statement, prefix, name, suffix)[0]) is None for name in ("", "_"))


def syntax_error_at(statement: Statement, prefix: str, completion: str, suffix: str) -> int | None:
    source, completion_start = _source(statement, prefix, completion, suffix)
    error = _error(source)
    if error is None:
        return None
    position = 0  # of the error's line and column (1-based, in characters) in `source`
    for _ in range((error.lineno or 1) - 1):
        position = source.find("\n", position) + 1
    position += max((error.offset or 1) - 1, 0)
    return min(max(position - completion_start, 0), len(completion))
