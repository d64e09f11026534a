"""CPU seconds and bytes per stage, so throughput reads as MB/s per core.

Each worker measures its own process CPU time (`time.process_time`), which other jobs on a
shared machine do not inflate the way they inflate wall-clock time; the parent sums them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Work:
    cpu: Counter = field(default_factory=Counter)  # stage -> CPU seconds
    bytes: Counter = field(default_factory=Counter)  # stage -> bytes processed

    @contextmanager
    def measure(self, stage: str, nbytes: int) -> Iterator[None]:
        start = time.process_time()
        yield
        self.cpu[stage] += time.process_time() - start
        self.bytes[stage] += nbytes

    def add(self, other: Work) -> None:
        self.cpu.update(other.cpu)
        self.bytes.update(other.bytes)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            stage: {
                "mb": round(self.bytes[stage] / 1e6, 2),
                "cpu_s": round(self.cpu[stage], 2),
                "mb_s_per_core": round(self.bytes[stage] / 1e6 / max(self.cpu[stage], 1e-9), 2),
            }
            for stage in self.cpu
        }
