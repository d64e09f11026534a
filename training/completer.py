"""Completions for evaluation through the server's own path: its prompt builder (FIM template,
token budget, token healing), its code-aware constraints (code on a blank cursor line) and its
engine (paged KV cache, continuous batching, sampler)."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from service.engine.config import EngineConfig
from service.engine.llm_engine import LLMEngine
from service.engine.sampling_params import SamplingParams
from service.prompt.builder import CompletionInput, PromptBuilder
from service.prompt.fim import read_fim_order
from service.prompt.window import Budget
from service.semantic.stopping import on_blank_line


@dataclass(frozen=True)
class Request:
    prefix: str
    suffix: str
    params: SamplingParams


class Completer:
    def __init__(
        self,
        model_dir: Path,
        prefix_tokens: int,
        suffix_tokens: int,
        num_threads: int | None = None,
    ):
        # Evaluation sends everything at once: a bigger batch than interactive serving needs.
        config = EngineConfig(
            Path(model_dir), num_threads=num_threads, max_num_seqs=64, kv_cache_mb=512
        )
        self.engine = LLMEngine(config)
        budget = Budget(prefix=prefix_tokens, suffix=suffix_tokens, snippets=0)
        self.builder = PromptBuilder(
            self.engine.tokenizer, budget, self.engine.max_positions, read_fim_order(model_dir)
        )

    def complete(self, requests: list[Request], desc: str = "complete") -> list[str]:
        """The completion text of each request, in order; all of them batched in the engine."""
        seqs = []
        for i, request in enumerate(requests):
            prompt = self.builder.build(
                CompletionInput(request.prefix, request.suffix), request.params.max_tokens
            )
            params = dataclasses.replace(
                request.params,
                forced_prefix=prompt.forced_prefix,
                code_on_first_line=on_blank_line(prompt.prefix, prompt.suffix),
            )
            self.engine.add_request(f"{desc}-{i}", prompt.token_ids, params)
            seqs.append(self.engine.seqs[f"{desc}-{i}"])
        with tqdm(total=len(seqs), desc=desc, unit="req") as bar:
            while self.engine.has_work():
                if done := sum(seq.is_finished for seq in self.engine.step()):
                    bar.update(done)
        return [seq.text for seq in seqs]
