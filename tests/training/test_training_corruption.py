import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.fim_examples import split_fim
from tests.support.training_data import SAMPLE_CODE, make_tokenizer, python_sources
from training.config import PhaseConfig, load_config
from training.corruption import (
    CORRUPTIONS,
    MARKER,
    ErrorCorrectionTransform,
    code_lines,
    corrupt,
)
from training.curriculum import IGNORE_INDEX, Curriculum
from training.fim import FimConfig, FimTransform

SYNTAX_BREAKING = {"drop_closing_bracket", "drop_block_colon"}


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(python_sources())


def replace_line(text: str, start: int, old: str, new: str) -> str:
    assert text[start : start + len(old)] == old
    return text[:start] + new + text[start + len(old) :]


@pytest.mark.slow  # compiles a broken copy of whole modules per line (≈10 s)
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_each_corruption_changes_a_line_and_the_fixed_file_compiles(kind):
    sources = [SAMPLE_CODE] + python_sources()[3:]  # string, textwrap: whole real modules
    applied = 0
    for source in sources:
        compile(source, "fixed.py", "exec")
        lines, names = code_lines(source)
        for line in lines[:80]:  # re-parsing each broken module is the slow part
            corrupted = CORRUPTIONS[kind](line, names, np.random.default_rng(line.start))
            if corrupted is None:
                continue
            applied += 1
            assert corrupted != line.text
            broken = replace_line(source, line.start, line.text, corrupted)
            if kind in SYNTAX_BREAKING:
                with pytest.raises(SyntaxError):
                    compile(broken, "broken.py", "exec")
            else:  # one identifier respelled: the right name is still in the file, the typo new
                compile(broken, "typo.py", "exec")
                _, typo_names = code_lines(broken)
                assert sum(typo_names.values()) == sum(names.values())
                assert set(names) <= set(typo_names)
                assert len(set(typo_names) - set(names)) == 1
    assert applied > 20


def test_corrupted_lines_are_code_lines():
    lines, _ = code_lines(SAMPLE_CODE)
    texts = [line.text for line in lines]
    assert "import os" not in texts  # the first line of a piece may be a cut one
    assert "        return default" in texts
    assert not any(text.strip() == "" or text.lstrip().startswith("#") for text in texts)
    commented, _ = code_lines("x = 1\ny = f(x)  # note\nz = '''a\nb(c)'''\nw = g(x)\n")
    assert [line.text for line in commented] == ["w = g(x)"]


def test_pieces_cut_inside_a_docstring_keep_its_prose_out():
    """Windows are cut at random tokens: a piece may start or end inside a docstring."""
    starts_inside = (
        'a docstring, with words(like this)\n    and prose: here\n    """\n    return f(x)\n'
    )
    ends_inside = (
        'x = 1\ndef f(x):\n    y = g(x)\n    """Unfinished\n    doc(with words)\n    if so: said\n'
    )
    assert [line.text for line in code_lines(starts_inside)[0]] == ["    return f(x)"]
    assert [line.text for line in code_lines(ends_inside)[0]] == ["def f(x):", "    y = g(x)"]


def corruptions_of(text: str, seeds: range) -> list:
    return [corrupt(text, np.random.default_rng(seed)) for seed in seeds]


def test_corrupt_is_deterministic_and_draws_every_kind():
    first, again = corruptions_of(SAMPLE_CODE, range(60)), corruptions_of(SAMPLE_CODE, range(60))
    assert first == again
    assert {c.kind for c in first} == set(CORRUPTIONS)
    assert corrupt("\n\n# only a comment\n", np.random.default_rng(0)) is None


def test_corrupt_does_not_depend_on_the_hash_seed():
    """Data-parallel ranks and resumed runs are separate processes: set order must not leak in."""
    script = (
        "import json, numpy as np; from tests.support.training_data import SAMPLE_CODE;"
        "from training.corruption import corrupt;"
        "print(json.dumps([corrupt(SAMPLE_CODE, np.random.default_rng(s)).corrupted"
        " for s in range(40)]))"
    )
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    here = [c.corrupted for c in corruptions_of(SAMPLE_CODE, range(40))]
    assert runs[0] == runs[1] == here


def undo_example(ids: list[int], tokenizer, transform) -> tuple[str, str, str, str, str, str]:
    """(order, code before the comment, broken line, indentation, fixed line, code after it)."""
    order, prefix, suffix, middle = split_fim(ids, transform.fim.sentinels)
    # SPM puts the prefix after <fim_middle> too (split_fim returns it as part of the middle).
    before, comment = (tokenizer.decode(prefix) + tokenizer.decode(middle)).rsplit(MARKER, 1)
    broken, indented_fix = comment.split("\n")
    fixed = indented_fix.lstrip()
    indent = indented_fix[: len(indented_fix) - len(fixed)]
    assert before.endswith("\n" + indent)
    before = before[: len(before) - len(indent)]
    return order, before, indent + broken, indent, fixed, tokenizer.decode(suffix)


