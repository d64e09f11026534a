"""Continuous batching: every step, running sequences decode first; waiting prompts fill the rest
of the token budget in chunks, so a long prompt never stalls the sequences already decoding."""

from collections import deque
from dataclasses import dataclass

from service.engine import metrics
from service.engine.block_manager import BlockManager
from service.engine.config import EngineConfig
from service.engine.sequence import Sequence, Status
from service.engine.speculation import can_speculate, propose_draft


@dataclass
class ScheduledChunk:
    seq: Sequence
    num_tokens: int  # tokens of this sequence computed this step, from seq.num_computed_tokens

    @property
    def completes_sequence(self) -> bool:
        """After this chunk every token (and draft token) is computed, so the next is sampled."""
        end = self.seq.num_computed_tokens + self.num_tokens
        return end == len(self.seq) + len(self.seq.draft_token_ids)


class Scheduler:
    def __init__(
        self,
        config: EngineConfig,
        block_manager: BlockManager,
        max_positions: int,
        speculative_tokens: int = 0,
    ):
        self.config = config
        self.max_positions = max_positions
        self.speculative_tokens = speculative_tokens
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = config.max_num_batched_tokens
        self.max_prefill_tokens_while_decoding = config.max_prefill_tokens_while_decoding
        self.max_tail_tokens = config.max_tail_tokens
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()  # prompts not fully computed, oldest first
        self.running: list[Sequence] = []  # decoding, oldest first
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def add_running(self, seq: Sequence) -> None:
        """A beam forked from a running one: its cache is already there, it decodes next step."""
        seq.status = Status.RUNNING
        self.running.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[ScheduledChunk]:
        chunks = self._schedule_step()
        # Only beams waiting for a preempted sibling can leave every running sequence idle while
        # they hold the blocks and slots it needs: free other requests' beams until it fits.
        while not chunks and self.running:
            head = self.waiting[0].request_id if self.waiting else None
            others = [s for s in self.running if s.request_id != head]
            self._preempt((others or self.running)[-1], front=False)
            chunks = self._schedule_step()
        return chunks

    def _schedule_step(self) -> list[ScheduledChunk]:
        chunks = self._schedule_decodes()
        budget = self.max_num_batched_tokens - sum(c.num_tokens for c in chunks)
        chunk_budget = min(budget, self.max_prefill_tokens_while_decoding) if chunks else budget
        slots = self.max_num_seqs - len(self.running)
        for seq in list(self.waiting):
            if budget <= 0 or slots <= 0:
                break
            if not seq.block_table and seq.num_computed_tokens == 0:
                self.block_manager.match_prefix(seq)  # stops at the first uncached block
            left = len(seq) - seq.num_computed_tokens
            num_tokens = min(left, budget if left <= self.max_tail_tokens else chunk_budget)
            if num_tokens <= 0:
                continue  # no room for chunks this step; tails behind it may still fit
            if not self.block_manager.ensure_slots(seq, num_tokens):
                break  # first come, first served: later prompts wait behind this one
            if seq.num_computed_tokens == seq.num_cached_tokens:  # its first chunk
                metrics.observe_scheduled(seq)
            chunks.append(ScheduledChunk(seq, num_tokens))
            budget -= num_tokens
            chunk_budget -= num_tokens
            slots -= 1
        return chunks

    def _schedule_decodes(self) -> list[ScheduledChunk]:
        chunks = []
        scheduled = set()
        for seq in list(self.running):
            if seq.status != Status.RUNNING or seq.num_computed_tokens == len(seq):
                continue  # preempted below, or a beam waiting for its siblings' logits
            seq.draft_token_ids = self._draft(seq)
            if not self.block_manager.ensure_slots(seq, 1 + len(seq.draft_token_ids)):
                seq.draft_token_ids = []  # no room to speculate: decode one token
            while not self.block_manager.ensure_slots(seq, 1):
                victim = next(s for s in reversed(self.running) if id(s) not in scheduled)
                self._preempt(victim)
                if victim is seq:
                    break
            else:
                chunks.append(ScheduledChunk(seq, 1 + len(seq.draft_token_ids)))
                scheduled.add(id(seq))
        return chunks

    def _draft(self, seq: Sequence) -> list[int]:
        """Speculative tokens for this step, within the request's and the model's limits."""
        if seq.draft_pause > 0:
            seq.draft_pause -= 1
            return []
        room = min(
            self.speculative_tokens,
            seq.params.max_tokens - seq.num_output_tokens - 1,
            self.max_positions - len(seq) - 1,
        )
        if room <= 0 or not can_speculate(seq):
            return []
        longest, shortest = self.config.speculative_ngram
        return propose_draft(seq.token_ids, room, longest, shortest)

    def _preempt(self, seq: Sequence, front: bool = True) -> None:
        """Out of blocks: drop the newest sequence's cache and recompute it later from its tokens."""
        self.running.remove(seq)
        self.block_manager.free_sequence(seq)
        seq.draft_token_ids = []
        seq.status = Status.WAITING
        if front:
            self.waiting.appendleft(seq)
        else:
            self.waiting.append(seq)
        self.num_preemptions += 1

    def postprocess(self, chunks: list[ScheduledChunk]) -> None:
        """Advance the computed counts; prompts that finished prefill join the running set."""
        for chunk in chunks:
            seq = chunk.seq
            seq.num_computed_tokens += chunk.num_tokens
            self.block_manager.register_full_blocks(seq)
            if seq.status == Status.WAITING and seq.num_computed_tokens == len(seq):
                self.waiting.remove(seq)
                seq.status = Status.RUNNING
                self.running.append(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        if seq.status == Status.RUNNING:
            self.running.remove(seq)
        elif seq.status == Status.WAITING:
            self.waiting.remove(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        self.block_manager.free_sequence(seq)
