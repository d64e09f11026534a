"""Beam search in the engine: a request's K beams are K sequences sharing their prefix KV blocks.

A request with `num_beams=K` starts as one sequence, so its prompt is prefilled once. At each step,
once every live beam of the request has its next-token logits, `kernels.beam_step` returns the
request's 2K best (parent beam, token) continuations. In rank order, a continuation that ends its
beam (EOS, a stop string, the stop rule or the length limit) becomes a finished hypothesis if it
ranks among the first K; the others become the next live beams until there are K. A parent chosen
more than once is forked: the child shares the parent's full KV blocks and gets a copy of its
partial last block. A parent chosen not at all is freed.

Scoring and stopping are those of `transformers` `generate(num_beams=K, do_sample=False)`: a
finished hypothesis scores sum_logprobs / num_generated_tokens ** length_penalty and the K best are
kept; the search ends when K are kept and `early_stopping=True`, when the best live beam can no
longer beat the worst kept one (its score normalized at the current length, or at the maximum
length for `"never"` with a positive penalty), or when no beam is left.
"""

import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from kernels.beam_step import beam_step
from service.engine.block_manager import BlockManager
from service.engine.model_runner import ModelRunner
from service.engine.output_processor import OutputProcessor
from service.engine.scheduler import Scheduler
from service.engine.sequence import Sequence, Status


@dataclass
class BeamGroup:
    request: Sequence  # what the engine and the client know; it receives the result
    beams: list[Sequence]  # live beams, best first, at most K
    finished: list[Sequence] = field(default_factory=list)  # hypotheses, best first, at most K
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  # id(beam) -> its next logits
    improvable: bool = True  # the live beams may still beat the worst kept hypothesis

    @property
    def num_beams(self) -> int:
        return self.request.params.num_beams

    @property
    def ready(self) -> bool:
        return len(self.logits) == len(self.beams)

    def keep(self, hypothesis: Sequence) -> None:
        self.finished.append(hypothesis)
        self.finished.sort(key=lambda s: s.score, reverse=True)
        del self.finished[self.num_beams :]


