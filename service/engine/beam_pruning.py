"""Semantic pruning of beam search: a partial beam whose text holds a syntax error that no
continuation can fix is dropped during the search, instead of being ranked with the rest and
cut or dropped by the output checks at the end (while a fixable beam lost its place to it).

The error cheap enough to look for at every step is a closing bracket that closes nothing: one
past the brackets open at the cursor (`open_brackets`, from the semantic analysis of the code
before it) and the beam's own, or of the wrong kind for the beam's own innermost opener (`(]`).
Appending text never removes it. Strings and comments in the beam's text are skipped; the
cursor itself in a string is the caller's case (it sends no `open_brackets` then).
"""

CLOSES = {")": "(", "]": "[", "}": "{"}


def unfixable(text: str, open_brackets: int) -> bool:
    """Whether `text`, written after a cursor with `open_brackets` brackets open, closes a
    bracket it cannot close."""
    opened: list[str] = []  # the text's own openers, innermost last
    outside = open_brackets  # the cursor's, of kinds unknown here
    quote, i = "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
            elif c == "\n" and len(quote) == 1:
                quote = ""  # an unterminated one-line string ends with its line
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            i += len(quote) - 1
        elif c in "([{":
            opened.append(c)
        elif c in CLOSES:
            if opened:
                if opened.pop() != CLOSES[c]:
                    return True
            elif outside:
                outside -= 1
            else:
                return True
        i += 1
    return False
