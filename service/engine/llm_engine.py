"""The synchronous engine: admit requests, run one step at a time, report what changed."""

import time
from pathlib import Path

from tokenizers import Tokenizer

from service.engine import metrics
from service.engine.beam_search import BeamSearch
from service.engine.block_manager import BlockManager
from service.engine.config import EngineConfig
from service.engine.member_constraint import MemberConstraint, token_texts
from service.engine.model_runner import ModelRunner
from service.engine.next_tokens import NextTokens
from service.engine.output_processor import OutputProcessor
from service.engine.sampler import Sampler
from service.engine.sampling_params import SamplingParams
from service.engine.scheduler import Scheduler
from service.engine.sequence import Sequence, Status
from service.engine.speculation import accepted_tokens, pace_drafts


class InvalidRequest(ValueError):
    """The request can never be served as asked (the message says why)."""


class LLMEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.tokenizer = Tokenizer.from_file(str(Path(config.model_path) / "tokenizer.json"))
        self.runner = ModelRunner(config)
        self.block_manager = BlockManager(self.runner.num_blocks, config.block_size)
        # Verifying a draft is a multi-token step, which runs eagerly: where CUDA graphs already
        # make a decode step cheap, speculation would cost more than it saves.
        speculative = 0 if self.runner.decode_graphs else config.speculative_tokens
        self.scheduler = Scheduler(
            config, self.block_manager, self.runner.model.max_positions, speculative
        )
        metrics.watch_queues(self.scheduler.waiting, self.scheduler.running)
        self.stop_token_ids = self._stop_token_ids()
        vocab_strings = [self.tokenizer.decode([i]) for i in range(self.tokenizer.get_vocab_size())]
        member = MemberConstraint(
            token_texts(self.tokenizer, self.stop_token_ids), self.stop_token_ids
        )
        self.sampler = Sampler(NextTokens(vocab_strings, self.stop_token_ids, member))
        self.outputs = OutputProcessor(self.tokenizer, self.stop_token_ids, self.max_positions)
        self.beam_search = BeamSearch(
            self.scheduler,
            self.block_manager,
            self.runner,
            self.outputs,
            self.sampler.next_tokens,
        )
        self.seqs: dict[str, Sequence] = {}

    @property
    def max_positions(self) -> int:
        return self.runner.model.max_positions

    def _stop_token_ids(self) -> set[int]:
        # End of text, and the special tokens that mean the middle of a FIM prompt is complete.
        return {i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}

    def validate(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        if not prompt_token_ids:
            raise InvalidRequest("the prompt is empty: send some text before the cursor")
        if len(prompt_token_ids) >= self.max_positions:
            raise InvalidRequest(
                f"the prompt has {len(prompt_token_ids)} tokens; this model reads at most "
                f"{self.max_positions - 1}"
            )
        vocab = self.runner.model.vocab_size
        if min(prompt_token_ids) < 0 or max(prompt_token_ids) >= vocab:
            raise InvalidRequest(f"token ids must be in [0, {vocab})")
        if 2 * params.num_beams > vocab:
            raise InvalidRequest(f"num_beams must be at most {vocab // 2}")
        total = min(len(prompt_token_ids) + params.max_tokens, self.max_positions)
        if params.num_beams * -(-total // self.config.block_size) > self.runner.num_blocks:
            raise InvalidRequest("prompt plus max_tokens exceed the KV cache; send less context")

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        cache_salt: str | None = None,
    ) -> None:
        """Admit a request; only requests with the same `cache_salt` share prefix blocks."""
        self.validate(prompt_token_ids, params)
        seq = Sequence(request_id, list(prompt_token_ids), params, cache_salt=cache_salt)
        self.seqs[request_id] = seq
        if params.beam_search:
            self.beam_search.add(seq)
        else:
            self.scheduler.add(seq)

    def abort(self, request_id: str) -> Sequence | None:
        seq = self.seqs.pop(request_id, None)
        if seq is None or seq.is_finished:
            return seq
        if seq.params.beam_search:
            self.beam_search.abort(seq)
        else:
            self.scheduler.finish(seq, "abort")
        return seq

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def step(self) -> list[Sequence]:
        """One forward pass over the scheduled chunks; returns the sequences that got a token
        and the beam-search requests that finished."""
        chunks = self.scheduler.schedule()
        if not chunks:
            return []
        start = time.perf_counter()
        num_decodes = sum(c.seq.status == Status.RUNNING for c in chunks)
        completed = [c.seq for c in chunks if c.completes_sequence]
        logits = self.runner.run(chunks)
        first_rows = self._first_rows(completed)
        speculated = self._verify_drafts(chunks, logits, first_rows)
        self.scheduler.postprocess(chunks)
        drafted = {id(seq) for seq, _ in speculated}
        plain = [s for s in completed if not s.params.beam_search and id(s) not in drafted]
        rows = [first_rows[id(seq)] for seq in plain]
        tokens = self.sampler(logits[rows].cpu(), plain)  # sampling runs on the CPU
        for seq, token_id in zip(plain, tokens, strict=True):
            self._on_token(seq, token_id)
        for seq, token_ids in speculated:
            for token_id in token_ids:
                if self._on_token(seq, token_id):
                    break
        sampled = plain + [seq for seq, _ in speculated]
        beams = [seq for seq in completed if seq.params.beam_search]
        beam_rows = [first_rows[id(seq)] for seq in beams]
        for request in self.beam_search.step(logits[beam_rows], beams):
            self._on_beams_finished(request)
            sampled.append(request)
        elapsed = time.perf_counter() - start
        metrics.observe_step(num_decodes, len(chunks) - num_decodes, elapsed)
        return sampled

    @staticmethod
    def _first_rows(completed: list[Sequence]) -> dict[int, int]:
        """id(seq) -> its first logits row: a sequence with a draft has one row per draft token
        after the row of its last token."""
        rows, row = {}, 0
        for seq in completed:
            rows[id(seq)] = row
            row += 1 + len(seq.draft_token_ids)
        return rows

    def _verify_drafts(self, chunks, logits, first_rows) -> list[tuple[Sequence, list[int]]]:
        """Keep each draft up to the model's first disagreement; the chunk then computed only the
        kept tokens, so its count shrinks before the scheduler advances the sequence."""
        speculated = []
        for chunk in chunks:
            seq, draft = chunk.seq, chunk.seq.draft_token_ids
            if not draft or not chunk.completes_sequence:
                continue
            row = first_rows[id(seq)]
            rows = logits[row : row + len(draft) + 1]
            greedy = self.sampler.next_tokens.verified_greedy(seq, draft, rows)
            kept = accepted_tokens(draft, greedy)  # the kept draft tokens, then the model's own
            chunk.num_tokens -= len(draft) - (len(kept) - 1)
            metrics.observe_draft(len(draft), len(kept) - 1)
            pace_drafts(seq, len(kept) - 1)
            seq.draft_token_ids = []
            speculated.append((seq, kept))
        return speculated

    def _on_token(self, seq: Sequence, token_id: int) -> bool:
        """Append a sampled token; True if that finished the sequence."""
        if seq.first_token_time is None:
            seq.first_token_time = time.perf_counter()
            metrics.observe_first_token(seq)
        reason = self.outputs.append(seq, token_id)
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self.seqs.pop(seq.request_id, None)
            metrics.observe_finished(seq)
        return reason is not None

    def _on_beams_finished(self, request: Sequence) -> None:
        self.seqs.pop(request.request_id, None)
        metrics.observe_first_token(request)
        metrics.observe_finished(request)
