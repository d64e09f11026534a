"""The file's code style, and a completion rewritten to follow it.

API:
- `FileStyle(indent: str, quote: str | None)`: frozen; `indent` is one level ("\t" or N
  spaces), `quote` the file's string quote (' or "; None where it mixes them).
- `detect_style(source) -> FileStyle`: from the file (prefix + suffix): tabs when most indented
  lines start with one, else the most common step between successive indentations; the quote
  that at least 80% of simple string literals use. Defaults: 4 spaces, no quote.
- `adapt_style(text, style) -> str`: each completion line's indentation re-expressed in the
  file's unit (the completion's own unit detected the same way), and simple string literals
  (one line, no quote of either kind or backslash inside) switched to the file's quote.

Why: models trained mostly on 4-space, double-quoted code drift to it in a 2-space or tab file.
"""

import re
from collections import Counter
from dataclasses import dataclass

TAB_WIDTH = 4
CONSISTENT = 0.8  # the share of a file's simple strings that makes a quote its style
SIMPLE_STRING = re.compile(r"""(?<![\w"'\\])([rRbBuUfF]{0,2})(["'])([^"'\\\n]*)\2(?!["'])""")


@dataclass(frozen=True)
class FileStyle:
    indent: str = "    "
    quote: str | None = None  # None: the file has no consistent quote, strings are left alone


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_unit(lines: list[str], default: str = "    ") -> str:
    indented = [_leading(line) for line in lines if line.strip() and _leading(line)]
    if not indented:
        return default
    tabs = sum(lead.startswith("\t") for lead in indented)
    if tabs * 2 > len(indented):
        return "\t"
    widths = [len(_leading(line).expandtabs(TAB_WIDTH)) for line in lines if line.strip()]
    steps = Counter(b - a for a, b in zip(widths, widths[1:], strict=False) if b > a)
    return " " * steps.most_common(1)[0][0] if steps else default


def preferred_quote(source: str) -> str | None:
    """The quote of at least CONSISTENT of the file's simple strings; None in a file that mixes
    them (or has none): the model's own choice then follows the code around the cursor, and
    re-quoting a right suggestion in a mixed file made it wrong (the semantic evaluation)."""
    counts = Counter(match.group(2) for match in SIMPLE_STRING.finditer(source))
    quote, count = max(counts.items(), key=lambda item: item[1], default=(None, 0))
    return quote if count and count >= CONSISTENT * sum(counts.values()) else None


def detect_style(source: str) -> FileStyle:
    return FileStyle(indent=indent_unit(source.split("\n")), quote=preferred_quote(source))


def _reindent(text: str, target: str) -> str:
    lines = text.split("\n")
    source_unit = indent_unit(lines[1:], default=target)  # line 0 continues the cursor's line
    if source_unit == target:
        return text
    width = len(source_unit.expandtabs(TAB_WIDTH))
    out = [lines[0]]
    for line in lines[1:]:
        lead = _leading(line)
        columns = len(lead.expandtabs(TAB_WIDTH))
        levels, remainder = divmod(columns, width)
        out.append(target * levels + " " * remainder + line[len(lead) :])
    return "\n".join(out)


def _requote(text: str, quote: str) -> str:
    def swap(match: re.Match) -> str:
        prefix, old, body = match.groups()
        return match.group(0) if old == quote else f"{prefix}{quote}{body}{quote}"

    out = []
    for line in text.split("\n"):
        # Where a comment starts, with the simple strings blanked: `"#"` is not a comment.
        blanked = SIMPLE_STRING.sub(lambda m: "x" * len(m.group(0)), line)
        code_end = blanked.find("#") if "#" in blanked else len(line)
        code = blanked[:code_end]
        if "'" in code or '"' in code:
            out.append(line)  # an unclosed or multi-line string on it: leave the line alone
            continue
        out.append(SIMPLE_STRING.sub(swap, line[:code_end]) + line[code_end:])
    return "\n".join(out)


def adapt_style(text: str, style: FileStyle) -> str:
    text = _reindent(text, style.indent)
    return text if style.quote is None else _requote(text, style.quote)
