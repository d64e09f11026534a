"""The load runner (python -m loadtests run): its verdict logic on made-up locust statistics,
and the CI profile end to end against a CPU server it starts itself; the knee sweep's table and
plot (python -m loadtests sweep) on made-up statistics."""

import math
import subprocess
import sys

import pytest
from PIL import Image

from loadtests.cli import parse_args
from loadtests.runner import Step, histogram_quantile, report
from loadtests.sweep import plot, table
from tests.support.service_process import REPO

TARGET = {
    "max_failures": 0,
    "p50_ms": 150,
    "p95_ms": 500,
    "max_refusal_ratio": 0.01,
    "min_completions": 10,
}


def stats(p50=40, p95=200, failures=0, refused=0, requests=100):
    row = {"Request Count": str(requests), "Failure Count": str(failures)}
    return {
        "completion": row | {"50%": str(p50), "95%": str(p95), "99%": str(p95)},
        "refused": {"Request Count": str(refused), "Failure Count": "0"},
        "Aggregated": {"Request Count": str(requests + refused), "Failure Count": str(failures)},
    }


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, 0),
        ({"p50": 151}, 1),
        ({"p95": 501}, 1),
        ({"failures": 1}, 1),
        ({"refused": 1}, 0),  # 1 of 101: under 1%
        ({"refused": 2}, 1),
        ({"requests": 5}, 1),
    ],
)
def test_the_verdict_follows_the_targets(kwargs, code, capsys):
    assert report(Step(4, 25, 30, stats(**kwargs)), TARGET) == code
    table = capsys.readouterr().out
    assert ("MISSED" in table) == bool(code)


def test_server_histogram_quantiles_come_from_the_runs_own_observations():
    def scrape(counts):
        bounds = ["0.05", "0.1", "0.5", "+Inf"]
        return {
            ("h_bucket", f'{{route="/x",le="{b}"}}'): float(c)
            for b, c in zip(bounds, counts, strict=True)
        }

    before = scrape([100, 100, 100, 100])  # earlier traffic, all fast
    after = scrape([100, 110, 200, 200])  # this run: 10 in (0.05, 0.1], 90 in (0.1, 0.5]
    assert math.isclose(histogram_quantile(before, after, "h", 0.05), 0.075)
    assert math.isclose(histogram_quantile(before, after, "h", 0.55), 0.1 + 0.4 * 45 / 90)


def test_the_sweep_tabulates_and_plots_each_user_count(tmp_path):
    steps = [
        Step(5, 60, 61, stats(p50=40, p95=120, requests=300), waiting=[0, 0, 1]),
        Step(20, 60, 61, stats(p50=90, p95=450, requests=1100)),
        Step(80, 60, 62, stats(p50=900, p95=4000, failures=2, refused=100, requests=1500)),
    ]
    lines = table(steps).splitlines()
    assert lines[0].startswith("| users | completions/s | typing p50 | typing p95 | typing p99 |")
    assert len(lines) == 2 + len(steps)
    assert lines[2] == "| 5 | 5.0 | 40 ms | 120 ms | 120 ms | 0.00% | 0 | - | 0.3 / 1 |"
    cells = [cell.strip() for cell in lines[4].strip("|").split("|")]
    # 1,500 answered less 2 failed in 60 s; 100 refused of 1,598 asked
    assert cells[:7] == ["80", "25.0", "900 ms", "4000 ms", "4000 ms", "6.26%", "2"]
    assert cells[-1] == "-"  # no gauge samples: a server without engine_requests_waiting

    png = tmp_path / "knee.png"
    plot(steps, {"p50_ms": 150, "p95_ms": 500}, png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 400


def test_the_sweep_takes_its_user_counts_as_a_list():
    args = parse_args(["sweep", "--users", "5,10,20", "--out", "knee.png", "--step-duration", "3"])
    assert (args.users, args.step_duration, args.profile) == ([5, 10, 20], 3, "long")
    with pytest.raises(SystemExit):
        parse_args(["sweep", "--users", "5,0", "--out", "knee.png"])


@pytest.mark.slow  # starts a server and a load run
def test_the_ci_profile_runs_against_a_cpu_server():
    """The runner starts a real server, types against it and prints its table; no request fails.
    Its latency targets are judged by the run's own verdict (exit 1 when missed) and are not
    asserted here: they measure the machine, and a unit test must not time it (docs/deploy.md
    has the runs that judge them)."""
    result = subprocess.run(
        [sys.executable, "-m", "loadtests", "run", "--profile", "ci"]
        + ["--server-flag=--device=cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    table = result.stdout
    assert "failed requests" in table, result.stderr[-3000:]
    verdicts = {
        line.split()[0] + " " + line.split()[1]: line.split()[-1]
        for line in table.splitlines()
        if line.split() and line.split()[-1] in ("ok", "MISSED")
    }
    assert verdicts["failed requests"] == "ok", table
    assert result.returncode in (0, 1), table
