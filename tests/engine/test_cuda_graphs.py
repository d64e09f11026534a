"""Decode steps from bucket-padded static buffers (service/engine/cuda_graphs.py).

Run eagerly (on the CPU, or on CUDA where present) the padded buffers must give the logits of the
unpadded eager step, with the torch reference and with the Triton kernels (interpreted on the
CPU); on CUDA the captured graphs are replayed inside the real engine and must match eager logits
and greedy outputs."""

import pytest
import torch

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.engine.cuda_graphs import DecodeGraphs, batch_buckets
from service.engine.sequence import Sequence
from tests.support.engine_runs import run_to_completion
from tests.support.tiny_checkpoints import build_checkpoint

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MAX_NUM_SEQS = 8
BUCKETS = [1, 2, 4, 8]
# Five requests of different lengths finishing at different steps: decode batches of 5 (bucket 8),
# 4, 3 (bucket 4), 2 and 1, with different sequence lengths side by side.
PROMPT_LENGTHS = [3, 11, 6, 17, 9]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    families = ("gpt2", "llama_gqa", "bigcode_mqa")
    return {family: build_checkpoint(root / family, family) for family in families}


def add_requests(engine: LLMEngine, max_tokens: list[int]) -> list[Sequence]:
    """One request per step, so early steps mix prefill and decode (those must run eagerly)."""
    gen = torch.Generator().manual_seed(0)
    vocab = engine.runner.model.vocab_size
    seqs = []
    for i, (length, tokens) in enumerate(zip(PROMPT_LENGTHS, max_tokens, strict=True)):
        ids = torch.randint(vocab, (length,), generator=gen).tolist()
        engine.add_request(f"r{i}", ids, SamplingParams(max_tokens=tokens, ignore_eos=True))
        seqs.append(engine.seqs[f"r{i}"])
        engine.step()
    return seqs


def is_scattered(table: list[int]) -> bool:
    return table != list(range(table[0], table[0] + len(table)))


def test_batch_buckets():
    assert batch_buckets(1) == [1]
    assert batch_buckets(32) == [1, 2, 4, 8, 16, 32]
    assert batch_buckets(24) == [1, 2, 4, 8, 16, 24]


def test_cuda_graphs_flag_is_inert_on_cpu(checkpoints):
    config = EngineConfig(model_path=checkpoints["gpt2"], num_threads=1, cuda_graphs=True)
    assert LLMEngine(config).runner.decode_graphs is None


