"""`python -m training prepare`: raw records -> cleaned, deduplicated JSON-lines shards + report.

Three streaming passes, so memory stays flat whatever the corpus size:
1. per-file heuristics and MinHash signatures in a process pool; exact dedup in the parent;
   survivors are written to work/stage1-*.jsonl, signatures and LSH bands to disk;
2. the near-duplicate clusters, grouped one LSH partition at a time;
3. near-dups dropped, then decontamination, license allow-list and secret scrubbing in the pool;
   the result goes to clean/part-*.jsonl.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np

from training.data.config import DataConfig
from training.data.decontaminate import Decontaminator
from training.data.dedup import NearDedupIndex, Signer
from training.data.filters import content_hash, first_failure
from training.data.progress import Progress
from training.data.report import Report
from training.data.sources import COLUMNS, load_records

SHARD_BYTES = 64 * 1024 * 1024

_worker: dict = {}  # per-process state built once by the pool initializer


def _init_stage1(cfg: DataConfig) -> None:
    _worker["cfg"] = cfg
    _worker["signer"] = Signer(cfg.dedup, cfg.seed)


def _stage1(records: list[dict]) -> list[tuple]:
    cfg, signer = _worker["cfg"], _worker["signer"]
    results = []
    for content in (r["content"] for r in records):
        digest = content_hash(content)
        reason = first_failure(content, digest, cfg.filters, cfg.seed)
        signed = signer.sign(content) if reason is None else None
        results.append((reason, digest, signed))
    return results


def _init_stage3(cfg: DataConfig) -> None:
    _worker["cfg"] = cfg
    _worker["decontaminator"] = Decontaminator(cfg.decontaminate)
    if cfg.secrets.scrub:
        # Imported lazily: the server's rules module, shared so training and serving agree.
        from service.middleware.secrets import scrub

        _worker["scrub"] = scrub


def _stage3(records: list[dict]) -> list[tuple]:
    cfg = _worker["cfg"]
    allowed = set(cfg.licenses.allow)
    results = []
    for rec in records:
        if _worker["decontaminator"].is_contaminated(rec["content"]):
            results.append(("decontaminated", None, []))
        elif rec["license"] not in allowed:
            results.append(("license", None, []))
        elif "scrub" in _worker:
            text, findings = _worker["scrub"](rec["content"])
            results.append((None, text, [finding_kind(f) for f in findings]))
        else:
            results.append((None, rec["content"], []))
    return results


def finding_kind(finding: object) -> str:
    """A finding's rule name, whatever shape the scrubber reports it in."""
    for attr in ("rule", "kind", "type", "name"):
        if hasattr(finding, attr):
            return str(getattr(finding, attr))
        if isinstance(finding, dict) and attr in finding:
            return str(finding[attr])
    return type(finding).__name__


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


def record_throughput(report: Report, stage: str, progress: Progress, procs: int) -> None:
    mb = progress.bar.n / 1e6
    report.throughput[stage] = {
        "seconds": round(progress.elapsed, 2),
        "mb": round(mb, 2),
        "procs": procs,
        "mb_s_per_core": round(mb / progress.elapsed / procs, 3),
    }


def pass1(cfg: DataConfig, report: Report, index: NearDedupIndex, pool: Pool) -> list[Path]:
    """Heuristics + exact dedup; returns the stage-1 shards, in stream order."""
    writer = ShardWriter(cfg.out / "work", "stage1")
    seen: set[bytes] = set()  # 8-byte prefixes of exact-dedup hashes
    progress = Progress("filter+minhash")
    batches = batched(load_records(cfg.source, cfg.out), cfg.batch_files)
    for batch, batch_results in ordered_map(pool, _stage1, batches, 4 * cfg.num_proc):
        for rec, (reason, digest, signed) in zip(batch, batch_results, strict=True):
            report.add_input(rec)
            if reason != "size":
                key = bytes.fromhex(digest[:16])
                if key in seen:
                    reason = "exact_dup"
                seen.add(key)
            if reason:
                report.drop(reason, rec)
                continue
            index.add(signed)
            writer.write(rec)
        progress.update(len(batch), sum(int(r["size"]) for r in batch))
    writer.close()
    progress.close()
    record_throughput(report, "filter+minhash", progress, cfg.num_proc)
    return writer.paths


def cluster_summary(roots: np.ndarray) -> dict:
    """Cluster counts and the ten largest clusters (their kept file is named in pass 3)."""
    sizes = np.bincount(roots, minlength=len(roots))
    clustered = np.flatnonzero(sizes > 1)
    top = clustered[np.argsort(-sizes[clustered], kind="stable")][:10]
    return {
        "clusters": int(len(clustered)),
        "removed": int((roots != np.arange(len(roots))).sum()),
        "largest_sizes": [int(sizes[i]) for i in top],
        "largest": [{"doc": int(i), "size": int(sizes[i]), "kept": ""} for i in top],
    }


def pass3(cfg: DataConfig, report: Report, stage1: list[Path], roots: np.ndarray, pool: Pool) -> list[Path]:
    writer = ShardWriter(cfg.out / "clean", "part")
    progress = Progress("decontam+license+secrets")
    largest = {c["doc"]: c for c in report.duplicate_clusters["largest"]}

    def survivors() -> Iterator[dict]:
        for doc, rec in enumerate(read_shards(stage1)):
            if doc in largest:
                largest[doc]["kept"] = f"{rec['repo_name']}/{rec['path']}"
            if roots[doc] != doc:
                report.drop("near_dup", rec)
            else:
                yield rec

    batches = batched(survivors(), cfg.batch_files)
    for batch, results in ordered_map(pool, _stage3, batches, 4 * cfg.num_proc):
        for rec, (reason, content, findings) in zip(batch, results, strict=True):
            if reason:
                report.drop(reason, rec)
                continue
            if findings:
                report.secrets["files"] += 1
                report.secrets["findings"].update(findings)
            rec = {**rec, "content": content, "size": str(len(content.encode("utf-8")))}
            report.keep(rec)
            writer.write(rec)
        progress.update(len(batch), sum(int(r["size"]) for r in batch))
    writer.close()
    progress.close()
    record_throughput(report, "decontam+license+secrets", progress, cfg.num_proc)
    return writer.paths


def prepare(cfg: DataConfig) -> Report:
    """Run the cleaning pipeline; writes OUT/clean/*.jsonl and OUT/report.json."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    for stale in ("work", "clean"):
        shutil.rmtree(cfg.out / stale, ignore_errors=True)
    report = Report()
    index = NearDedupIndex(cfg.dedup, cfg.out / "work" / "lsh")
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.num_proc, initializer=_init_stage1, initargs=(cfg,)) as pool:
        stage1 = pass1(cfg, report, index, pool)
    progress = Progress("near-dup clusters", total_bytes=None)
    roots = index.clusters()
    progress.close()
    report.throughput["dedup-clusters"] = {
        "seconds": round(progress.elapsed, 2),
        "mb": round(sum(p.stat().st_size for p in stage1) / 1e6, 2),
        "procs": 1,
    }
    report.throughput["dedup-clusters"]["mb_s_per_core"] = round(
        report.throughput["dedup-clusters"]["mb"] / max(progress.elapsed, 1e-9), 3
    )
    report.duplicate_clusters = cluster_summary(roots)
    with ctx.Pool(cfg.num_proc, initializer=_init_stage3, initargs=(cfg,)) as pool:
        pass3(cfg, report, stage1, roots, pool)
    report.save(cfg.out / "report.json")
    shutil.rmtree(cfg.out / "work", ignore_errors=True)
    return report
