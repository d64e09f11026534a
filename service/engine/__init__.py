"""The inference engine: continuous batching over a paged KV cache with prefix reuse."""

from service.engine.async_engine import AsyncEngine, EngineOverloaded, EngineUnavailable
from service.engine.config import EngineConfig
from service.engine.llm_engine import InvalidRequest, LLMEngine
from service.engine.output_processor import RequestOutput
from service.engine.sampling_params import SamplingParams

__all__ = [
    "AsyncEngine",
    "EngineConfig",
    "EngineOverloaded",
    "EngineUnavailable",
    "InvalidRequest",
    "LLMEngine",
    "RequestOutput",
    "SamplingParams",
]
