"""Exact and MinHash-LSH near-duplicate removal."""

import random

import numpy as np
from datasketch import MinHash, MinHashLSH

from tests.support.data_synthetic import near_duplicate, python_file
from training.data import dedup
from training.data.config import DedupConfig
from training.data.dedup import ExactDedup, NearDedupIndex, Signer


def test_exact_dedup_across_merges(monkeypatch):
    monkeypatch.setattr(dedup, "MERGE_EVERY", 7)  # force many merges into the sorted array
    rng = random.Random(0)
    digests = [f"{rng.getrandbits(128):032x}" for _ in range(100)]
    seen = ExactDedup()
    assert [seen.seen(d) for d in digests] == [False] * 100
    assert [seen.seen(d) for d in digests] == [True] * 100
    assert len(seen.sorted) >= 98 and not seen.seen(f"{rng.getrandbits(128):032x}")


def build_index(tmp_path, contents, cfg=None):
    cfg = cfg or DedupConfig(partitions=3)
    signer = Signer(cfg, seed=1)
    index = NearDedupIndex(cfg, tmp_path)
    for content in contents:
        index.add(signer.sign(content))
    return index.clusters(), signer


def test_planted_near_duplicates_cluster_to_the_first(tmp_path):
    rng = random.Random(1)
    originals = [python_file(rng) for _ in range(30)]
    contents = originals + [near_duplicate(originals[4]), near_duplicate(originals[17]), "x = 1\n"]
    roots, _ = build_index(tmp_path, contents)
    expected = np.arange(len(contents))
    expected[30], expected[31] = 4, 17
    np.testing.assert_array_equal(roots, expected)


def test_band_collision_below_threshold_is_not_merged(tmp_path):
    # Two signatures equal in the first band only: LSH candidates, but Jaccard ~0.07 < 0.85.
    cfg = DedupConfig(partitions=2)
    signer = Signer(cfg, seed=1)
    a, _ = signer.sign(python_file(random.Random(2)))
    b = a.copy()
    start, end = signer.hashranges[0]
    b[end:] += 1
    index = NearDedupIndex(cfg, tmp_path)
    index.add((a, signer.bands(a)))
    index.add((b, signer.bands(b)))
    index.add((a.copy(), signer.bands(a)))
    np.testing.assert_array_equal(index.clusters(), [0, 1, 0])


def test_candidates_match_datasketch_minhashlsh(tmp_path):
    """The disk-spilled banding finds the same candidate pairs as datasketch's in-memory index."""
    rng = random.Random(3)
    base = [python_file(rng) for _ in range(20)]
    contents = base + [near_duplicate(c) for c in base[:8]]
    cfg = DedupConfig(partitions=2, threshold=0.85)
    roots, signer = build_index(tmp_path, contents, cfg)
    lsh = MinHashLSH(threshold=0.85, num_perm=256)
    for i, content in enumerate(contents):
        sig, _ = signer.sign(content)
        m = MinHash(num_perm=256, hashvalues=sig, scheme=signer.template.scheme)
        for j in lsh.query(m):
            assert roots[i] == roots[j], (i, j)
        lsh.insert(i, m)
    assert sorted(set(roots.tolist())) == list(range(20))


def test_short_files_are_never_near_duplicates(tmp_path):
    roots, signer = build_index(tmp_path, ["a = b\n", "a = b\n"])
    assert signer.sign("a = b\n") is None
    np.testing.assert_array_equal(roots, [0, 1])
