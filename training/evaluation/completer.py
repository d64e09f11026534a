"""Completions for evaluation through the server's own path with no server in between
(service.completion.batch: its prompt builder, plan and engine), with a progress bar."""

from tqdm import tqdm

from service.completion.batch import BatchCompleter, BatchJob


def complete(completer: BatchCompleter, jobs: list[BatchJob], desc: str) -> list[str]:
    """The completion text of each job, in order; all of them batched in the engine."""
    with tqdm(total=len(jobs), desc=desc, unit="req") as bar:
        return completer.complete(jobs, on_finished=bar.update)
