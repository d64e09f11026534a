"""Raw records in CodeParrot's format, from the hub, local files, or an offline corpus.

A record is a dict with CodeParrot's columns: repo_name, path, copies, size, content, license
(`copies` and `size` are strings, as in `codeparrot/codeparrot-clean`).
"""

from __future__ import annotations

import email.parser
import fnmatch
import hashlib
import io
import json
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from training.data.config import DirectorySource, SourceConfig

COLUMNS = ("repo_name", "path", "copies", "size", "content", "license")
SHARD_BYTES = 64 * 1024 * 1024

# Metadata license strings -> the lower-case SPDX-style names CodeParrot's `license` column uses.
LICENSE_PATTERNS = [
    (r"\bmit\b", "mit"),
    (r"apache", "apache-2.0"),
    (r"bsd[- ]?2|simplified bsd|freebsd", "bsd-2-clause"),
    (r"bsd", "bsd-3-clause"),
    (r"\bisc\b", "isc"),
    (r"python software foundation|\bpsf", "psf-2.0"),
    (r"mozilla|mpl", "mpl-2.0"),
    (r"lesser general public|lgpl", "lgpl"),
    (r"affero|agpl", "agpl-3.0"),
    (r"gpl.*v?3|general public license v3", "gpl-3.0"),
    (r"gpl|general public license", "gpl-2.0"),
    (r"unlicense", "unlicense"),
    (r"cc0|public domain", "cc0-1.0"),
]


def record(repo_name: str, path: str, content: str, license: str) -> dict:
    size = len(content.encode("utf-8"))
    return dict(
        repo_name=repo_name, path=path, copies="1", size=str(size), content=content, license=license
    )


def normalize_license(text: str) -> str:
    text = text.lower()
    for pattern, name in LICENSE_PATTERNS:
        if re.search(pattern, text):
            return name
    return "unknown"


def license_from_metadata(metadata: str) -> str:
    """License of a wheel's METADATA / an sdist's PKG-INFO: expression, field, then classifiers."""
    msg = email.parser.Parser().parsestr(metadata, headersonly=True)
    classifiers = [c for c in msg.get_all("Classifier") or [] if c.startswith("License ::")]
    for candidate in [msg.get("License-Expression"), msg.get("License"), *classifiers]:
        # A License field holding the whole license text is only trusted by its first line.
        if candidate and candidate.strip().lower() not in ("unknown", "none"):
            name = normalize_license(candidate.strip().splitlines()[0])
            if name != "unknown":
                return name
    return "unknown"


def decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def iter_wheel(path: Path, repo_name: str) -> Iterator[dict]:
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
        meta = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        license = (
            license_from_metadata(zf.read(meta).decode("utf-8", "replace")) if meta else "unknown"
        )
        for name in names:
            if name.endswith(".py") and (content := decode(zf.read(name))) is not None:
                yield record(repo_name, name, content, license)


def iter_sdist(path: Path, repo_name: str) -> Iterator[dict]:
    with tarfile.open(path) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
        info = next(
            (m for m in members if m.name.count("/") == 1 and m.name.endswith("PKG-INFO")), None
        )
        license = "unknown"
        if info:
            license = license_from_metadata(tf.extractfile(info).read().decode("utf-8", "replace"))
        for m in members:
            if m.name.endswith(".py") and (content := decode(tf.extractfile(m).read())) is not None:
                yield record(repo_name, m.name.split("/", 1)[-1], content, license)


def iter_directory(src: DirectorySource) -> Iterator[dict]:
    root = Path(src.path.format(stdlib=sysconfig.get_paths()["stdlib"]))
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in src.exclude):
            continue
        parts = rel.split("/")
        repo = src.repo_name
        if src.repo_depth and len(parts) > src.repo_depth:
            repo = f"{repo}/{'/'.join(parts[: src.repo_depth])}"
        if (content := decode(file.read_bytes())) is not None:
            yield record(repo, rel, content, src.license)


