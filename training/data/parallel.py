"""Order-preserving parallel map over batches, with bounded memory."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import Pool


def batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def ordered_map(pool: Pool, fn: Callable, batches: Iterable[list], window: int) -> Iterator[tuple]:
    """(batch, fn(batch)) in input order, with at most `window` batches in flight.

    `Pool.imap` would read its whole input ahead of the workers, so memory would grow with the
    corpus; the bounded window keeps it flat.
    """
    pending: deque = deque()
    for batch in batches:
        pending.append((batch, pool.apply_async(fn, (batch,))))
        if len(pending) >= window:
            done, result = pending.popleft()
            yield done, result.get()
    while pending:
        done, result = pending.popleft()
        yield done, result.get()
