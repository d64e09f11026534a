"""Bracket depth over Python source, strings and comments skipped: what the checks and the
post-processing read of a text without parsing it.

- `depth_after(code) -> int | None`: the brackets open at the end of `code`; None in a string.
- `depths_at_line_ends(code) -> list[int | None]`: the same at the end of each of its lines.
- `stray_closer(text, open_brackets) -> int | None`: the offset of the first closer that closes
  nothing, past `open_brackets` open before `text`.

(The engine's beam pruning, service/engine/beam_pruning.py, scans the same way on its own:
service.engine imports nothing of service.semantic.)
"""

OPENERS, CLOSERS = "([{", ")]}"


def depth_after(code: str) -> int | None:
    """Brackets open at the end of `code` (closers past its openers clamp at 0: the code may
    start inside a statement); None inside a string there."""
    return depths_at_line_ends(code)[-1]


def depths_at_line_ends(code: str) -> list[int | None]:
    """`depth_after` at the end of each line of `code`, in one scan."""
    depths: list[int | None] = []
    depth, quote, i = 0, "", 0
    while i < len(code):
        c = code[i]
        if quote and c == "\\":
            if code.startswith("\n", i + 1):
                depths.append(None)  # an escaped line end: still in the string
            i += 2
            continue
        if c == "\n":
            depths.append(None if quote else depth)
            quote = ""  # a one-line string ends with its line
        elif quote:
            if c == quote:
                quote = ""
        elif c == "#":
            end = code.find("\n", i)
            i = len(code) if end == -1 else end
            continue
        elif c in "\"'":
            quote = c
        elif c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            depth = max(depth - 1, 0)  # the tail may start inside a statement: clamp
        i += 1
    depths.append(None if quote else depth)
    return depths


def stray_closer(completion: str, open_brackets: int) -> int | None:
    """Offset of the first closer in the completion that closes nothing (strings skipped)."""
    depth, quote = open_brackets, ""
    for i, c in enumerate(completion):
        if quote:
            if c == quote or c == "\n":
                quote = ""
        elif c == "#":
            quote = "\n"
        elif c in "\"'":
            quote = c
        elif c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            depth -= 1
            if depth < 0:
                return i
    return None
