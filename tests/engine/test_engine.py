"""The engine against `transformers` on the same tiny checkpoint: batching, prefix reuse,
chunked prefill, preemption, cancellation and the decoding options."""

import asyncio
import threading

import pytest
import torch
from prometheus_client import REGISTRY
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

import service.engine.async_engine as async_engine
from service.completion.sessions import EditorSession, Sessions
from service.engine import (
    AsyncEngine,
    EngineConfig,
    EngineOverloaded,
    InvalidRequest,
    LLMEngine,
    SamplingParams,
)
from tests.support.engine_runs import run_to_completion
from tests.support.tiny_checkpoints import build_checkpoint

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "import os\n\nclass Config:\n    def __init__(self, path):\n        self.path = path\n" * 3,
    "x = 1",
    "for item in items:\n    total += item.price * item.quantity\nprint(total)\n" * 2,
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("gpt2"), "gpt2", n_positions=512)


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return Tokenizer.from_file(str(checkpoint / "tokenizer.json"))


@pytest.fixture(scope="module")
def hf_model(checkpoint):
    return AutoModelForCausalLM.from_pretrained(checkpoint).eval()


def hf_greedy(hf_model, ids: list[int], max_tokens: int) -> list[int]:
    """Greedy continuation by transformers' forward pass, through EOS like ignore_eos."""
    tokens = list(ids)
    with torch.no_grad():
        for _ in range(max_tokens):
            tokens.append(int(hf_model(torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(ids) :]


def make_engine(checkpoint, **kwargs) -> LLMEngine:
    return LLMEngine(EngineConfig(model_path=checkpoint, num_threads=1, **kwargs))


def greedy(max_tokens: int, **kwargs) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, ignore_eos=True, **kwargs)


def test_batched_greedy_matches_transformers(checkpoint, tokenizer, hf_model):
    engine = make_engine(checkpoint, block_size=4, max_num_batched_tokens=24)
    seqs = {}
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer.encode(prompt).ids
        engine.add_request(f"r{i}", ids, greedy(12))
        seqs[f"r{i}"] = (ids, engine.seqs[f"r{i}"])
        engine.step()  # requests arrive while others are mid-prefill or decoding
    run_to_completion(engine)
    for ids, seq in seqs.values():
        assert seq.output_token_ids == hf_greedy(hf_model, ids, 12)
        assert seq.finish_reason == "length"
    assert engine.block_manager.num_used_blocks == 0


def test_chunked_prefill_never_stalls_decoding(checkpoint, tokenizer):
    engine = make_engine(checkpoint, block_size=4, max_num_batched_tokens=16)
    engine.add_request("short", tokenizer.encode("a = 1").ids, greedy(30))
    run_steps = 0
    while not engine.seqs["short"].output_token_ids:
        engine.step()
        run_steps += 1
    long_ids = tokenizer.encode(PROMPTS[1] * 2).ids
    assert len(long_ids) > 64
    engine.add_request("long", long_ids, greedy(4))
    short = engine.seqs["short"]
    while engine.seqs.get("long") is not None and engine.seqs["long"].num_output_tokens == 0:
        before = short.num_output_tokens
        engine.step()
        assert short.num_output_tokens == before + 1, "the decoding sequence skipped a step"


def test_a_keystroke_tail_does_not_wait_behind_a_long_prompt(checkpoint, tokenizer, hf_model):
    """While sequences decode, long prompts advance by a budget of tokens a step, first come first
    served; a keystroke whose prefix is cached has only a few tokens left, and goes in whole."""
    engine = make_engine(
        checkpoint, block_size=4, max_prefill_tokens_while_decoding=8, speculative_tokens=0
    )
    queued = REGISTRY.get_sample_value("engine_queue_time_seconds_count") or 0
    warm = tokenizer.encode(PROMPTS[1]).ids
    engine.add_request("warm", warm, greedy(2))
    run_to_completion(engine)
    engine.add_request("decoding", tokenizer.encode("a = 1").ids, greedy(40))
    engine.step()
    engine.add_request("long", tokenizer.encode(PROMPTS[3] * 2).ids, greedy(2))
    engine.add_request("long2", tokenizer.encode(PROMPTS[0] * 3).ids, greedy(2))  # waits its turn
    keystroke = tokenizer.encode(PROMPTS[1] + "    def lo").ids
    engine.add_request("keystroke", keystroke, greedy(6))
    tail = engine.seqs["keystroke"]
    engine.step()
    long = engine.seqs["long"]
    assert tail.num_output_tokens == 1  # its whole tail was computed in this one step
    assert 0 < long.num_computed_tokens <= 8 < len(long)  # the long prompt got its chunk
    run_to_completion(engine)
    assert tail.output_token_ids == hf_greedy(hf_model, keystroke, 6)
    # Each request's wait is observed once, when its first chunk is scheduled, however many
    # steps the second long prompt was passed over.
    assert REGISTRY.get_sample_value("engine_queue_time_seconds_count") == queued + 5


def test_prefix_reuse_across_keystrokes(checkpoint, tokenizer, hf_model):
    engine = make_engine(checkpoint, block_size=4)
    first = tokenizer.encode(PROMPTS[1]).ids
    engine.add_request("k1", first, greedy(8))
    seq1 = engine.seqs["k1"]
    run_to_completion(engine)
    assert seq1.num_cached_tokens == 0
    keystroke = tokenizer.encode(PROMPTS[1] + "    def lo").ids
    engine.add_request("k2", keystroke, greedy(8))
    seq2 = engine.seqs["k2"]
    run_to_completion(engine)
    common = next(i for i, (a, b) in enumerate(zip(first, keystroke, strict=False)) if a != b)
    assert seq2.num_cached_tokens == (common // 4) * 4 > 0
    assert seq2.output_token_ids == hf_greedy(hf_model, keystroke, 8)


def test_salted_requests_share_prefix_blocks_only_with_their_own_salt(checkpoint, tokenizer):
    """A tenant's cache salt starts its chain of block hashes: another salt (or none) finds
    nothing of its prompt cached, the same salt finds it all."""
    engine = make_engine(checkpoint, block_size=4)
    ids = tokenizer.encode(PROMPTS[1]).ids
    cached_blocks = ((len(ids) - 1) // 4) * 4

    def cached_tokens(request_id: str, salt: str | None) -> int:
        engine.add_request(request_id, ids, greedy(2), cache_salt=salt)
        seq = engine.seqs[request_id]
        run_to_completion(engine)
        return seq.num_cached_tokens

    assert cached_tokens("a1", "tenant-a") == 0
    assert cached_tokens("b1", "tenant-b") == 0
    assert cached_tokens("unsalted", None) == 0
    assert cached_tokens("a2", "tenant-a") == cached_blocks > 0
    assert cached_tokens("b2", "tenant-b") == cached_blocks
    assert cached_tokens("unsalted-2", None) == cached_blocks


def test_keystroke_blocks_follow_the_cached_prefix(checkpoint, tokenizer, hf_model):
    """The next keystroke takes over the previous request's stale continuation, right after the
    shared prefix, so its blocks stay one run."""
    engine = make_engine(checkpoint, block_size=4)
    other = tokenizer.encode(PROMPTS[3]).ids
    first = tokenizer.encode(PROMPTS[1]).ids
    for request_id, ids in (("other", other), ("k1", first)):
        engine.add_request(request_id, ids, greedy(8))
        run_to_completion(engine)
    keystroke = tokenizer.encode(PROMPTS[1] + "    def lo").ids
    engine.add_request("k2", keystroke, greedy(8))
    seq2 = engine.seqs["k2"]
    tables = []
    while engine.has_work():
        engine.step()
        tables.append(list(seq2.block_table))
    table = max(tables, key=len)
    assert table == list(range(table[0], table[0] + len(table)))  # one run
    assert seq2.output_token_ids == hf_greedy(hf_model, keystroke, 8)


def test_blocks_of_another_prefix_are_not_taken_for_adjacency(checkpoint, tokenizer):
    """When the block after a sequence's prefix caches someone else's prompt, it stays cached."""
    engine = make_engine(checkpoint, block_size=4, speculative_tokens=0)
    prompt = tokenizer.encode(PROMPTS[1]).ids
    engine.add_request("a", prompt[:16], greedy(1))  # four full blocks, nothing after them
    run_to_completion(engine)
    engine.add_request("b", tokenizer.encode(PROMPTS[3]).ids, greedy(1))  # the next blocks
    run_to_completion(engine)
    blocks = engine.block_manager.blocks
    after_a = max(b for h, b in engine.block_manager.cached.items() if b < 4) + 1
    held = blocks[after_a].hash
    assert held is not None and engine.block_manager.cached[held] == after_a  # b's first block
    engine.add_request("c", prompt[:24], greedy(4))
    seq = engine.seqs["c"]
    run_to_completion(engine)
    assert seq.num_cached_tokens == 16
    assert engine.block_manager.cached.get(held) == after_a


def test_preemption_when_blocks_run_out(checkpoint, tokenizer, hf_model):
    # Room for a few sequences only: some are preempted, recomputed, and still exact. (Without
    # speculation, whose shorter runs would leave fewer sequences growing at once.)
    engine = make_engine(checkpoint, block_size=4, kv_cache_mb=1, speculative_tokens=0)
    engine.block_manager.__init__(40, 4)  # shrink to 40 blocks = 160 tokens
    ids = [tokenizer.encode(p).ids[:30] for p in PROMPTS]
    for i, prompt_ids in enumerate(ids):
        engine.add_request(f"p{i}", prompt_ids, greedy(20))
    seqs = list(engine.seqs.values())
    run_to_completion(engine)
    assert engine.scheduler.num_preemptions > 0
    for prompt_ids, seq in zip(ids, seqs, strict=True):
        assert seq.output_token_ids == hf_greedy(hf_model, prompt_ids, 20)


def test_abort_frees_blocks_and_keeps_prefix(checkpoint, tokenizer):
    engine = make_engine(checkpoint, block_size=4)
    ids = tokenizer.encode(PROMPTS[3]).ids
    engine.add_request("a", ids, greedy(50))
    for _ in range(5):
        engine.step()
    seq = engine.abort("a")
    assert seq.finish_reason == "abort"
    assert engine.block_manager.num_used_blocks == 0
    engine.add_request("b", ids, greedy(2))
    engine.step()
    assert engine.seqs["b"].num_cached_tokens == ((len(ids) - 1) // 4) * 4


def test_stop_strings_and_eos(checkpoint, tokenizer, hf_model):
    ids = tokenizer.encode(PROMPTS[0]).ids
    reference = tokenizer.decode(hf_greedy(hf_model, ids, 16))
    stop = reference[5:8]
    engine = make_engine(checkpoint)
    engine.add_request("s", ids, greedy(16, stop=[stop]))
    seq = engine.seqs["s"]
    run_to_completion(engine)
    assert seq.finish_reason == "stop"
    assert seq.text == reference[: reference.find(stop)]


def test_token_healing_forces_the_removed_characters(checkpoint, tokenizer):
    engine = make_engine(checkpoint)
    ids = tokenizer.encode("def f(x):\n").ids
    engine.add_request("h", ids, greedy(6, forced_prefix="    ret"))
    seq = engine.seqs["h"]
    run_to_completion(engine)
    raw = tokenizer.decode(seq.output_token_ids)
    assert raw.startswith("    ret")
    assert seq.text == raw[len("    ret") :]


def test_seeded_sampling_is_reproducible(checkpoint, tokenizer):
    ids = tokenizer.encode(PROMPTS[2]).ids
    texts = []
    for _ in range(2):
        engine = make_engine(checkpoint)
        engine.add_request(
            "t", ids, SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=7)
        )
        seq = engine.seqs["t"]
        run_to_completion(engine)
        texts.append(seq.output_token_ids)
    assert texts[0] == texts[1]


def test_invalid_requests_are_refused(checkpoint):
    engine = make_engine(checkpoint)
    with pytest.raises(InvalidRequest, match="empty"):
        engine.add_request("e", [], greedy(4))
    with pytest.raises(InvalidRequest, match="tokens"):
        engine.add_request("l", [1] * 600, greedy(4))
    with pytest.raises(InvalidRequest, match="token ids"):
        engine.add_request("v", [10**6], greedy(4))


def test_async_engine_supersede_abort_and_overload(checkpoint, tokenizer):
    async def scenario():
        engine = AsyncEngine(
            EngineConfig(model_path=checkpoint, num_threads=1, max_num_seqs=2, max_waiting=1)
        )
        try:
            ids = tokenizer.encode(PROMPTS[0]).ids
            sessions, editor = Sessions(engine), EditorSession("acme", "editor-1")
            older = sessions.track(editor, "old", engine.generate(ids, greedy(200), "old"))
            first = await anext(older)
            newer = sessions.track(editor, "new", engine.generate(ids + ids[:2], greedy(3), "new"))
            outputs = [o async for o in older]
            assert (outputs[-1] if outputs else first).finish_reason == "abort"
            last = [o async for o in newer][-1]
            assert last.finish_reason == "length" and last.num_cached_tokens > 0
            assert not sessions.in_flight  # both ended: the session holds no request
            streams = [engine.generate(ids, greedy(100), f"f{i}") for i in range(3)]
            with pytest.raises(EngineOverloaded):
                engine.generate(ids, greedy(1), "one-too-many")
            for stream in streams:  # consumers that walk away abort their requests
                await anext(stream)
                await stream.aclose()
            await asyncio.sleep(0.2)
            assert engine.engine.block_manager.num_used_blocks == 0
        finally:
            engine.shutdown()

    asyncio.run(scenario())


def test_engine_thread_dying_fails_requests_at_once_and_refuses_new_ones(checkpoint, tokenizer):
    """A bug outside a step kills the engine thread: the requests in flight end at once with
    the cause engine_failed (not at their deadline, not as finished), new ones are refused,
    and the owner is told."""
    failures = []

    async def scenario():
        engine = AsyncEngine(
            EngineConfig(model_path=checkpoint, num_threads=1, stream_interval_ms=0),
            on_failure=failures.append,
        )
        ids = tokenizer.encode(PROMPTS[0]).ids
        stream = engine.generate(ids, greedy(400), "r")
        await anext(stream)

        def broken_hand_over():
            raise RuntimeError("a bug outside a step")

        engine._hand_over_due = broken_hand_over  # the thread's next hand-over raises
        last = await asyncio.wait_for(collect_last(stream), timeout=10)
        assert (last.finished, last.finish_reason, last.abort_cause) == (
            True,
            "abort",
            async_engine.ENGINE_FAILED,
        )
        assert not engine.alive
        with pytest.raises(async_engine.EngineUnavailable):
            engine.generate(ids, greedy(4), "after")

    asyncio.run(scenario())
    assert [str(error) for error in failures] == ["a bug outside a step"]


def test_a_failed_step_aborts_its_requests_with_their_cause_and_the_engine_goes_on(
    checkpoint, tokenizer
):
    async def scenario():
        engine = AsyncEngine(EngineConfig(model_path=checkpoint, num_threads=1))
        try:
            step = engine.engine.step
            calls = 0

            def fails_once():
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise RuntimeError("a bug in a step")
                return step()

            engine.engine.step = fails_once
            ids = tokenizer.encode(PROMPTS[0]).ids
            last = await asyncio.wait_for(collect_last(engine.generate(ids, greedy(8), "a")), 10)
            assert (last.finish_reason, last.abort_cause) == ("abort", async_engine.STEP_FAILED)
            last = await asyncio.wait_for(collect_last(engine.generate(ids, greedy(8), "b")), 10)
            assert last.finish_reason == "length" and engine.alive
        finally:
            engine.shutdown()

    asyncio.run(scenario())


async def collect_last(stream):
    last = None
    async for output in stream:
        last = output
    return last


def test_streamed_outputs_are_paced_and_the_last_carries_everything(checkpoint, tokenizer):
    """Every step's output goes out at interval 0; with a long interval only the first and the
    last do, and the last holds the same text and tokens (outputs are cumulative)."""

    async def outputs(interval_ms: float) -> list:
        config = EngineConfig(
            model_path=checkpoint,
            num_threads=1,
            speculative_tokens=0,
            stream_interval_ms=interval_ms,
        )
        engine = AsyncEngine(config)
        try:
            ids = tokenizer.encode(PROMPTS[0]).ids
            return [o async for o in engine.generate(ids, greedy(12), "r")]
        finally:
            engine.shutdown()

    every_step, paced = asyncio.run(outputs(0)), asyncio.run(outputs(60_000))
    assert len(every_step) == 12 and len(paced) == 2
    assert [len(o.token_ids) for o in paced] == [1, 12]
    assert (paced[-1].text, paced[-1].token_ids) == (every_step[-1].text, every_step[-1].token_ids)
    assert paced[-1].finished and paced[-1].finish_reason == "length"


def test_async_engine_builds_on_its_thread_and_reports_what_stopped_it(
    checkpoint, tmp_path, monkeypatch
):
    """The model loads on the engine thread (one OpenMP pool: docs/history/benchmarks.md); an error
    there reaches the caller, not a dead thread."""
    built_on = []

    class Recorded(async_engine.LLMEngine):
        def __init__(self, config):
            built_on.append(threading.current_thread().name)
            super().__init__(config)

    monkeypatch.setattr(async_engine, "LLMEngine", Recorded)
    engine = AsyncEngine(EngineConfig(model_path=checkpoint, num_threads=1))
    engine.shutdown()
    assert built_on == ["engine"]
    with pytest.raises(Exception, match="No such file"):
        AsyncEngine(EngineConfig(model_path=tmp_path / "missing", num_threads=1))
