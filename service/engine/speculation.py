"""Speculative decoding from the prompt itself ("prompt lookup", as vLLM's n-gram speculator).

Code repeats itself: the next tokens of a completion are often tokens that already follow the
same few tokens somewhere in the file (`kw['object_hook'] = object_hook` then
`kw['object_pairs_hook'] = object_pairs_hook`). Each step, a greedy sequence whose last n tokens
occurred before proposes the k tokens that followed them as a draft; one forward pass computes
its last token and the draft together (a decode step reads every weight once, so on a CPU k + 1
rows cost little more than one), and the draft is kept up to its first token that differs from
the model's own greedy choice, which comes free with it. The output is token for token what plain
greedy decoding gives; only the number of steps changes.
"""

from array import array

from service.engine.next_tokens import constrained
from service.engine.sequence import Sequence

TOKEN_BYTES = array("i").itemsize


def propose_draft(
    token_ids: list[int], max_tokens: int, max_ngram: int, min_ngram: int
) -> list[int]:
    """The tokens after the latest earlier occurrence of the last n tokens (longest n first)."""
    # Runs every step of every greedy sequence: searched as bytes (a C scan), where a Python loop
    # over a 1,000-token context took ≈45 µs, 5% of a 16-session step.
    history = array("i", token_ids[:-1]).tobytes()  # where earlier occurrences may end
    for n in range(max_ngram, min_ngram - 1, -1):
        if n > len(token_ids) - 1:
            continue
        tail = array("i", token_ids[-n:]).tobytes()
        end = len(history)
        while (found := history.rfind(tail, 0, end)) >= 0:
            if found % TOKEN_BYTES == 0:  # token-aligned
                after = found // TOKEN_BYTES + n
                return token_ids[after : after + max_tokens]
            end = found + len(tail) - 1
    return []


def can_speculate(seq: Sequence) -> bool:
    """Greedy, single-beam sequences past the constraints on their first tokens
    (service/engine/next_tokens.py): verifying is then an argmax."""
    return seq.params.greedy and not seq.params.beam_search and not constrained(seq)


# The longest pause, in steps, of a sequence whose drafts the model keeps rejecting.
MAX_DRAFT_PAUSE = 16


def pace_drafts(seq: Sequence, accepted: int) -> None:
    """A draft the model rejects outright costs its rows in the step for nothing, and where many
    sequences decode together those rows are what a step spends most on (attention reads every
    key once per row). So a sequence pauses drafting after such a miss, twice as long after each
    miss in a row (up to MAX_DRAFT_PAUSE steps); any accepted token ends the pause."""
    if accepted:
        seq.draft_backoff = 1
        return
    seq.draft_pause = seq.draft_backoff
    seq.draft_backoff = min(2 * seq.draft_backoff, MAX_DRAFT_PAUSE)


def accepted_tokens(draft: list[int], greedy: list[int]) -> list[int]:
    """The draft up to its first miss, then the model's own token there (or after it).

    `greedy` holds the model's choice after the sequence's last token and after each draft token.
    """
    kept = 0
    while kept < len(draft) and draft[kept] == greedy[kept]:
        kept += 1
    return draft[:kept] + [greedy[kept]]
