"""Records in CodeParrot's format from wheels, sdists, directories and local dataset files."""

import io
import json
import tarfile
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data.config import DirectorySource, SourceConfig
from training.data.sources import (
    COLUMNS,
    build_offline_corpus,
    iter_directory,
    iter_sdist,
    iter_wheel,
    license_from_metadata,
    load_records,
)

MODULE = "def f(x):\n    return x\n"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("Name: a\nLicense-Expression: Apache-2.0\n", "apache-2.0"),
        ("Name: a\nLicense: BSD 3-Clause License\n", "bsd-3-clause"),
        ("Name: a\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: MIT License\n", "mit"),
        (
            "Name: a\nClassifier: License :: OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)\n",
            "lgpl",
        ),
        ("Name: a\nLicense: Copyright (c) 2014 Someone\n", "unknown"),
    ],
)
def test_license_from_metadata(metadata, expected):
    assert license_from_metadata(metadata) == expected


def make_wheel(path, name="demo", version="1.0"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", "Name: demo\nLicense-Expression: MIT\n")
        zf.writestr(f"{name}/__init__.py", MODULE)
        zf.writestr(f"{name}/data.txt", "not python")
        zf.writestr(f"{name}/latin1.py", b"x = '\xe9'\n")  # not UTF-8: skipped
    return path


def test_wheel_and_sdist_records(tmp_path):
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl")
    assert list(iter_wheel(wheel, "demo")) == [
        dict(
            repo_name="demo",
            path="demo/__init__.py",
            copies="1",
            size=str(len(MODULE)),
            content=MODULE,
            license="mit",
        )
    ]
    sdist = tmp_path / "demo-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for name, text in [
            ("demo-1.0/PKG-INFO", "Name: demo\nLicense: BSD\n"),
            ("demo-1.0/src/demo/core.py", MODULE),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    (rec,) = iter_sdist(sdist, "demo")
    assert (rec["path"], rec["license"], rec["content"]) == (
        "src/demo/core.py",
        "bsd-3-clause",
        MODULE,
    )


def test_directory_repos_and_excludes(tmp_path):
    for rel in ["top.py", "pkg/a.py", "pkg/sub/b.py", "test/t.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(MODULE)
    src = DirectorySource(
        path=str(tmp_path), repo_name="lib", license="psf-2.0", repo_depth=1, exclude=["test/*"]
    )
    assert [(r["repo_name"], r["path"]) for r in iter_directory(src)] == [
        ("lib/pkg", "pkg/a.py"),
        ("lib/pkg", "pkg/sub/b.py"),
        ("lib", "top.py"),
    ]


def test_offline_corpus_uses_cached_archives(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    make_wheel(cache / "demo-1.0-py3-none-any.whl")
    cfg = SourceConfig(kind="offline", cache_dir=str(cache), packages=["demo==1.0"])
    shards = build_offline_corpus(cfg, tmp_path / "raw")
    assert build_offline_corpus(cfg, tmp_path / "raw") == shards  # manifest reused
    records = list(load_records(cfg, tmp_path))
    assert [(r["repo_name"], r["path"]) for r in records] == [("demo", "demo/__init__.py")]


def test_codeparrot_jsonl_and_parquet(tmp_path):
    rows = [
        dict(
            repo_name=f"r{i}",
            path="a.py",
            copies="2",
            size=str(len(MODULE)),
            content=MODULE,
            license="mit",
        )
        for i in range(3)
    ]
    jsonl = tmp_path / "part.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "part.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (jsonl, parquet):
        records = list(
            load_records(SourceConfig(kind="codeparrot", data_files=[str(path)]), tmp_path)
        )
        assert [{k: r[k] for k in COLUMNS} for r in records] == rows
