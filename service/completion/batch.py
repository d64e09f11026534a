"""Completions with no server: a batch of jobs run to the end together on a synchronous engine,
the way evaluation (training/evaluation/) asks for them.

The same prompt builder (FIM template, token budget, token healing) and engine as served, with
parameters from the same plan (`plan.sampling_params`, `plan.fit_to_prompt`); none of the
server's cache, editor sessions, deadlines, newline restoring or secret redaction.

    batch = BatchCompleter(model_dir, prefix_tokens=1024, suffix_tokens=256)
    prompt = batch.prompt(prefix, suffix, max_tokens=48)
    texts = batch.complete([BatchJob(prompt, sampling_params(prompt, max_tokens=48))])
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.prompt.builder import CompletionInput, Prompt, PromptBuilder
from service.prompt.fim import read_fim_order
from service.prompt.window import Budget
from service.semantic.stopping import drop_suffix_overlap


@dataclass(frozen=True)
class BatchJob:
    prompt: Prompt
    params: SamplingParams  # planned for this prompt (plan.py)
    # As served to code-aware clients: drop an ending that the code after the cursor repeats.
    drop_overlap: bool = False


class BatchCompleter:
    def __init__(
        self,
        model_dir: Path,
        prefix_tokens: int,
        suffix_tokens: int,
        *,
        num_threads: int | None = None,
        # A batch arrives all at once: more sequences than interactive serving runs together.
        max_num_seqs: int = 64,
        kv_cache_mb: int = 512,
    ):
        config = EngineConfig(
            Path(model_dir),
            num_threads=num_threads,
            max_num_seqs=max_num_seqs,
            kv_cache_mb=kv_cache_mb,
        )
        self.engine = LLMEngine(config)
        budget = Budget(prefix=prefix_tokens, suffix=suffix_tokens, snippets=0)
        self.builder = PromptBuilder(
            self.engine.tokenizer, budget, self.engine.max_positions, read_fim_order(model_dir)
        )

    def prompt(self, prefix: str, suffix: str, max_tokens: int) -> Prompt:
        """The served prompt for a cursor, with room for `max_tokens` new tokens."""
        return self.builder.build(CompletionInput(prefix, suffix), max_tokens)

    def complete(
        self,
        jobs: Sequence[BatchJob],
        on_finished: Callable[[int], object] = lambda count: None,
    ) -> list[str]:
        """The completion text of each job, in order, all of them batched in the engine;
        `on_finished(count)` after each step that finished some (a progress bar's update)."""
        seqs = []
        for job in jobs:
            request_id = f"batch-{len(seqs)}"
            self.engine.add_request(request_id, job.prompt.token_ids, job.params)
            seqs.append(self.engine.seqs[request_id])
        while self.engine.has_work():
            if done := sum(seq.is_finished for seq in self.engine.step()):
                on_finished(done)
        return [
            drop_suffix_overlap(seq.text, job.prompt.prefix, job.prompt.suffix)
            if job.drop_overlap
            else seq.text
            for job, seq in zip(jobs, seqs, strict=True)
        ]