@pytest.mark.parametrize(
    "family, kernels",
    [
        ("gpt2", "reference"),
        ("llama_gqa", "reference"),
        ("bigcode_mqa", "reference"),
        ("gpt2", "triton"),
        ("llama_gqa", "triton"),
    ],
)
@pytest.mark.slow  # decodes every family both ways in Triton's interpreter on a CPU
def test_padded_decode_matches_eager(checkpoints, family, kernels, monkeypatch):
    monkeypatch.setenv("KERNELS", kernels)  # "triton": interpreted on the CPU, compiled on CUDA
    config = EngineConfig(
        model_path=checkpoints[family],
        device=DEVICE,
        block_size=4,
        max_num_seqs=MAX_NUM_SEQS,
        num_threads=1,
        cuda_graphs=False,  # the padded buffers run eagerly, here on any device
    )
    engine = LLMEngine(config)
    runner = engine.runner
    width = -(-runner.model.max_positions // runner.block_size)
    graphs = DecodeGraphs(runner.model, MAX_NUM_SEQS, width, runner.block_size, runner.device)
    assert graphs.buckets == BUCKETS

    padded_steps, eager_steps = [], 0

    def checked_run(chunks):
        nonlocal eager_steps
        if not graphs.fits(chunks):
            eager_steps += 1
            return runner.run_eager(chunks)
        eager = runner.run_eager(chunks)
        caches = [(a.k_cache.clone(), a.v_cache.clone()) for a in runner.model.attention_layers()]
        padded = graphs.run(chunks)  # stores this step's K/V again; padded rows store nothing
        torch.testing.assert_close(padded, eager, rtol=1e-5, atol=1e-4)
        for layer, (k, v) in zip(runner.model.attention_layers(), caches, strict=True):
            torch.testing.assert_close(layer.k_cache, k, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(layer.v_cache, v, rtol=1e-5, atol=1e-4)
        assert torch.equal(padded.argmax(-1), eager.argmax(-1))
        padded_steps.append([(len(c.seq), list(c.seq.block_table)) for c in chunks])
        return eager

    runner.run = checked_run
    add_requests(engine, max_tokens=[9, 7, 5, 3, 2])
    run_to_completion(engine)

    batch_sizes = {len(step) for step in padded_steps}
    assert eager_steps >= len(PROMPT_LENGTHS)  # prefill and mixed steps fell back
    assert batch_sizes - set(BUCKETS), "some decode batch must leave its bucket part empty"
    assert any(len({n for n, _ in step}) > 1 for step in padded_steps)
    assert any(is_scattered(table) for step in padded_steps for _, table in step)


def test_oversize_and_prefill_steps_do_not_fit(checkpoints):
    engine = LLMEngine(EngineConfig(model_path=checkpoints["gpt2"], num_threads=1))
    width = -(-engine.max_positions // engine.config.block_size)
    graphs = DecodeGraphs(
        engine.runner.model, 2, width, engine.config.block_size, torch.device("cpu")
    )
    decode_sizes, other_steps = [], 0
    eager_run = engine.runner.run_eager

    def checked_run(chunks):
        nonlocal other_steps
        if all(c.num_tokens == 1 for c in chunks):
            assert graphs.fits(chunks) == (len(chunks) <= 2)
            decode_sizes.append(len(chunks))
        else:
            assert not graphs.fits(chunks)
            other_steps += 1
        return eager_run(chunks)

    engine.runner.run = checked_run
    add_requests(engine, max_tokens=[4] * len(PROMPT_LENGTHS))
    run_to_completion(engine)
    assert other_steps > 0 and min(decode_sizes) <= 2 < max(decode_sizes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_replayed_graphs_match_eager_on_cuda(checkpoints, family, monkeypatch):
    monkeypatch.delenv("KERNELS", raising=False)  # the Triton kernels, compiled
    max_tokens = [20, 16, 12, 8, 4]
    outputs, replays = {}, []
    for cuda_graphs in (True, False):
        config = EngineConfig(
            model_path=checkpoints[family],
            device="cuda",
            max_num_seqs=MAX_NUM_SEQS,
            kv_cache_mb=16,
            cuda_graphs=cuda_graphs,
        )
        engine = LLMEngine(config)
        graphs = engine.runner.decode_graphs
        if cuda_graphs:
            assert sorted(graphs.graphs) == BUCKETS
            replay = graphs.run

            def checked_replay(chunks, replay=replay, runner=engine.runner):
                eager = runner.run_eager(chunks)
                # Replayed second: its K/V overwrite the eager step's, so later steps read the
                # graphs' own, and a stray store from a padded row would show in these logits.
                replayed = replay(chunks)
                torch.testing.assert_close(replayed, eager, rtol=1e-4, atol=1e-4)
                replays.append(len(chunks))
                return replayed

            graphs.run = checked_replay
        else:
            assert graphs is None
        seqs = add_requests(engine, max_tokens)
        run_to_completion(engine)
        outputs[cuda_graphs] = [seq.output_token_ids for seq in seqs]
    assert len(replays) >= 10  # the first sequence's last 15 tokens come from decode-only steps
    assert set(replays) - set(BUCKETS)  # padded buckets were replayed
    assert outputs[True] == outputs[False]
    assert [len(o) for o in outputs[True]] == max_tokens
