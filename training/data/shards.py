"""JSON-lines shards of CodeParrot-format records: the files between pipeline stages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from training.data.sources import COLUMNS

SHARD_BYTES = 64 * 1024 * 1024


class ShardWriter:
    """Writes records to numbered JSON-lines shards of about SHARD_BYTES each."""

    def __init__(self, directory: Path, prefix: str):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.prefix = directory, prefix
        self.paths: list[Path] = []
        self.file = None
        self.written = SHARD_BYTES

    def write(self, rec: dict) -> None:
        if self.written >= SHARD_BYTES:
            self.close()
            self.paths.append(self.directory / f"{self.prefix}-{len(self.paths):05d}.jsonl")
            self.file, self.written = self.paths[-1].open("w"), 0
        line = json.dumps({k: rec[k] for k in COLUMNS}) + "\n"
        self.file.write(line)
        self.written += len(line)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


def read_shards(paths: list[Path]) -> Iterator[dict]:
    for path in paths:
        with path.open() as f:
            for line in f:
                yield json.loads(line)
