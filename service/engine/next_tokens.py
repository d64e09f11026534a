"""Which tokens a sequence may take next, where its request constrains the output's first tokens.

- Token healing (`SamplingParams.forced_prefix`): the prompt was backed up to a clean token
  boundary by some characters, and the output must re-spell them first. A token fits if it is a
  prefix of what remains to spell or spells all of it and goes on (`"    re"` fits a remaining
  `"   "`; `"ret"` fits `"re"`).
- Code on the cursor's line (`SamplingParams.code_on_first_line`): at a cursor on a blank line, an
  output whose first line stays blank is no suggestion (an editor shows nothing, or code a line
  below the cursor). While the first line is still blank, the tokens that would end it (whitespace
  then a newline, the end of the text) are excluded; the model's next best choice is the code
  it would have written.
"""

from collections import defaultdict

import torch

from service.engine.sequence import Sequence


def remaining_prefix(forced: str, generated: str) -> str:
    """What of the forced prefix the generated text has not spelled yet."""
    return forced[len(generated) :] if len(generated) < len(forced) else ""


def ends_blank_line(text: str) -> bool:
    """`text` ends the line it continues before anything but whitespace was written on it."""
    newline = text.find("\n")
    return newline >= 0 and not text[:newline].strip()


def awaits_code(seq: Sequence) -> bool:
    """The request wants code on the output's first line, and it has none yet."""
    params = seq.params
    return params.code_on_first_line and not seq.raw_text[len(params.forced_prefix) :].strip()


def constrained(seq: Sequence) -> bool:
    """Whether the request still constrains `seq`'s next token (if not, any token may come)."""
    return bool(remaining_prefix(seq.params.forced_prefix, seq.raw_text)) or awaits_code(seq)


class NextTokens:
    def __init__(self, token_strings: list[str], stop_ids: set[int]):
        by_first_char: dict[str, list[int]] = defaultdict(list)
        for token_id, text in enumerate(token_strings):
            if text and token_id not in stop_ids:
                by_first_char[text[0]].append(token_id)
        self.token_strings = token_strings
        self.by_first_char = dict(by_first_char)
        # The tokens that may come while the first line is still blank: not those that end it.
        self.continuing_blank_line = torch.tensor(
            [not (i in stop_ids or ends_blank_line(text)) for i, text in enumerate(token_strings)]
        )

    def spelling(self, remaining: str) -> list[int]:
        """The tokens that continue spelling `remaining`."""
        candidates = self.by_first_char.get(remaining[0], [])
        strings = self.token_strings
        return [
            t
            for t in candidates
            if strings[t].startswith(remaining) or remaining.startswith(strings[t])
        ]

    def allowed(self, seq: Sequence, vocab_size: int) -> torch.Tensor | None:
        """[vocab_size] bool: the tokens `seq` may take next; None where any may (also where no
        token spells the forced prefix, which then stays unenforced)."""
        remaining = remaining_prefix(seq.params.forced_prefix, seq.raw_text)
        needs_code = awaits_code(seq)
        if not remaining and not needs_code:
            return None
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        if remaining:
            ids = self.spelling(remaining)
            if needs_code:  # what a token spells past the forced prefix starts the first line
                strings = self.token_strings
                ids = [t for t in ids if not ends_blank_line(strings[t][len(remaining) :])]
            mask[ids] = True
        else:
            mask[: len(self.continuing_blank_line)] = self.continuing_blank_line
        return mask if mask.any() else None
