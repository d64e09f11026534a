"""Beam search in the engine: a request's K beams are K sequences sharing their prefix KV blocks.

A request with `num_beams=K` starts as one sequence, so its prompt is prefilled once. At each step,
once every live beam of the request has its next-token logits, `completion_kernels.beam_step` returns the
2K best (parent beam, token) continuations. In rank order, a continuation that ends its beam (EOS,
a stop string, the stop rule or the length limit) becomes a finished hypothesis if it ranks among
the first K; the others become the next live beams until there are K. A parent chosen more than
once is forked: the child shares the parent's full KV blocks and gets a copy of its partial last
block. A parent chosen not at all is freed.

Scoring and stopping are those of `transformers` `generate(num_beams=K, do_sample=False)`: a
finished hypothesis scores sum_logprobs / num_generated_tokens ** length_penalty and the K best are
kept; the search ends when K are kept and `early_stopping=True`, when the best live beam can no
longer beat the worst kept one (its score normalized at the current length, or at the maximum
length for `"never"` with a positive penalty), or when no beam is left.

Diverse beam search (`num_beam_groups=G`, Vijayakumar et al., as `transformers` 4.x group beam
search): the K beams are G groups of K/G, each a beam search of its own (own hypotheses, own
stopping) that starts from the prompt. Groups step in order, and group g's log-probs are lowered
by `diversity_penalty` times the number of times earlier groups chose the token at this step
(Hamming diversity); the penalty stays in the beam's score, as in `transformers`. The result ranks
every group's hypotheses together. G = 1 is ordinary beam search.

Token healing, code on a blank cursor line and the member after `expr.` (service/engine/
next_tokens.py) constrain each beam's next tokens as they do a sampled request's, through the beam
kernel's packed mask; the forced prefix is removed from the returned texts. With
`open_brackets` set (the semantic engine's count at the cursor), a continuation that closes a
bracket nothing opened is pruned before it can take a place (service/engine/beam_pruning.py).
"""

import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from completion_kernels.beam_step import beam_step, pack_allowed

from service.engine.beam_pruning import unfixable
from service.engine.block_manager import BlockManager
from service.engine.model_runner import ModelRunner
from service.engine.next_tokens import NextTokens
from service.engine.output_processor import OutputProcessor
from service.engine.scheduler import Scheduler
from service.engine.sequence import Sequence, Status

Choice = tuple[Sequence, int, float]  # (parent beam, token, cumulative score)


@dataclass
class DiversityGroup:
    """K/G beams searched together (all K when G = 1)."""

    size: int
    beams: list[Sequence]  # live beams, best first, at most `size`
    finished: list[Sequence] = field(default_factory=list)  # hypotheses, best first, at most size
    improvable: bool = True  # the live beams may still beat the worst kept hypothesis

    @property
    def done(self) -> bool:
        return not self.beams

    def keep(self, hypothesis: Sequence) -> None:
        self.finished.append(hypothesis)
        self.finished.sort(key=lambda s: s.score, reverse=True)
        del self.finished[self.size :]


@dataclass
class BeamRequest:
    request: Sequence  # what the engine and the client know; it receives the result
    groups: list[DiversityGroup]
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  # id(beam) -> its next logits

    @property
    def live_beams(self) -> list[Sequence]:
        """Every live beam once (at the start all groups share the prompt's sequence)."""
        beams = {id(b): b for group in self.groups for b in group.beams}
        return list(beams.values())

    @property
    def ready(self) -> bool:
        return len(self.logits) == len(self.live_beams)


