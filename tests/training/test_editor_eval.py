"""Editor-like cursors, the held-out package list, and the served path (no network)."""

import glob
import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.scripted_checkpoint import build_scripted_checkpoint
from training.evaluation.editor_eval import (
    HELD_OUT_PACKAGES,
    KINDS,
    copy_line_above,
    file_cursors,
    package_files,
    paired,
    run_cursors,
    sample_cursors,
    summarize,
)

SOURCE = '''"""Module."""
import os


class Store:
    def load(self, path):
        """Read it."""
        handle = open(path)
        data = handle.read().strip()

        result = os.path.join(path, data)  # join
        return result


TOP = os.getcwd()
'''


def test_every_cursor_kind_and_nothing_outside_functions():
    cursors = file_cursors("m.py", SOURCE)
    assert {c.kind for c in cursors} == set(KINDS)
    for c in cursors:
        assert c.prefix + c.target + c.suffix == SOURCE or c.kind == "empty_line"
        assert "TOP" not in c.target and "Read it" not in c.target
    by = {(c.kind, c.line): c for c in cursors}
    assert by[("statement", 8)].target == "handle = open(path)"
    assert by[("statement", 8)].prefix.endswith("\n        ")
    assert by[("member", 9)].target == "read().strip()"
    assert by[("member", 9)].prefix.endswith("handle.")
    assert by[("mid_identifier", 8)].prefix.endswith("han")
    empty = by[("empty_line", 11)]
    assert empty.target == "result = os.path.join(path, data)  # join"
    assert empty.prefix.endswith("strip()\n\n        ") and empty.suffix.startswith(
        "\n        return"
    )


def test_copy_line_above_baseline_and_summary():
    cursors = [c for c in file_cursors("m.py", SOURCE) if c.kind == "statement"]
    rows = summarize(copy_line_above(cursors))
    assert rows[-1]["kind"] == "all" and rows[-1]["cursors"] == len(cursors)


def test_held_out_packages_are_in_no_corpus_config():
    corpus = set()
    for cfg in glob.glob("training/configs/*.yaml"):
        for spec in (yaml.safe_load(Path(cfg).read_text()).get("source") or {}).get(
            "packages"
        ) or []:
            corpus.add(re.split(r"[=<>\[ ]", spec)[0].lower().replace("_", "-"))
    assert len(corpus) > 100
    for spec in HELD_OUT_PACKAGES:
        name, _, version = spec.partition("==")
        assert version, spec
        assert name.lower().replace("_", "-") not in corpus, spec


def test_package_files_from_a_local_cache_and_served_path(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "tinypkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("tinypkg/store.py", SOURCE)
        zf.writestr("tinypkg/tests/test_store.py", SOURCE)
        zf.writestr("tinypkg-1.0.dist-info/METADATA", "Name: tinypkg\nLicense: MIT\n")
    files = package_files(["tinypkg==1.0"], cache)  # cached: pip is never run
    assert list(files) == ["tinypkg/tinypkg/store.py"]
    cursors = sample_cursors(files, per_kind=2, seed=0)
    assert {c.kind for c in cursors} == set(KINDS)
    model = build_scripted_checkpoint(tmp_path / "model")
    settings = Settings(model=model, device="cpu", prefix_tokens=128, suffix_tokens=32)
    with TestClient(create_app(settings)) as client:
        records = run_cursors(client, cursors)
    assert len(records) == len(cursors)
    assert all(r["latency_s"] > 0 and "\n" not in r["prediction"] for r in records)
    assert {row["kind"] for row in summarize(records)} == {*KINDS, "all"}


def test_paired_difference_is_b_minus_a_on_the_same_cursors():
    a = [
        {
            "file": f"f{i % 5}",
            "line": i,
            "kind": "statement",
            "exact": i % 2 == 0,
            "similarity": 50.0,
            "latency_s": 0.1,
        }
        for i in range(40)
    ]
    b = [{**r, "exact": True, "similarity": 60.0, "latency_s": 0.2} for r in a]
    out = paired(a, b)
    assert out["exact"]["diff"] == 50.0 and out["exact"]["ci95"][0] > 0
    assert out["similarity"] == {"diff": 10.0, "ci95": [10.0, 10.0]}
    assert out["latency_p50_ratio"] == 2.0


@pytest.mark.slow  # runs the training CLI in subprocesses
def test_training_cli_forwards_editor_eval_options():
    import subprocess
    import sys

    run = [sys.executable, "-m", "training"]
    out = subprocess.run([*run, "editor-eval", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--settings-b" in out.stdout
    bad = subprocess.run([*run, "compare", "a", "b", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr


def test_the_b_run_sends_its_own_body_fields(monkeypatch, capsys):
    """`--extra-b` compares what a client sends (a stop mode, beams) on the same cursors and
    server; `--extra` alone goes to both runs."""
    from contextlib import nullcontext

    from training.evaluation import editor_eval

    sent, servers = [], []
    files = {"pkg/store.py": SOURCE}
    monkeypatch.setattr(editor_eval, "package_files", lambda packages, cache_dir: files)
    monkeypatch.setattr(
        editor_eval, "served_app", lambda model, **overrides: nullcontext(servers.append(overrides))
    )

    def run_cursors(client, cursors, extra, files=None):
        sent.append((extra, files))
        scores = {"exact": False, "similarity": 0.0, "latency_s": 0.1, "declarations": 0}
        return [{"file": c.file, "line": c.line, "kind": c.kind, **scores} for c in cursors]

    monkeypatch.setattr(editor_eval, "run_cursors", run_cursors)
    editor_eval.main(["--per-kind", "2", "--extra", '{"semantic": false}', "--extra-b", "{}"])
    assert sent == [({"semantic": False}, None), ({}, None)] and servers == [{}, {}]
    report = json.loads(capsys.readouterr().out)
    assert report["b"]["extra"] == {} and "b_minus_a" in report
    # --declarations-b: the B run gets the package's files to rebuild the client's declarations
    sent.clear()
    editor_eval.main(["--per-kind", "2", "--declarations-b"])
    assert sent == [({}, None), ({}, files)]
    assert json.loads(capsys.readouterr().out)["b"]["declarations"] is True
