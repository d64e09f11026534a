"""The sampler's edge cases that requests can reach (found by the API fuzzing)."""

from types import SimpleNamespace

import pytest
import torch

from service.engine import SamplingParams
from service.engine.sampler import Sampler


@pytest.mark.parametrize("top_p", [1e-300, 5e-324])
def test_a_top_p_that_rounds_to_zero_keeps_the_most_likely_token(top_p):
    """top_p 1e-300 is 0 in float32: every token was cut, and the engine step failed for the
    whole batch ("invalid multinomial distribution")."""
    row = torch.randn(1000) * 5
    seq = SimpleNamespace(
        params=SamplingParams(temperature=0.7, top_p=top_p), generator=torch.Generator()
    )
    assert Sampler._sample_row(row, seq) == int(row.argmax())