class BeamSearch:
    def __init__(
        self,
        scheduler: Scheduler,
        block_manager: BlockManager,
        runner: ModelRunner,
        outputs: OutputProcessor,
        next_tokens: NextTokens,
    ):
        self.scheduler = scheduler
        self.block_manager = block_manager
        self.runner = runner
        self.outputs = outputs
        self.next_tokens = next_tokens
        self.requests: dict[str, BeamRequest] = {}

    def add(self, request: Sequence) -> None:
        first = branch(request)
        params = request.params
        size = params.num_beams // params.num_beam_groups
        groups = [DiversityGroup(size, [first]) for _ in range(params.num_beam_groups)]
        self.requests[request.request_id] = BeamRequest(request, groups)
        self.scheduler.add(first)

    def abort(self, request: Sequence) -> None:
        state = self.requests.pop(request.request_id)
        for beam in state.live_beams:
            self.scheduler.finish(beam, "abort")
        request.status, request.finish_reason = Status.FINISHED, "abort"

    def step(self, logits: torch.Tensor, beams: list[Sequence]) -> list[Sequence]:
        """Take the beams' logits; advance every request whose live beams all have theirs.
        Returns the requests that finished, each holding its best hypothesis and candidates."""
        for row, beam in zip(logits, beams, strict=True):
            self.requests[beam.request_id].logits[id(beam)] = row
        by_shape: dict[tuple[int, int], list[BeamRequest]] = defaultdict(list)
        for state in self.requests.values():
            if state.ready:
                params = state.request.params
                by_shape[params.num_beams, params.num_beam_groups].append(state)
        done = []
        for (num_beams, num_groups), states in by_shape.items():
            # Each request's continuations, per group; group g's penalty needs groups < g's.
            chosen: dict[int, list[list[Choice]]] = {
                id(s): [[] for _ in range(num_groups)] for s in states
            }
            for g in range(num_groups):
                active = [s for s in states if not s.groups[g].done]
                if active:
                    self._step_group(active, g, num_beams // num_groups, chosen)
            for state in states:
                self._replace_beams(state, chosen[id(state)])
                if all(group.done for group in state.groups):
                    done.append(self._finish(state))
        return done

    def _step_group(
        self, states: list[BeamRequest], g: int, width: int, chosen: dict[int, list[list[Choice]]]
    ) -> None:
        """One beam step for diversity group g of each request, all in one kernel call."""
        inputs = [self._inputs(s, s.groups[g], width) for s in states]
        rows, scores, masks = zip(*inputs, strict=True)
        logits = torch.cat(rows)
        scores = torch.cat(scores).to(logits.device)  # the model's: Triton runs on CUDA logits
        penalties = [self._penalty(s, chosen[id(s)][:g], logits.shape[1]) for s in states]
        if any(p is not None for p in penalties):
            logits, offsets = penalized(logits, penalties, width)
            scores = scores + offsets
        allowed = None if all(m is None for m in masks) else torch.cat(_fill(masks))
        if allowed is not None:
            allowed = allowed.to(logits.device)
        parents, tokens, cand_scores = beam_step(logits, scores, allowed, width)
        for state, p, t, s in zip(
            states, parents.tolist(), tokens.tolist(), cand_scores.tolist(), strict=True
        ):
            chosen[id(state)][g] = self._advance(state, state.groups[g], p, t, s)

    def _inputs(self, state: BeamRequest, group: DiversityGroup, width: int):
        """`width` rows of logits, scores and masks; missing beams padded at score -inf."""
        beams = group.beams
        rows = [state.logits[id(beams[min(i, len(beams) - 1)])] for i in range(width)]
        scores = [b.score for b in beams] + [float("-inf")] * (width - len(beams))
        masks = [self._mask(b, rows[0].shape[0]) for b in beams]
        masks += masks[:1] * (width - len(beams))
        mask = None if all(m is None for m in masks) else torch.stack(_fill(masks))
        return torch.stack(rows), torch.tensor(scores), mask

    @staticmethod
    def _penalty(
        state: BeamRequest, earlier: list[list[Choice]], vocab_size: int
    ) -> torch.Tensor | None:
        """Hamming diversity: the penalty times how often earlier groups took each token."""
        tokens = [token for group in earlier for _, token, _ in group]
        penalty = state.request.params.diversity_penalty
        if not tokens or penalty == 0:
            return None
        return penalty * torch.bincount(torch.tensor(tokens), minlength=vocab_size).float()

    def _mask(self, beam: Sequence, vocab_size: int) -> torch.Tensor | None:
        """The request's constraints on the beam's next token (service/engine/next_tokens.py),
        packed for the beam kernel."""
        allowed = self.next_tokens.allowed(beam, vocab_size)
        return None if allowed is None else pack_allowed(allowed[None])[0]

    def _advance(
        self, state: BeamRequest, group: DiversityGroup, parents, tokens, scores
    ) -> list[Choice]:
        """Apply one step's ranked candidates to a group: keep the hypotheses that finish, and
        return the continuations that go on (none once the group's search is over)."""
        params, width = state.request.params, group.size
        if state.request.first_token_time is None:
            state.request.first_token_time = time.perf_counter()
        may_keep = group.improvable and not (
            len(group.finished) == width and params.early_stopping is True
        )
        chosen: list[Choice] = []
        for rank, (parent, token, score) in enumerate(zip(parents, tokens, scores, strict=True)):
            if score == float("-inf") or len(chosen) == width:
                break
            probe = branch(group.beams[parent])
            probe.finish_reason = self.outputs.append(probe, token)
            if params.open_brackets is not None and unfixable(probe.text, params.open_brackets):
                continue  # no continuation can make it valid code: pruned
            if probe.finish_reason is None:
                chosen.append((group.beams[parent], token, score))
            elif rank < width and may_keep:
                probe.status = Status.FINISHED
                probe.score = score / probe.num_output_tokens**params.length_penalty
                group.keep(probe)
        if not chosen:
            return []
        length = chosen[0][0].num_output_tokens + 1
        if params.early_stopping == "never" and params.length_penalty > 0:
            length = params.max_tokens
        best = chosen[0][2] / length**params.length_penalty
        full = len(group.finished) == width
        group.improvable = group.improvable and (not full or best > group.finished[-1].score)
        if not group.improvable or (full and params.early_stopping is True):
            return []
        return chosen

    def _replace_beams(self, state: BeamRequest, chosen: list[list[Choice]]) -> None:
        """Fork, keep or free the old beams so that the chosen continuations (per group) are the
        live ones."""
        flat = [choice for group in chosen for choice in group]
        used = {id(parent) for parent, _, _ in flat}
        for beam in state.live_beams:
            if id(beam) not in used:
                self.scheduler.finish(beam, "abort")
        kept: set[int] = set()
        new_beams, copies = [], []
        for parent, _, _ in flat:
            if id(parent) not in kept:
                kept.add(id(parent))
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
        # Tokens are appended only now: every fork above copied its parent's tokens before this
        # step's.
        start = 0
        for group, group_chosen in zip(state.groups, chosen, strict=True):
            group_beams = new_beams[start : start + len(group_chosen)]
            start += len(group_chosen)
            group.beams = []
            for beam, (_, token, score) in zip(group_beams, group_chosen, strict=True):
                if beam is not None:
                    self.outputs.append(beam, token)
                    beam.score = score
                    group.beams.append(beam)
        state.logits.clear()

    def _finish(self, state: BeamRequest) -> Sequence:
        """End the search: give the request every group's hypotheses, ranked and distinct."""
        del self.requests[state.request.request_id]
        request = state.request
        hypotheses = sorted(
            (h for group in state.groups for h in group.finished),
            key=lambda s: s.score,
            reverse=True,
        )
        distinct: dict[str, Sequence] = {}
        for hypothesis in hypotheses:
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


def penalized(
    logits: torch.Tensor, penalties: list[torch.Tensor | None], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and beam-score offsets for which the beam step scores beam_score +
    log_softmax(logits) - penalty (the penalty comes after the log-softmax, so it cannot simply be
    subtracted from the logits). The step normalizes what it gets, x - logsumexp(x): with
    x = log_softmax(logits) - penalty and the beam scores raised by logsumexp(x), that is exact."""
    zero = torch.zeros(logits.shape[1])
    penalty = torch.stack([zero if p is None else p for p in penalties])
    x = torch.log_softmax(logits.float(), -1) - penalty.repeat_interleave(width, 0).to(
        logits.device
    )
    return x, torch.logsumexp(x, -1)


def branch(seq: Sequence) -> Sequence:
    """A new sequence with the same tokens, text and timings, and no KV cache of its own yet."""
    copy = Sequence(
        seq.request_id,
        list(seq.token_ids),
        seq.params,
        cache_salt=seq.cache_salt,
        text=seq.text,
        score=seq.score,
    )
    copy.num_prompt_tokens, copy.num_cached_tokens = seq.num_prompt_tokens, seq.num_cached_tokens
    copy.raw_text = seq.raw_text
    copy.arrival_time, copy.first_token_time = seq.arrival_time, seq.first_token_time
    return copy


def _fill(masks) -> list[torch.Tensor]:
    """Masks with None (no constraint) replaced by all bits set, shaped like the others."""
    like = next(m for m in masks if m is not None)
    return [torch.full_like(like, -1) if m is None else m for m in masks]
