"""Code-aware clean-up of one finished completion, server-side so thin plugins get clean output.

Pure functions of (completion, prefix, suffix); each does one thing, `clean` runs them in order:
- `cut_at_scope_end(text, prefix)`: the completion ends where the cursor's block ends (the
  "block" rule of stopping.py, applied after the fact to text generated without it).
- `drop_repeated_lines(text, prefix, suffix)`: no line that repeats the line above it (the
  model's loop), and the completion ends before it starts re-typing the code after the cursor.
- `drop_repeated_runs(text)`: the completion ends before it repeats two lines it already wrote.
- `drop_unfinished_tail(text)`: lines at the end of a several-line completion that the model
  did not finish (an open bracket, a trailing operator or `.`, a block header with no body).
- `drop_closing_brackets(text, prefix, suffix)`: closing brackets at the completion's end that the
  rest of the cursor's line already has are removed (`foo(x)` before `)` becomes `foo(x`).
- `is_substantive(text)`: not empty, not only whitespace and punctuation.
- `clean(text, prefix, suffix, style=None) -> str | None`: all of the above, then the file's
  style (style.py); None when nothing worth showing is left.

stopping.py stays the rule the engine applies while generating; these apply after it, where a
request ran without a stop rule or the model repeated itself.
"""

from service.semantic.brackets import depths_at_line_ends
from service.semantic.stopping import (
    block_stop_rule,
    cursor_line,
    drop_suffix_overlap,
    rest_of_line,
)
from service.semantic.style import FileStyle, adapt_style

CLOSERS = {")": "(", "]": "[", "}": "{"}


def cut_at_scope_end(text: str, prefix: str) -> str:
    cut = block_stop_rule(cursor_line(prefix)).cut(text + "\n")  # the last line is complete too
    return text if cut is None else text[:cut]


def drop_repeated_lines(text: str, prefix: str, suffix: str) -> str:
    lines = text.split("\n")
    # Line 0 is a whole line only when the cursor's line is blank; then the line above counts.
    whole_first = not cursor_line(prefix).strip() and "\n" in prefix
    previous = prefix.split("\n")[-2].strip() if whole_first else None
    following = next((line.strip() for line in suffix.split("\n")[1:] if line.strip()), None)
    kept: list[str] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if (number > 0 or whole_first) and stripped:
            if stripped == following:
                break  # the model is typing the code after the cursor again
            if stripped == previous:
                continue
        kept.append(line)
        if stripped:
            previous = stripped
    if len(kept) == len(lines):
        return text
    if whole_first and kept and kept[0] != lines[0]:
        # Line 0 went: the next line moves up to the cursor, already at its indentation.
        kept[0] = kept[0].removeprefix(cursor_line(prefix))
    return "\n".join(kept).rstrip()


def drop_repeated_runs(text: str) -> str:
    """The completion ends before it repeats a run of two lines it already wrote: the model's
    loop over a block (`if a: return` / `if b: return` / `if a: return` ...), which the
    line-above rule cannot see."""
    lines = text.split("\n")
    seen: set[tuple[str, str]] = set()
    for number in range(len(lines) - 1):
        pair = (lines[number].strip(), lines[number + 1].strip())
        if pair in seen and all(pair):
            return "\n".join(lines[:number]).rstrip()
        seen.add(pair)
    return text


# The end of a line whose statement goes on: an operator, a dot, a comma, a backslash, a block
# opener with its body yet to come, or a keyword that needs what follows it.
CONTINUES = tuple(".,\\:=+-*/%&|^<>@")
KEYWORDS_THAT_GO_ON = {"and", "or", "not", "in", "is", "if", "elif", "else", "lambda", "await",
                       "from", "import", "as", "assert", "del", "while", "for", "with", "raise"}  # fmt: skip


def goes_on(line: str) -> bool:
    """Whether the code of `line` (a trailing comment aside) stops where its statement cannot."""
    # A line with a string keeps its `#`: it may be inside the string.
    code = (line if "'" in line or '"' in line else line.split("#", 1)[0]).rstrip()
    words = code.split()
    return code.endswith(CONTINUES) or bool(words) and words[-1] in KEYWORDS_THAT_GO_ON


def _unclosed_from(lines: list[str]) -> int | None:
    """The first line of the run at the end during which a bracket the completion opened stays
    open (or a string); None when everything it opens closes."""
    start = None
    for number, depth in enumerate(depths_at_line_ends("\n".join(lines))):
        if depth == 0:
            start = None
        elif start is None:
            start = number
    return start


def drop_unfinished_tail(text: str) -> str:
    """A completion of several lines loses the lines at its end that the model did not finish
    (max_tokens cut it mid-statement: an open bracket, a trailing `self.`, a block header with
    no body). Its first line is the cursor's and stays: the user goes on typing there."""
    lines = text.split("\n")
    unclosed = _unclosed_from(lines)
    if unclosed is not None and unclosed > 0:
        lines = lines[:unclosed]
    while len(lines) > 1:
        code = lines[-1].split("#", 1)[0].strip()
        if code and not goes_on(lines[-1]):
            break
        lines.pop()  # unfinished, or blank / only a comment at the end
    return "\n".join(lines).rstrip() if len(lines) < len(text.split("\n")) else text


def _balance(text: str) -> dict[str, int]:
    depth = dict.fromkeys("([{", 0)
    for c in text:
        if c in depth:
            depth[c] += 1
        elif c in CLOSERS:
            depth[CLOSERS[c]] -= 1
    return depth


def drop_closing_brackets(text: str, prefix: str, suffix: str) -> str:
    """Remove closers at the end of a one-line completion that leave the cursor's line with more
    closers than openers once the rest of the line (which has them) follows."""
    if "\n" in text:
        return drop_suffix_overlap(text, prefix, suffix)
    line, rest = cursor_line(prefix), rest_of_line(suffix)
    body = text.rstrip()
    while body and body[-1] in CLOSERS and rest.lstrip().startswith(body[-1]):
        opener = CLOSERS[body[-1]]
        if _balance(line + body + rest)[opener] >= 0:
            break
        body = body[:-1].rstrip()
    return body if body != text.rstrip() else drop_suffix_overlap(text, prefix, suffix)


def is_substantive(text: str) -> bool:
    return any(c.isalnum() or c == "_" for c in text)


def clean(text: str, prefix: str, suffix: str, style: FileStyle | None = None) -> str | None:
    text = cut_at_scope_end(text, prefix)
    text = drop_repeated_lines(text, prefix, suffix)
    text = drop_repeated_runs(text)
    text = drop_unfinished_tail(text)
    text = drop_closing_brackets(text, prefix, suffix)
    if style is not None:
        text = adapt_style(text, style)
    return text if is_substantive(text) else None
