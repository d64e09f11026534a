"""The autoscaler's signal: engine_requests_waiting and engine_requests_running on /metrics follow
the scheduler's queues, between steps as well as after them."""

from prometheus_client import REGISTRY
from tokenizers import Tokenizer

from service.engine import EngineConfig, LLMEngine, SamplingParams
from tests.support.tiny_checkpoints import build_checkpoint

MAX_NUM_SEQS = 2


def gauges() -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("engine_requests_waiting"),
        REGISTRY.get_sample_value("engine_requests_running"),
    )


def test_requests_beyond_max_num_seqs_wait_then_drain_to_zero(tmp_path):
    checkpoint = build_checkpoint(tmp_path, "gpt2", n_positions=256)
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    engine = LLMEngine(
        EngineConfig(model_path=checkpoint, num_threads=1, max_num_seqs=MAX_NUM_SEQS)
    )
    prompt = tokenizer.encode("def add(a, b):\n    return").ids
    for i in range(5):
        engine.add_request(f"r{i}", prompt, SamplingParams(max_tokens=8, ignore_eos=True))
    assert gauges() == (5, 0)  # admitted, no step yet

    engine.step()  # prefills as many as there are slots; they decode from now on
    assert gauges() == (5 - MAX_NUM_SEQS, MAX_NUM_SEQS)

    engine.abort("r4")  # between steps, as a superseded keystroke's request is
    assert gauges() == (5 - MAX_NUM_SEQS - 1, MAX_NUM_SEQS)

    seen = set()
    for _ in range(200):
        if not engine.has_work():
            break
        engine.step()
        waiting, running = gauges()
        assert running <= MAX_NUM_SEQS
        seen.add((waiting, running))
    assert gauges() == (0, 0)
    assert (0, MAX_NUM_SEQS) in seen  # the last queued ones ran
