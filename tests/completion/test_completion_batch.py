"""service.completion.batch: evaluation's way to the served prompt, plan and engine without a
server, on a checkpoint whose greedy output is a known script."""

import pytest

from service.completion.batch import BatchCompleter, BatchJob
from service.completion.plan import sampling_params
from tests.support.scripted_checkpoint import SCRIPT, build_scripted_checkpoint

PREFIX, SUFFIX = "a =", "\nprint(add)\n"  # the script " b\nprint(add)" repeats the suffix's line


@pytest.fixture(scope="module")
def completer(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("batch") / "model")
    return BatchCompleter(model, 64, 64, num_threads=1, max_num_seqs=4, kv_cache_mb=8)


def job(completer: BatchCompleter, stop_mode: str, drop_overlap: bool) -> BatchJob:
    prompt = completer.prompt(PREFIX, SUFFIX, max_tokens=16)
    return BatchJob(
        prompt, sampling_params(prompt, max_tokens=16, stop_mode=stop_mode), drop_overlap
    )


def test_jobs_come_back_in_order_planned_and_finished_as_served(completer):
    finished = []
    texts = completer.complete(
        [
            job(completer, "none", drop_overlap=False),
            job(completer, "line", drop_overlap=False),  # the plan's stop rule: one line
            job(completer, "none", drop_overlap=True),  # the repeated suffix line dropped
        ],
        on_finished=finished.append,
    )
    assert SCRIPT == " b\nprint(add)"
    assert texts == [SCRIPT, " b", " b"]
    assert sum(finished) == 3
