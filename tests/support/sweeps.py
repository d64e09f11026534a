"""Parameter sweeps in `make test-fast`: the first few cases run there, the rest only in the full
suite, so the edit-test loop keeps each test without paying for its whole sweep."""

from collections.abc import Iterable
from typing import Any

import pytest


def fast_first(cases: Iterable[Any], keep: int = 1) -> list[Any]:
    """`cases` for `pytest.mark.parametrize`, all but the first `keep` marked slow."""
    return [
        case if i < keep else pytest.param(*_values(case), marks=pytest.mark.slow)
        for i, case in enumerate(cases)
    ]


def _values(case: Any) -> tuple[Any, ...]:
    # parametrize over several names takes a tuple per case; over one name, the value itself
    return case if isinstance(case, tuple) else (case,)
