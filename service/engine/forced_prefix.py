"""Which tokens may come next while the output must still spell a forced prefix (token healing).

The prompt was backed up to a clean token boundary by some characters; the model must now
generate tokens that re-spell them. A token fits if it is a prefix of what remains to spell or
spells all of it and goes on (`"    re"` fits a remaining `"   "`; `"ret"` fits `"re"`).
"""

from collections import defaultdict

import torch


class ForcedPrefixIndex:
    def __init__(self, token_strings: list[str], excluded_ids: set[int]):
        by_first_char: dict[str, list[int]] = defaultdict(list)
        for token_id, text in enumerate(token_strings):
            if text and token_id not in excluded_ids:
                by_first_char[text[0]].append(token_id)
        self.token_strings = token_strings
        self.by_first_char = dict(by_first_char)

    def allowed_ids(self, remaining: str) -> list[int]:
        candidates = self.by_first_char.get(remaining[0], [])
        strings = self.token_strings
        return [
            t
            for t in candidates
            if strings[t].startswith(remaining) or remaining.startswith(strings[t])
        ]

    def mask_logits(self, logits: torch.Tensor, remaining: str) -> torch.Tensor:
        """Logits with every token that does not fit set to -inf (unchanged if nothing fits)."""
        allowed = self.allowed_ids(remaining)
        if not allowed:
            return logits
        masked = torch.full_like(logits, float("-inf"))
        index = torch.tensor(allowed, dtype=torch.long)
        masked[index] = logits[index]
        return masked


def remaining_prefix(forced: str, generated: str) -> str:
    """What of the forced prefix the generated text has not spelled yet."""
    return forced[len(generated) :] if len(generated) < len(forced) else ""