def download_packages(packages: list[str], cache_dir: Path) -> list[Path]:
    """Each pinned `name==version`'s archive, fetching those not yet in `cache_dir` with one pip
    call (no dependencies): one pip process per pin paid pip's start-up and index reads 623
    times for the grown corpus, where one call for all of them took a minute."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [spec for spec in packages if find_archive(cache_dir, *pin(spec)) is None]
    if missing:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache_dir)]
        subprocess.run([*command, *missing], check=True)  # pip shows its own progress
    archives = []
    for spec in packages:
        found = find_archive(cache_dir, *pin(spec))
        if found is None:
            raise FileNotFoundError(f"pip downloaded no archive for {spec} into {cache_dir}")
        archives.append(found)
    return archives


def pin(spec: str) -> tuple[str, str]:
    """`name==version` as (name, version)."""
    name, _, version = spec.partition("==")
    return name, version


def find_archive(cache_dir: Path, name: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for path in sorted(cache_dir.iterdir()):
        file_stem = re.sub(r"[-_.]+", "_", path.name.split(f"-{version}")[0]).lower()
        if file_stem == stem and f"-{version}" in path.name:
            return path
    return None


def iter_offline(cfg: SourceConfig) -> Iterator[dict]:
    for src in cfg.directories:
        yield from iter_directory(src)
    for spec, archive in zip(
        cfg.packages, download_packages(cfg.packages, Path(cfg.cache_dir)), strict=True
    ):
        repo, _ = pin(spec)
        reader = iter_wheel if archive.suffix == ".whl" else iter_sdist
        yield from reader(archive, repo)


def source_fingerprint(cfg: SourceConfig) -> str:
    blob = json.dumps([cfg.kind, cfg.packages, [vars(d) for d in cfg.directories], sys.version])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_offline_corpus(cfg: SourceConfig, out_dir: Path) -> list[Path]:
    """Write the offline corpus as JSON-lines shards once; reuse them while the config is unchanged."""
    manifest = out_dir / "manifest.json"
    fingerprint = source_fingerprint(cfg)
    if manifest.exists() and json.loads(manifest.read_text())["fingerprint"] == fingerprint:
        return [out_dir / name for name in json.loads(manifest.read_text())["shards"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part-*.jsonl"):
        old.unlink()
    shards: list[Path] = []
    writer: io.TextIOBase | None = None
    written = SHARD_BYTES
    bar = tqdm(desc="offline corpus", unit="B", unit_scale=True)
    for rec in iter_offline(cfg):
        if written >= SHARD_BYTES:
            if writer:
                writer.close()
            shards.append(out_dir / f"part-{len(shards):05d}.jsonl")
            writer, written = shards[-1].open("w"), 0
        line = json.dumps(rec) + "\n"
        writer.write(line)
        written += len(line)
        bar.update(int(rec["size"]))
    if writer:
        writer.close()
    bar.close()
    manifest.write_text(
        json.dumps({"fingerprint": fingerprint, "shards": [p.name for p in shards]})
    )
    return shards


def load_records(cfg: SourceConfig, work_dir: Path) -> Iterable[dict]:
    """Stream records through `datasets`: a hub dataset, local JSON lines/Parquet, or the offline build."""
    import datasets  # heavy (pyarrow, pandas); imported here so pool workers never load it

    if cfg.kind == "offline":
        files = [str(p) for p in build_offline_corpus(cfg, work_dir / "raw")]
        return datasets.load_dataset("json", data_files=files, split="train", streaming=True)
    if cfg.kind != "codeparrot":
        raise ValueError(f"unknown source kind {cfg.kind!r}")
    if cfg.dataset:
        return datasets.load_dataset(cfg.dataset, split=cfg.split, streaming=True)
    builder = "parquet" if all(f.endswith(".parquet") for f in cfg.data_files) else "json"
    return datasets.load_dataset(builder, data_files=cfg.data_files, split="train", streaming=True)
