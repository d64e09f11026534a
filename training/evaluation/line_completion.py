"""Line completion on held-out files (CodeXGLUE / CrossCodeEval style): the model completes a
line, or the next few lines, from the code before the cursor, with and without the code after
it (FIM). Scores: exact match on whitespace-split tokens and edit similarity (`fuzz.ratio`)."""

from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz

from service.completion.batch import BatchCompleter, BatchJob
from service.completion.plan import SamplingParams, fit_to_prompt
from training.config import LineCompletionConfig
from training.evaluation.completer import complete

LINE_RECORDS = "line_completion.jsonl"  # beside eval_results.json: one record per completion


@dataclass(frozen=True)
class Example:
    prefix: str  # the file up to the cursor, which sits after the line's indentation
    target: str  # the rest of the line, or of `lines` lines
    suffix: str  # the file after the target
    lines: int
    file: int = 0  # which held-out file: cursors of one file are not independent (compare.py)


def held_out_files(val_tokens: np.ndarray, tokenizer, eot_id: int, count: int) -> list[str]:
    """The first `count` complete documents of the held-out token stream."""
    ends = np.flatnonzero(np.asarray(val_tokens) == eot_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    docs = (tokenizer.decode(val_tokens[s:e].tolist()) for s, e in zip(starts, ends, strict=True))
    return [doc for doc, _ in zip(docs, range(count), strict=False)]


def make_examples(
    text: str, lines: int, count: int, rng: np.random.Generator, file: int = 0
) -> list[Example]:
    """Cursors at the start of code lines (not blank, not comments), after some context."""
    rows = text.split("\n")
    candidates = [
        i
        for i, row in enumerate(rows[:-lines])
        if i >= 3 and len(row.strip()) >= 4 and not row.strip().startswith("#")
    ]
    examples = []
    for i in rng.permutation(candidates)[:count].tolist():
        indent = rows[i][: len(rows[i]) - len(rows[i].lstrip())]
        prefix = "\n".join(rows[:i] + [indent])
        target = "\n".join(rows[i : i + lines])[len(indent) :]
        suffix = "\n" + "\n".join(rows[i + lines :])
        examples.append(Example(prefix, target, suffix, lines, file))
    return examples


@dataclass(frozen=True)
class AfterLines:
    """A stop rule (the engine's StopRule): the completion ends with its `lines`-th line."""

    lines: int

    def cut(self, text: str) -> int | None:
        ends = [i for i, c in enumerate(text) if c == "\n"]
        return ends[self.lines - 1] if len(ends) >= self.lines else None


def example_scores(prediction: str, target: str) -> tuple[bool, float]:
    """Exact match on whitespace-split tokens, and edit similarity (0-100)."""
    return prediction.split() == target.split(), fuzz.ratio(prediction.strip(), target.strip())


def scores(predictions: list[str], targets: list[str]) -> dict[str, float]:
    exact, similarity = zip(
        *(example_scores(p, t) for p, t in zip(predictions, targets, strict=True)), strict=True
    )
    match_rate = float(np.mean(exact))
    return {
        "exact_match": 100 * match_rate,
        # a binomial proportion's standard error: how far the set's size lets the score move
        "exact_match_stderr": 100 * float(np.sqrt(match_rate * (1 - match_rate) / len(exact))),
        "edit_similarity": float(np.mean(similarity)),
    }


def evaluate_line_completion(
    completer: BatchCompleter, files: list[str], lc: LineCompletionConfig
) -> tuple[dict[str, float], list[dict]]:
    """exact_match / edit_similarity for {single, multi}-line × {with, without} suffix, and the
    record of each example (setting, file, target, prediction) for a paired comparison."""
    results, records = {}, []
    for lines in (1, lc.multi_line):
        rng = np.random.default_rng(lc.seed)
        examples = [
            e
            for i, text in enumerate(files)
            for e in make_examples(text, lines, lc.examples_per_file, rng, file=i)
        ]
        targets = [e.target for e in examples]
        for with_suffix in (False, True):
            prompts = [
                completer.prompt(e.prefix, e.suffix if with_suffix else "", lc.max_new_tokens)
                for e in examples
            ]
            params = SamplingParams(
                max_tokens=lc.max_new_tokens,
                stop_rule=AfterLines(lines),
                num_beams=lc.num_beams,
                length_penalty=lc.length_penalty,
            )
            jobs = [BatchJob(prompt, fit_to_prompt(params, prompt)) for prompt in prompts]
            name = f"{'single' if lines == 1 else f'{lines}_lines'}_{'fim' if with_suffix else 'prefix'}"
            predictions = complete(completer, jobs, desc=name)
            for metric, value in scores(predictions, targets).items():
                results[f"line_{name}_{metric}"] = value
            records += [
                {"setting": name, "file": e.file, "target": e.target, "prediction": p}
                for e, p in zip(examples, predictions, strict=True)
            ]
        results[f"line_{'single' if lines == 1 else f'{lines}_lines'}_examples"] = len(examples)
    return results, records
