"""Which tokens a sequence may take next, where its request constrains the output's first tokens.

- Token healing (`SamplingParams.forced_prefix`): the prompt was backed up to a clean token
  boundary by some characters, and the output must re-spell them first. A token fits if it is a
  prefix of what remains to spell or spells all of it and goes on (`"    re"` fits a remaining
  `"   "`; `"ret"` fits `"re"`). Its mask is cached per (remaining text, code on the first
  line): a file's keystrokes back the prompt up by the same few texts, and a space starts
  ~3,000 of an 8,192-token vocabulary, whose mask took ~6 ms of the engine thread to build.
- Code on the cursor's line (`SamplingParams.code_on_first_line`): at a cursor on a blank line, an
  output whose first line stays blank is no suggestion (an editor shows nothing, or code a line
  below the cursor). While the first line is still blank, the tokens that would end it (whitespace
  then a newline, the end of the text) are excluded; the model's next best choice is the code
  it would have written.
- A member after `expr.` (`SamplingParams.allowed_continuations`): the output's first identifier
  is one of the names (service/engine/member_constraint.py), on every decoding path: the sampler
  (greedy and sampled) masks the row, beam search packs the same mask for the beam kernel, and
  speculation verifies a draft under it (`verified_greedy`: a drafted token outside it is a miss).
  With token healing the names follow the forced prefix: a token that spells the rest of the
  forced prefix and goes on must go on inside the set.

Cost of the member constraint (2-core EPYC under load 3.4-3.8, checkpoints/default, 8,192-token
vocabulary, prompt `s = "a"; return s.` with all of `dir(str)` allowed; p50):

| what | ms |
|---|---|
| engine step, 16 greedy tokens, unconstrained / constrained | 56 / 63 (noise at this load) |
| mask per constrained step (cached mask + masked argmax) | 0.046 (< 0.1% of a step) |
| mask build for a new (member set, identifier so far), then cached | 0.48-0.88 |
| token texts + trie, once at engine start | 41-94 |
"""

import sys
from bisect import bisect_left
from collections import OrderedDict, defaultdict

import torch

