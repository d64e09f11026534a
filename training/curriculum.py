"""What each training step sees: the curriculum's phase, its source mixture and its FIM objective.

Every training sequence is a pure function of (seed, step, sample index): a fresh generator seeded
with those three picks the source, the window and the FIM split. So a resumed run sees exactly
the batches an uninterrupted one would, with no loader state to save, and the data-parallel
ranks of one step read disjoint samples (index = micro_step * world_size + rank).

Sources: "pretrain" is the packed `train.bin`; fine-tuning corpora are read from their published
JSON-lines formats and tokenized once at start-up:
    MBPP:          {"text": problem, "test_list": [assert ...], "code": solution, ...}
    CodeSearchNet: {"docstring": ..., "code": ..., ...}
"""

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from training.config import PhaseConfig, SourceSpec
from training.corruption import ErrorCorrectionTransform
from training.fim import FimTransform

IGNORE_INDEX = -100
FIM_SLACK = 16  # tokens of a block left for FIM's sentinels and re-tokenization (padded if unused)


def mbpp_document(record: dict) -> str:
    """The problem and its tests as a docstring, then the solution: write code to a spec."""
    tests = "\n".join(record["test_list"])
    return f'"""{record["text"]}\n\n{tests}\n"""\n{record["code"].strip()}\n'


def codesearchnet_document(record: dict) -> str:
    """The function with its docstring (CodeSearchNet's `code` usually already contains it)."""
    code, docstring = record["code"], record["docstring"].strip()
    if docstring and docstring not in code:
        head, _, body = code.partition("\n")
        indent = body[: len(body) - len(body.lstrip())] or "    "
        code = f'{head}\n{indent}"""{docstring}"""\n{body}'
    return code.rstrip() + "\n"


DOCUMENT_FORMATS = {"mbpp": mbpp_document, "codesearchnet": codesearchnet_document}


def read_documents(spec: SourceSpec) -> list[str]:
    to_document = DOCUMENT_FORMATS[spec.format]
    lines = Path(spec.path).read_text().splitlines()
    return [to_document(json.loads(line)) for line in lines if line.strip()]


def tokenize_documents(docs: list[str], tokenizer: Tokenizer) -> np.ndarray:
    eot = tokenizer.token_to_id("<|endoftext|>")
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(docs, add_special_tokens=False):
        ids.extend(encoding.ids + [eot])
    return np.asarray(ids, dtype=np.int64)


class Curriculum:
    def __init__(
        self,
        phases: dict[str, PhaseConfig],
        sources: dict[str, np.ndarray],
        tokenizer: Tokenizer,
        block_size: int,
        seed: int,
    ):
        missing = {s for p in phases.values() for s in p.mixture} - set(sources)
        if missing:
            raise ValueError(f"the curriculum mixes in unknown sources {sorted(missing)}")
        self.phases = phases
        self.sources = sources
        self.block_size = block_size
        self.seed = seed
        self.fim = {name: FimTransform(tokenizer, p.fim) for name, p in phases.items()}
        self.objectives = {name: ErrorCorrectionTransform(fim) for name, fim in self.fim.items()}
        self.pad = self.fim[next(iter(phases))].sentinels.pad
        # FIM adds three sentinels per document and re-tokenizing shifts its length a little: a
        # FIM phase reads a window that still fits the block afterwards. A window read past the
        # block would be cut at its end, and the end of a FIM example is its middle: short
        # middles (one line) would be cut off entirely, and with them the objective an editor needs.
        # Error-correction examples are never longer than FIM's, so the same slack serves them.
        slack = min(FIM_SLACK, block_size // 4)
        self.windows = {
            name: block_size + 1 - (slack if p.fim.rate + p.fim.error_correction_rate > 0 else 0)
            for name, p in phases.items()
        }

    def phase_at(self, step: int) -> str:
        end = 0
        for name, phase in self.phases.items():
            end += phase.steps
            if step < end:
                return name
        return name  # steps past the schedule stay in the last phase

    def window_at(self, step: int, index: int) -> tuple[np.ndarray, np.random.Generator]:
        """The raw tokens of sample `index` of `step`, and the generator its FIM split draws from."""
        rng = np.random.default_rng([self.seed, step, index])
        name = self.phase_at(step)
        mixture, window = self.phases[name].mixture, self.windows[name]
        weights = np.asarray(list(mixture.values()), dtype=np.float64)
        source = self.sources[list(mixture)[rng.choice(len(mixture), p=weights / weights.sum())]]
        start = int(rng.integers(0, max(1, len(source) - window)))
        return np.asarray(source[start : start + window], dtype=np.int64), rng

    def sample(self, step: int, index: int) -> np.ndarray:
        """block_size + 1 tokens; padding (where FIM left room) is IGNORE_INDEX."""
        window, rng = self.window_at(step, index)
        tokens = self.objectives[self.phase_at(step)](window, rng)[: self.block_size + 1]
        return np.pad(tokens, (0, self.block_size + 1 - len(tokens)), constant_values=IGNORE_INDEX)

    def batch(self, step: int, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(np.stack([self.sample(step, i) for i in indices]))
        x, y = rows[:, :-1].clone(), rows[:, 1:].clone()
        x[x == IGNORE_INDEX] = self.pad  # padded inputs only feed ignored targets
        return x, y
