"""Prometheus metrics of the engine. Latency buckets start at 1 ms: a keystroke budget is ~100 ms."""

import time
from collections.abc import Sized

from prometheus_client import Counter, Gauge, Histogram

from service.engine.block_manager import BlockManager
from service.engine.sequence import Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5, 10)

QUEUE_TIME = Histogram(
    "engine_queue_time_seconds", "Arrival to first scheduled step", buckets=LATENCY_BUCKETS
)
TIME_TO_FIRST_TOKEN = Histogram(
    "engine_time_to_first_token_seconds", "Arrival to first sampled token", buckets=LATENCY_BUCKETS
)
STEP_TIME = Histogram("engine_step_seconds", "One model step", ["phase"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram(
    "engine_batch_sequences", "Sequences in one step", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
PROMPT_TOKENS = Counter("engine_prompt_tokens_total", "Prompt tokens of admitted requests")
CACHED_PROMPT_TOKENS = Counter(
    "engine_prefix_cache_hit_tokens_total", "Prompt tokens found in the prefix cache"
)
GENERATED_TOKENS = Counter("engine_generated_tokens_total", "Tokens sampled")
FINISHED = Counter("engine_requests_finished_total", "Finished requests", ["reason"])
CANCELLED = Counter("engine_cancellations_total", "Requests aborted before finishing", ["cause"])
DRAFT_TOKENS = Counter("engine_draft_tokens_total", "Speculative tokens proposed")
ACCEPTED_DRAFT_TOKENS = Counter("engine_draft_tokens_accepted_total", "Speculative tokens kept")
KV_BLOCKS_USED = Gauge("engine_kv_blocks_used", "KV cache blocks referenced by live sequences")
KV_BLOCKS_TOTAL = Gauge("engine_kv_blocks_total", "KV cache blocks")
# The autoscaler's signal (deploy/k8s/prometheus-adapter-rules.yaml), as vLLM's
# num_requests_waiting / num_requests_running.
REQUESTS_WAITING = Gauge(
    "engine_requests_waiting",
    "Sequences whose prompt is not computed yet: queued, in chunked prefill or preempted",
)
REQUESTS_RUNNING = Gauge("engine_requests_running", "Sequences decoding")


def watch_blocks(blocks: BlockManager) -> None:
    """Read the KV block gauges at scrape time: set after steps only, they would go on showing
    the blocks of requests aborted since the last step (a burst of disconnects) as used."""
    KV_BLOCKS_USED.set_function(lambda: blocks.num_used_blocks)
    KV_BLOCKS_TOTAL.set_function(lambda: len(blocks.blocks))


def watch_queues(waiting: Sized, running: Sized) -> None:
    """Read the scheduler's queues (changed in place, never replaced) at scrape time, for the
    reason watch_blocks gives: requests admitted or aborted between steps show at once, and an
    idle engine, which runs no step, shows its last abort. len() is one atomic read, so the
    scrape needs no lock against the engine thread."""
    REQUESTS_WAITING.set_function(lambda: len(waiting))
    REQUESTS_RUNNING.set_function(lambda: len(running))


def observe_step(num_decodes: int, num_prefills: int, seconds: float) -> None:
    phase = "mixed" if num_decodes and num_prefills else "decode" if num_decodes else "prefill"
    STEP_TIME.labels(phase).observe(seconds)
    BATCH_SIZE.observe(num_decodes + num_prefills)


def observe_first_token(seq: Sequence) -> None:
    TIME_TO_FIRST_TOKEN.observe(seq.first_token_time - seq.arrival_time)
    PROMPT_TOKENS.inc(seq.num_prompt_tokens)
    CACHED_PROMPT_TOKENS.inc(seq.num_cached_tokens)


def observe_scheduled(seq: Sequence) -> None:
    QUEUE_TIME.observe(time.perf_counter() - seq.arrival_time)


def observe_finished(seq: Sequence) -> None:
    GENERATED_TOKENS.inc(seq.num_output_tokens)
    FINISHED.labels(seq.finish_reason).inc()


def observe_draft(proposed: int, accepted: int) -> None:
    DRAFT_TOKENS.inc(proposed)
    ACCEPTED_DRAFT_TOKENS.inc(accepted)
