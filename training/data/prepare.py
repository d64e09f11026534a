"""`python -m training prepare`: raw records -> cleaned, deduplicated JSON-lines shards + report.

Three streaming passes, so memory stays flat whatever the corpus size:
1. per-file heuristics and MinHash signatures in a process pool; exact dedup in the parent;
   survivors are written to work/stage1-*.jsonl, signatures and LSH bands to disk;
2. the near-duplicate clusters, grouped one LSH partition at a time;
3. near-dups dropped, then decontamination, license allow-list and secret scrubbing in the pool;
   the result goes to clean/part-*.jsonl.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import time
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np

from training.data.config import DataConfig
from training.data.decontaminate import Decontaminator
from training.data.dedup import ExactDedup, NearDedupIndex, Signer
from training.data.filters import content_hash, first_failure
from training.data.parallel import batched, ordered_map
from training.data.progress import Progress
from training.data.report import Report
from training.data.shards import ShardWriter, read_shards
from training.data.sources import load_records
from training.data.throughput import Work

_worker: dict = {}  # per-process state built once by the pool initializer


def _init_stage1(cfg: DataConfig) -> None:
    _worker["cfg"] = cfg
    _worker["signer"] = Signer(cfg.dedup, cfg.seed)


def _stage1(records: list[dict]) -> tuple[list[tuple], Work]:
    cfg, signer = _worker["cfg"], _worker["signer"]
    results, work = [], Work()
    for rec in records:
        content, size = rec["content"], int(rec["size"])
        with work.measure("filter", size):
            digest = content_hash(content)
            reason = first_failure(content, digest, cfg.filters, cfg.seed)
        signed = None
        if reason is None:
            with work.measure("minhash", size):
                signed = signer.sign(content)
        results.append((reason, digest, signed))
    return results, work


def _init_stage3(cfg: DataConfig) -> None:
    _worker["cfg"] = cfg
    _worker["decontaminator"] = Decontaminator(cfg.decontaminate)
    if cfg.secrets.scrub:
        # Imported lazily: the server's rules module, shared so training and serving agree.
        from service.secrets.scrubber import scrub

        _worker["scrub"] = scrub


def _stage3(records: list[dict]) -> tuple[list[tuple], Work]:
    cfg = _worker["cfg"]
    allowed = set(cfg.licenses.allow)
    results, work = [], Work()
    for rec in records:
        content, size = rec["content"], int(rec["size"])
        with work.measure("decontaminate", size):
            contaminated = _worker["decontaminator"].is_contaminated(content)
        if contaminated:
            results.append(("decontaminated", None, []))
        elif rec["license"] not in allowed:
            results.append(("license", None, []))
        elif "scrub" in _worker:
            with work.measure("secrets", size):
                scrubbed = _worker["scrub"](content)
            results.append((None, scrubbed.text, [f.rule for f in scrubbed.findings]))
        else:
            results.append((None, content, []))
    return results, work


def pass1(cfg: DataConfig, report: Report, index: NearDedupIndex, pool: Pool) -> list[Path]:
    """Heuristics + exact dedup; returns the stage-1 shards, in stream order."""
    writer = ShardWriter(cfg.out / "work", "stage1")
    exact = ExactDedup()
    progress = Progress("filter+minhash")
    batches = batched(load_records(cfg.source, cfg.out), cfg.batch_files)
    parent_cpu = time.process_time()
    for batch, (batch_results, work) in ordered_map(pool, _stage1, batches, 4 * cfg.num_proc):
        report.work.add(work)
        for rec, (reason, digest, signed) in zip(batch, batch_results, strict=True):
            report.add_input(rec)
            # The first copy claims the hash even if a later heuristic drops it, as in CodeParrot.
            if reason != "size" and exact.seen(digest):
                reason = "exact_dup"
            if reason:
                report.drop(reason, rec)
                continue
            with report.work.measure("lsh_index", int(rec["size"])):
                index.add(signed)
            writer.write(rec)
        progress.update(len(batch), sum(int(r["size"]) for r in batch))
    writer.close()
    progress.close()
    # The parent's own serial share: reading, exact dedup, LSH index writes, dispatch, writing.
    report.work.cpu["pass1_parent"] += time.process_time() - parent_cpu
    report.work.bytes["pass1_parent"] += report.bytes_in
    report.wall_seconds["pass1_filter_minhash"] = round(progress.elapsed, 2)
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


def pass3(
    cfg: DataConfig, report: Report, stage1: list[Path], roots: np.ndarray, pool: Pool
) -> list[Path]:
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
    for batch, (results, work) in ordered_map(pool, _stage3, batches, 4 * cfg.num_proc):
        report.work.add(work)
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
    report.wall_seconds["pass3_decontam_license_secrets"] = round(progress.elapsed, 2)
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
    start = time.perf_counter()
    with report.work.measure("lsh_cluster", report.work.bytes["minhash"]):
        roots = index.clusters()
    report.wall_seconds["pass2_lsh_cluster"] = round(time.perf_counter() - start, 2)
    report.duplicate_clusters = cluster_summary(roots)
    with ctx.Pool(cfg.num_proc, initializer=_init_stage3, initargs=(cfg,)) as pool:
        pass3(cfg, report, stage1, roots, pool)
    report.save(cfg.out / "report.json")
    shutil.rmtree(cfg.out / "work", ignore_errors=True)
    return report
