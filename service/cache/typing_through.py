"""Typing-through: the user types the first characters of a suggestion we just served; the
next request is answered by trimming that suggestion instead of running the model.

After serving choices C for prefix P, we store a record under `typing_key` (tenant, model,
decoding, file, suffix: all unchanged while the user types into the suggestion) holding a
digest of P's last `TAIL_CHARS` characters and C. A later request with prefix P' looks up that
one key (O(1)) and finds the typed length t: the smallest t such that P' ends with the first t
characters of a choice and P' less those t characters still ends with P's tail. Only the tail is
compared because the prompt window may slide forward at its start as the prefix grows.
"""

import json
from dataclasses import dataclass

from service.cache.keys import prefix_digest

TAIL_CHARS = 64


@dataclass(frozen=True)
class TypingRecord:
    tail_len: int
    tail_digest: str
    choices: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {"n": self.tail_len, "d": self.tail_digest, "c": list(self.choices)}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> "TypingRecord":
        obj = json.loads(data)
        return cls(obj["n"], obj["d"], tuple(obj["c"]))


def make_record(prefix: str, choices: list[str]) -> TypingRecord:
    tail = prefix[-TAIL_CHARS:]
    return TypingRecord(len(tail), prefix_digest(tail), tuple(choices))


def trim(record: TypingRecord, prefix: str) -> list[str] | None:
    """What is left of the recorded choices once `prefix` has typed into them, or None."""
    longest = max(map(len, record.choices), default=0)
    for typed_len in range(1, min(longest, len(prefix) - record.tail_len + 1)):
        typed = prefix[-typed_len:]
        rest = [c[typed_len:] for c in record.choices if c.startswith(typed) and len(c) > typed_len]
        if not rest:
            continue
        before = prefix[:-typed_len]
        if prefix_digest(before[-record.tail_len :]) == record.tail_digest:
            return rest
    return None
