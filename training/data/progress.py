"""A progress bar that shows both MB/s and files/s."""

from __future__ import annotations

import time

from tqdm import tqdm


class Progress:
    """tqdm over bytes (so its rate reads MB/s) with the file count and files/s as postfix."""

    def __init__(self, desc: str, total_bytes: int | None = None):
        self.bar = tqdm(desc=desc, total=total_bytes, unit="B", unit_scale=True, mininterval=1.0)
        self.files = 0
        self.start = time.perf_counter()

    def update(self, files: int, nbytes: int) -> None:
        self.files += files
        self.bar.update(nbytes)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(files=self.files, files_s=f"{self.files / elapsed:.0f}", refresh=False)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def close(self) -> None:
        self.bar.close()