class BeamSearch:
    def __init__(
        self,
        scheduler: Scheduler,
        block_manager: BlockManager,
        runner: ModelRunner,
        outputs: OutputProcessor,
    ):
        self.scheduler = scheduler
        self.block_manager = block_manager
        self.runner = runner
        self.outputs = outputs
        self.groups: dict[str, BeamGroup] = {}

    def add(self, request: Sequence) -> None:
        first = branch(request)
        self.groups[request.request_id] = BeamGroup(request, [first])
        self.scheduler.add(first)

    def abort(self, request: Sequence) -> None:
        group = self.groups.pop(request.request_id)
        for beam in group.beams:
            self.scheduler.finish(beam, "abort")
        request.status, request.finish_reason = Status.FINISHED, "abort"

    def step(self, logits: torch.Tensor, beams: list[Sequence]) -> list[Sequence]:
        """Take the beams' logits; advance every request whose live beams all have theirs.
        Returns the requests that finished, each holding its best hypothesis and candidates."""
        for row, beam in zip(logits, beams, strict=True):
            self.groups[beam.request_id].logits[id(beam)] = row
        by_width: dict[int, list[BeamGroup]] = defaultdict(list)
        for group in self.groups.values():
            if group.ready:
                by_width[group.num_beams].append(group)
        done = []
        for width, groups in by_width.items():
            rows, scores, masks = zip(*(self._inputs(g) for g in groups), strict=True)
            allowed = None if all(m is None for m in masks) else torch.cat(_fill(masks))
            device = rows[0].device  # the model's: the Triton beam step runs on CUDA logits
            if allowed is not None:
                allowed = allowed.to(device)
            parents, tokens, cand_scores = beam_step(
                torch.cat(rows), torch.cat(scores).to(device), allowed, width
            )
            for group, p, t, s in zip(
                groups, parents.tolist(), tokens.tolist(), cand_scores.tolist(), strict=True
            ):
                if self._advance(group, p, t, s):
                    done.append(self._finish(group))
        return done

    def _inputs(self, group: BeamGroup):
        """K rows of logits, scores and masks; missing beams padded at score -inf (never chosen)."""
        width, beams = group.num_beams, group.beams
        rows = [group.logits[id(beams[min(i, len(beams) - 1)])] for i in range(width)]
        scores = [b.score for b in beams] + [float("-inf")] * (width - len(beams))
        masks = [self._mask(b, rows[0].shape[0]) for b in beams]
        masks += masks[:1] * (width - len(beams))
        mask = None if all(m is None for m in masks) else torch.stack(_fill(masks))
        return torch.stack(rows), torch.tensor(scores), mask

    @staticmethod
    def _mask(beam: Sequence, vocab_size: int) -> torch.Tensor | None:
        hook = beam.params.allowed_tokens
        mask = hook(beam.output_token_ids) if hook is not None else None
        if mask is not None and mask.shape != ((vocab_size + 31) // 32,):
            raise ValueError(f"allowed_tokens must return {(vocab_size + 31) // 32} int32 words")
        return mask

    def _advance(self, group: BeamGroup, parents, tokens, scores) -> bool:
        """Apply one step's ranked candidates; True when the request's search is over."""
        params, width = group.request.params, group.num_beams
        if group.request.first_token_time is None:
            group.request.first_token_time = time.perf_counter()
        may_keep = group.improvable and not (
            len(group.finished) == width and params.early_stopping is True
        )
        chosen: list[tuple[int, int, float]] = []
        for rank, (parent, token, score) in enumerate(zip(parents, tokens, scores, strict=True)):
            if score == float("-inf") or len(chosen) == width:
                break
            probe = branch(group.beams[parent])
            probe.finish_reason = self.outputs.append(probe, token)
            if probe.finish_reason is None:
                chosen.append((parent, token, score))
            elif rank < width and may_keep:
                probe.status = Status.FINISHED
                probe.score = score / probe.num_output_tokens**params.length_penalty
                group.keep(probe)
        self._replace_beams(group, chosen)
        if not group.beams:
            return True
        length = group.beams[0].num_output_tokens
        if params.early_stopping == "never" and params.length_penalty > 0:
            length = params.max_tokens
        best = group.beams[0].score / length**params.length_penalty
        full = len(group.finished) == width
        group.improvable = group.improvable and (not full or best > group.finished[-1].score)
        return not group.improvable or (full and params.early_stopping is True)

    def _replace_beams(self, group: BeamGroup, chosen: list[tuple[int, int, float]]) -> None:
        """Fork, keep or free the old beams so that the chosen continuations are the live ones."""
        used = {parent for parent, _, _ in chosen}
        for i, beam in enumerate(group.beams):
            if i not in used:
                self.scheduler.finish(beam, "abort")
        kept: set[int] = set()
        new_beams, copies = [], []
        for parent_index, _, _ in chosen:
            parent = group.beams[parent_index]
            if parent_index not in kept:
                kept.add(parent_index)
                new_beams.append(parent)
                continue
            if (
                self.block_manager.fork_needs_block(parent)
                and not self.block_manager.num_free_blocks
            ):
                new_beams.append(None)  # out of KV blocks: this request goes on with fewer beams
                continue
            child = branch(parent)
            copy = self.block_manager.fork(parent, child)
            if copy is not None:
                copies.append(copy)
            self.scheduler.add_running(child)
            new_beams.append(child)
        if copies:
            self.runner.copy_blocks(copies)
        # Tokens are appended only now: every fork above copied its parent's tokens before this step's.
        group.beams = []
        for beam, (_, token, score) in zip(new_beams, chosen, strict=True):
            if beam is not None:
                self.outputs.append(beam, token)
                beam.score = score
                group.beams.append(beam)
        group.logits.clear()

    def _finish(self, group: BeamGroup) -> Sequence:
        """End the search: free the live beams and give the request its ranked distinct results."""
        del self.groups[group.request.request_id]
        for beam in group.beams:
            self.scheduler.finish(beam, "abort")
        request = group.request
        distinct: dict[str, Sequence] = {}
        for hypothesis in group.finished:
            distinct.setdefault(hypothesis.text, hypothesis)
        request.candidates = list(distinct.values())
        request.status, request.finish_reason = Status.FINISHED, "stop"
        if request.candidates:
            best = request.candidates[0]
            request.token_ids, request.text, request.score = best.token_ids, best.text, best.score
            request.finish_reason, request.num_cached_tokens = (
                best.finish_reason,
                best.num_cached_tokens,
            )
        return request


def branch(seq: Sequence) -> Sequence:
    """A new sequence with the same tokens, text and timings, and no KV cache of its own yet."""
    copy = Sequence(seq.request_id, list(seq.token_ids), seq.params, text=seq.text, score=seq.score)
    copy.num_prompt_tokens, copy.num_cached_tokens = seq.num_prompt_tokens, seq.num_cached_tokens
    copy.arrival_time, copy.first_token_time = seq.arrival_time, seq.first_token_time
    return copy


def _fill(masks) -> list[torch.Tensor]:
    """Masks with None (no constraint) replaced by all bits set, shaped like the others."""
    like = next(m for m in masks if m is not None)
    return [torch.full_like(like, -1) if m is None else m for m in masks]
