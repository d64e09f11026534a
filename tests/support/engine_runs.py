"""Driving an `LLMEngine` by hand, step by step, as the async engine's loop would."""

from service.engine import LLMEngine


def run_to_completion(engine: LLMEngine, max_steps: int = 2000) -> None:
    """Step until every request has finished; a bounded loop, so a stuck engine fails the test."""
    for _ in range(max_steps):
        if not engine.has_work():
            return
        engine.step()
    raise AssertionError("engine did not finish")
