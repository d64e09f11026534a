"""`python -m training compare A B`: two evaluated model directories, cursor by cursor.

Two checkpoints scored on the same cursors (the same held-out files and `line_completion.seed`)
differ by much less than either score's own standard error suggests, because most cursors are
easy or hard for both. The paired view counts the cursors only one model gets right and gives a
95% bootstrap interval of B − A. The bootstrap resamples held-out files, not cursors: cursors in
one file share its names and style, so they are not independent draws.
"""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from training.evaluation.line_completion import LINE_RECORDS, example_scores


def read_records(model_dir: str | Path) -> dict[str, list[dict]]:
    """A directory's line-completion records (written by evaluate), grouped by setting."""
    path = Path(model_dir) / LINE_RECORDS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m training evaluate` first")
    settings = defaultdict(list)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        settings[record["setting"]].append(record)
    return dict(settings)


def file_bootstrap(
    files: np.ndarray, a: np.ndarray, b: np.ndarray, samples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of mean(b) − mean(a) over files drawn with replacement."""
    ids, per_example = np.unique(files, return_inverse=True)
    count = np.bincount(per_example, minlength=len(ids))
    diff = np.bincount(per_example, weights=b - a, minlength=len(ids))
    draws = rng.integers(0, len(ids), size=(samples, len(ids)))
    means = diff[draws].sum(axis=1) / count[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def scored(records: list[dict]) -> np.ndarray:
    """One row per record: exact match (0 or 1) and edit similarity."""
    return np.array([example_scores(r["prediction"], r["target"]) for r in records], dtype=float)


def compare_setting(a: list[dict], b: list[dict], samples: int, seed: int) -> dict:
    """Exact match and edit similarity of A and B on one setting's cursors, paired."""
    if [r["target"] for r in a] != [r["target"] for r in b]:
        raise ValueError(
            f"{a[0]['setting']}: the two evaluations completed different cursors; evaluate both "
            "with the same held-out files and evaluate.line_completion.seed"
        )
    scored_a, scored_b = scored(a), scored(b)
    files = np.array([r["file"] for r in a])
    rng = np.random.default_rng(seed)
    exact_a, exact_b = scored_a[:, 0], scored_b[:, 0]
    return {
        "setting": a[0]["setting"],
        "examples": len(a),
        "exact_match": (100 * exact_a.mean(), 100 * exact_b.mean()),
        "only_a": int((exact_a > exact_b).sum()),
        "only_b": int((exact_b > exact_a).sum()),
        "exact_match_diff_95": tuple(
            100 * x for x in file_bootstrap(files, exact_a, exact_b, samples, rng)
        ),
        "edit_similarity": (scored_a[:, 1].mean(), scored_b[:, 1].mean()),
        "edit_similarity_diff_95": file_bootstrap(
            files, scored_a[:, 1], scored_b[:, 1], samples, rng
        ),
    }


def compare(
    dir_a: str | Path, dir_b: str | Path, samples: int = 10_000, seed: int = 0
) -> list[dict]:
    a, b = read_records(dir_a), read_records(dir_b)
    return [compare_setting(a[s], b[s], samples, seed) for s in a if s in b]


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| setting | cursors | exact match A / B | only A / only B right | B − A, 95% "
        "| edit similarity A / B | B − A, 95% |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        em_low, em_high = r["exact_match_diff_95"]
        es_low, es_high = r["edit_similarity_diff_95"]
        lines.append(
            f"| {r['setting']} | {r['examples']} | {r['exact_match'][0]:.1f}% / "
            f"{r['exact_match'][1]:.1f}% | {r['only_a']} / {r['only_b']} | "
            f"{em_low:+.1f} to {em_high:+.1f} | {r['edit_similarity'][0]:.1f} / "
            f"{r['edit_similarity'][1]:.1f} | {es_low:+.1f} to {es_high:+.1f} |"
        )
    return "\n".join(lines)