from service.engine.member_constraint import MemberConstraint
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
    def __init__(
        self,
        token_strings: list[str],
        stop_ids: set[int],
        member: MemberConstraint,
        cached_masks: int = 256,  # healing masks kept: a file's keystrokes back up the same texts
    ):
        spellable = sorted(
            (text, token_id)
            for token_id, text in enumerate(token_strings)
            if text and token_id not in stop_ids
        )
        # Sorted, the tokens that start with a text are one run (found by bisection: a scan of
        # the ~3,000 tokens of an 8,192 vocabulary that start with a space took ~0.3 ms of the
        # engine thread per healed request).
        self.sorted_texts = [text for text, _ in spellable]
        self.sorted_ids = [token_id for _, token_id in spellable]
        self.ids_by_text: dict[str, list[int]] = defaultdict(list)
        for text, token_id in spellable:
            self.ids_by_text[text].append(token_id)
        self.token_strings = token_strings
        self.member = member
        self.cached_masks = cached_masks
        self.masks: OrderedDict[tuple[str, bool], torch.Tensor] = OrderedDict()
        # The tokens that may come while the first line is still blank: not those that end it.
        self.continuing_blank_line = torch.tensor(
            [not (i in stop_ids or ends_blank_line(text)) for i, text in enumerate(token_strings)]
        )

    def spelling(self, remaining: str) -> list[int]:
        """The tokens that continue spelling `remaining`: those that start with it (a run of the
        sorted texts, up to the least text past all of them), and those it starts with."""
        texts = self.sorted_texts
        start = bisect_left(texts, remaining)
        # The least text past every one that starts with `remaining`: its last character that
        # can grow, grown (the last code point cannot), the rest dropped.
        stem = remaining.rstrip(chr(sys.maxunicode))
        past = stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None
        end = len(texts) if past is None else bisect_left(texts, past, start)
        ids = self.sorted_ids[start:end]
        for length in range(1, len(remaining)):
            ids += self.ids_by_text.get(remaining[:length], ())
        return ids

    def healing(self, remaining: str, needs_code: bool) -> list[int]:
        """The tokens that spell on `remaining`; with `needs_code`, those whose text past it
        starts the first line's code (does not end the line blank)."""
        ids = self.spelling(remaining)
        if not needs_code:
            return ids
        strings = self.token_strings
        return [t for t in ids if not ends_blank_line(strings[t][len(remaining) :])]

    def healing_mask(self, remaining: str, needs_code: bool, vocab_size: int) -> torch.Tensor:
        """The tokens that spell on `remaining` (and, `needs_code`, start the first line's code
        past it), cached: the mask costs a list of thousands of ids to build."""
        key = (remaining, needs_code)
        mask = self.masks.pop(key, None)
        if mask is None or len(mask) != vocab_size:
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            mask[self.healing(remaining, needs_code)] = True
        self.masks[key] = mask
        if len(self.masks) > self.cached_masks:
            self.masks.popitem(last=False)
        return mask

    def member_names(self, seq: Sequence, output_ids: list[int]) -> tuple[frozenset[str], str]:
        """The request's names and the text spelled under them after `output_ids`; no names
        where it has none or the constraint is over."""
        names = seq.params.allowed_continuations
        if not names:
            return frozenset(), ""
        generated = self.member.generated(names, seq.params.forced_prefix, output_ids)
        return (names, generated) if generated is not None else (frozenset(), "")

    def allowed(self, seq: Sequence, vocab_size: int) -> torch.Tensor | None:
        """[vocab_size] bool: the tokens `seq` may take next; None where any may (also where no
        token spells the forced prefix, which then stays unenforced)."""
        remaining = remaining_prefix(seq.params.forced_prefix, seq.raw_text)
        needs_code = awaits_code(seq)
        names, generated = self.member_names(seq, seq.output_token_ids)
        if not remaining and not needs_code and not names:
            return None
        if not remaining:
            mask = self.member.mask(names, generated, vocab_size) if names else None
            if needs_code:
                blank = torch.zeros(vocab_size, dtype=torch.bool)
                blank[: len(self.continuing_blank_line)] = self.continuing_blank_line[:vocab_size]
                mask = blank if mask is None else mask & blank
        elif not names:
            mask = self.healing_mask(remaining, needs_code, vocab_size)
        else:  # ... and what a token spells past the forced prefix starts the member
            strings = self.token_strings
            ids = [
                t
                for t in self.healing(remaining, needs_code)
                if self.member.allows(names, strings[t][len(remaining) :])
            ]
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            mask[ids] = True
        if mask.any():
            return mask
        # Nothing fits. Without a member constraint the first-token rules give way; with one,
        # the sequence ends here rather than leave the set.
        return self.member.dead_end(vocab_size) if names else None

    def verified_greedy(self, seq: Sequence, draft: list[int], rows: torch.Tensor) -> list[int]:
        """The model's greedy choice after the sequence's last token and after each draft token
        (`rows`: their logits), taken under the member constraint wherever it is active there,
        so a drafted token outside it never matches and is rejected."""
        greedy = rows.argmax(-1).tolist()
        if not seq.params.allowed_continuations:
            return greedy
        output = seq.output_token_ids
        for i in range(len(greedy)):
            names, generated = self.member_names(seq, output + draft[:i])
            if not names:
                break  # over: the model's own choices stand from here on
            allowed = self.member.mask(names, generated, rows.shape[-1]).to(rows.device)
            greedy[i] = int(rows[i].masked_fill(~allowed, float("-inf")).argmax())
            if i < len(draft) and draft[i] != greedy[i]:
                break  # the draft is cut here: later rows are never read
        return greedy
