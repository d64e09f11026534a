"""Duplicate removal: exact (a compact hash set) and near (MinHash, LSH banding spilled to disk).

Signatures are datasketch `MinHash`es (256 permutations) of each file's set of identifier
tokens; the band layout (b bands of r rows) is the one datasketch's `MinHashLSH` picks for the
threshold. Instead of holding every band key in a dict (kilobytes per file, far over 2 GB on
CodeParrot's 22M files), band keys are appended to partition files and grouped one partition at
a time; candidates sharing a band are confirmed by their estimated Jaccard similarity and
merged with union-find. Each cluster keeps its first file (in stream order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from training.data.config import DedupConfig

IDENTIFIER_SPLIT = re.compile(r"[^A-Za-z_0-9]+")
MAX_COMPARE = 16  # each bucket member is checked against at most this many earlier members
MERGE_EVERY = 1 << 20  # exact-dedup keys held in a Python set before merging into the array


class ExactDedup:
    """Seen-before test on 64-bit content-hash prefixes, at ~8 bytes per unique file.

    A Python set costs ~70 bytes per entry (1.5 GB for CodeParrot's 22M files), so keys live in
    a sorted numpy array; new keys wait in a small set and are merged in every MERGE_EVERY.
    """

    def __init__(self) -> None:
        self.sorted = np.empty(0, dtype=np.uint64)
        self.recent: set[int] = set()

    def seen(self, digest: str) -> bool:
        """True if `digest` (hex) was added before; adds it otherwise."""
        key = int(digest[:16], 16)
        if key in self.recent:
            return True
        i = np.searchsorted(self.sorted, key)
        if i < len(self.sorted) and self.sorted[i] == key:
            return True
        self.recent.add(key)
        if len(self.recent) >= MERGE_EVERY:
            merged = np.concatenate(
                [self.sorted, np.fromiter(self.recent, np.uint64, len(self.recent))]
            )
            self.sorted = np.sort(merged)
            self.recent.clear()
        return False


@dataclass
class Signer:
    """Per-process MinHash state: permutations are drawn once, not per file."""

    cfg: DedupConfig
    seed: int

    def __post_init__(self) -> None:
        self.template = MinHash(num_perm=self.cfg.num_perm, seed=self.seed)
        lsh = MinHashLSH(threshold=self.cfg.threshold, num_perm=self.cfg.num_perm)
        self.hashranges = lsh.hashranges

    def sign(self, content: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(signature uint32[num_perm], band keys uint64[b]), or None for too-short files."""
        tokens = {t for t in IDENTIFIER_SPLIT.split(content) if t}
        if len(tokens) < self.cfg.min_tokens:
            return None
        m = MinHash(
            num_perm=self.cfg.num_perm,
            seed=self.seed,
            permutations=self.template.permutations,
            scheme=self.template.scheme,
        )
        m.update_batch([t.encode("utf-8") for t in sorted(tokens)])
        sig = m.hashvalues.astype(np.uint32)
        return sig, self.bands(sig)

    def bands(self, sig: np.ndarray) -> np.ndarray:
        """One 64-bit key per band; seeded by the band index so equal rows in two bands differ."""
        keys = [
            xxhash.xxh3_64_intdigest(sig[s:e].tobytes(), seed=i)
            for i, (s, e) in enumerate(self.hashranges)
        ]
        return np.array(keys, dtype=np.uint64)


class NearDedupIndex:
    """Append-only index of signatures; `duplicates()` returns which files to drop."""

    def __init__(self, cfg: DedupConfig, work_dir: Path):
        self.cfg = cfg
        self.dir = work_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sig_path = self.dir / "signatures.u32"
        self.sig_file = self.sig_path.open("wb")
        self.band_files = [
            (self.dir / f"bands-{p:03d}.u64").open("wb") for p in range(cfg.partitions)
        ]
        self.count = 0

    def add(self, signed: tuple[np.ndarray, np.ndarray] | None) -> int:
        """Append one file (None: too short to be a near-duplicate); returns its doc id."""
        doc = self.count
        self.count += 1
        if signed is None:
            self.sig_file.write(np.zeros(self.cfg.num_perm, np.uint32).tobytes())
            return doc
        sig, bands = signed
        self.sig_file.write(sig.tobytes())
        rows = np.stack([bands, np.full_like(bands, doc)], axis=1)
        for part, row in zip(bands % np.uint64(self.cfg.partitions), rows, strict=True):
            self.band_files[int(part)].write(row.tobytes())
        return doc

    def close(self) -> None:
        self.sig_file.close()
        for f in self.band_files:
            f.close()

    def clusters(self) -> np.ndarray:
        """parent[i] = the first file of i's cluster (i itself when it has no near-duplicate)."""
        self.close()
        parent = np.arange(self.count, dtype=np.int64)
        if self.count == 0:
            return parent
        sigs = np.memmap(
            self.sig_path, dtype=np.uint32, mode="r", shape=(self.count, self.cfg.num_perm)
        )
        for f in self.band_files:
            rows = np.fromfile(f.name, dtype=np.uint64).reshape(-1, 2)
            for members in buckets(rows):
                self.merge_bucket(parent, sigs, members)
        # Pointer jumping: every entry ends at its root without a Python loop over all files.
        while not np.array_equal(parent, parent[parent]):
            parent = parent[parent]
        return parent

    def merge_bucket(self, parent: np.ndarray, sigs: np.ndarray, members: np.ndarray) -> None:
        block = np.asarray(sigs[members])
        heads = block[:MAX_COMPARE]
        # similarity[i, j]: estimated Jaccard of member i and head j (share of equal minhashes)
        similarity = (block[:, None, :] == heads[None, :, :]).mean(axis=2)
        for i in range(1, len(members)):
            limit = min(i, MAX_COMPARE)
            matches = np.nonzero(similarity[i, :limit] >= self.cfg.threshold)[0]
            if len(matches):
                union(parent, int(members[matches[0]]), int(members[i]))


def buckets(rows: np.ndarray) -> list[np.ndarray]:
    """Groups of doc ids (ascending) that share a band key, for groups of two or more."""
    if len(rows) == 0:
        return []
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    keys, docs = rows[order, 0], rows[order, 1].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return [docs[s:e] for s, e in zip(starts, ends, strict=True) if e - s > 1]


def find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return int(root)


def union(parent: np.ndarray, a: int, b: int) -> None:
    ra, rb = find(parent, a), find(parent, b)
    if ra != rb:
        # The smaller id (earlier file) stays the root, so the kept file is the first seen.
        parent[max(ra, rb)] = min(ra, rb)