@pytest.mark.parametrize("spm_rate", [0.0, 1.0])
def test_example_keeps_the_broken_line_above_the_hole_and_targets_the_fix(tokenizer, spm_rate):
    config = FimConfig(rate=0.0, spm_rate=spm_rate, error_correction_rate=1.0)
    transform = ErrorCorrectionTransform(FimTransform(tokenizer, config))
    ids = tokenizer.encode(SAMPLE_CODE).ids
    lines = SAMPLE_CODE.splitlines()
    for seed in range(20):
        example = transform.example(ids, np.random.default_rng(seed))
        order, before, broken, indent, fixed, after = undo_example(example, tokenizer, transform)
        assert order == ("spm" if spm_rate else "psm")
        assert indent + fixed in lines and "\n" not in fixed  # the target is exactly one line
        assert broken != indent + fixed
        # Without the comment it is the original file (its far ends clipped to pay for the comment).
        assert before + indent + fixed + after in SAMPLE_CODE
        assert len(example) == len(ids) + 3  # exactly a FIM example's budget


def test_rate_zero_gives_the_samples_of_a_curriculum_without_the_option(tokenizer):
    ids = np.asarray(tokenizer.encode("\n".join(python_sources())).ids)

    def curriculum(fim: FimConfig) -> Curriculum:
        phases = {"fim": PhaseConfig(10, fim)}
        return Curriculum(phases, {"pretrain": ids}, tokenizer, block_size=128, seed=3)

    fim = FimConfig(rate=0.5, spm_rate=0.5, structured_rate=0.5)
    plain_fim = FimTransform(tokenizer, fim)  # what Curriculum.sample did before the option
    off = curriculum(dataclasses.replace(fim, error_correction_rate=0.0))
    on = curriculum(dataclasses.replace(fim, error_correction_rate=0.5))
    differs = 0
    for index in range(30):
        window, rng = off.window_at(0, index)
        before = plain_fim(window, rng)[:129]
        before = np.pad(before, (0, 129 - len(before)), constant_values=IGNORE_INDEX)
        assert np.array_equal(off.sample(0, index), before)
        differs += not np.array_equal(on.sample(0, index), before)
    assert differs > 5


def fit_curriculum(tokenizer, rate: float) -> Curriculum:
    ids = np.asarray(tokenizer.encode("\n".join(python_sources())).ids)  # one long document
    phase = PhaseConfig(10, FimConfig(rate=0.5, spm_rate=0.5, error_correction_rate=rate))
    return Curriculum({"ec": phase}, {"pretrain": ids}, tokenizer, block_size=256, seed=0)


def test_samples_are_deterministic(tokenizer):
    a, b = fit_curriculum(tokenizer, 0.5), fit_curriculum(tokenizer, 0.5)
    keys = [(step, index) for step in (0, 7) for index in range(6)]
    samples = [a.sample(*key) for key in keys]
    assert all(np.array_equal(s, b.sample(*key)) for s, key in zip(samples, keys, strict=True))
    assert len({s.tobytes() for s in samples}) == len(samples)


def test_correction_samples_fit_the_block_with_the_fix_whole(tokenizer):
    curriculum = fit_curriculum(tokenizer, 1.0)
    transform = curriculum.objectives["ec"]
    corrections = 0
    for index in range(40):
        window, rng = curriculum.window_at(0, index)
        assert len(transform(window, rng)) <= 257  # nothing cut from the end, where the fix is
        sample = [t for t in curriculum.sample(0, index).tolist() if t != IGNORE_INDEX]
        text = tokenizer.decode(window.tolist())
        if MARKER not in tokenizer.decode(sample):
            continue  # a window without a line to corrupt goes to FIM
        corrections += 1
        _, before, _, indent, fixed, after = undo_example(sample, tokenizer, transform)
        assert f"\n{indent}{fixed}\n" in text  # the target is a whole line of the window
        assert before + indent + fixed + after in text
    assert corrections >= 30  # the others are windows of prose and comments


def test_rate_is_respected_per_document(tokenizer):
    eot = tokenizer.token_to_id("<|endoftext|>")
    doc = tokenizer.encode(SAMPLE_CODE).ids
    chunk = np.asarray((doc + [eot]) * 400)
    transform = ErrorCorrectionTransform(
        FimTransform(tokenizer, FimConfig(rate=0.5, error_correction_rate=0.3))
    )
    out = transform(chunk, np.random.default_rng(0))
    pieces = np.split(out, np.flatnonzero(out == eot) + 1)
    texts = [tokenizer.decode(p.tolist(), skip_special_tokens=False) for p in pieces if len(p)]
    corrections = sum(MARKER in t for t in texts) / 400
    fims = sum("<fim_prefix>" in t and MARKER not in t for t in texts) / 400
    assert 0.24 < corrections < 0.36
    assert 0.29 < fims < 0.41  # FIM's rate applies to the documents left: 0.5 * 0.7


def test_the_option_is_read_from_a_phase_of_the_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "curriculum:\n  fix: {steps: 3, fim: {rate: 0.5, error_correction_rate: 0.2}}\n"
    )
    fim = load_config(path).curriculum["fix"].fim
    assert (fim.rate, fim.error_correction_rate) == (0.5, 0.2)
    assert FimConfig().error_correction_rate == 0.0  # existing configs are unchanged
