"""Secret scrubbing under hostile text: every rule scrubs in time linear in the text's length
(a 2x longer input takes about 2x, not 4x), a request's budget of rule attempts refuses text
that asks for too much work, the keyword prefilter finds exactly what running every rule over
the whole text finds (on generated text, too), every rule finds the same secret on line 1 and
past it, and a secret cut by the cursor is found whole."""

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.secrets.scrubber import (
    RULES,
    Scrubber,
    ScrubBudget,
    ScrubBudgetExceeded,
    SecretDetector,
    scrub,
    settled_length,
)
from tests.support.secret_corpus import B64_LINE, HOSTILE_UNITS, planted_secrets, stdlib_files

# Time one 1 MB text may take on a busy 2-core machine (measured: well under 0.3 s).
MAX_SECONDS_PER_MB = 2.0


def time_once(text: str, detector: SecretDetector) -> float:
    start = time.perf_counter()
    detector.spans(text)
    return time.perf_counter() - start


def best_times(texts: list[str], detector: SecretDetector, rounds: int = 5) -> list[float]:
    """The least of a few runs of each text, taken in turns so that a busy moment of the shared
    machine slows both alike: the rest is its noise, not the scrubber's work."""
    best = [float("inf")] * len(texts)
    for _ in range(rounds):
        for i, text in enumerate(texts):
            best[i] = min(best[i], time_once(text, detector))
    return best


def repeated(unit: str, chars: int) -> str:
    return unit * (chars // len(unit) + 1)


def test_every_rule_has_hostile_units():
    assert set(HOSTILE_UNITS) == {rule.name for rule in RULES}


@pytest.mark.parametrize(
    "rule, unit", [(rule, unit) for rule, units in HOSTILE_UNITS.items() for unit in units]
)
@pytest.mark.slow  # measures time (≈40 s)
def test_hostile_text_scrubs_in_linear_time(rule, unit):
    """Grow the text until it takes long enough to time (20 ms, best of 3), then a text four
    times as long must take about four times as long: under 8x (quadratic time gives 16x). Four
    times, not two: a busy moment of the shared machine moves a 2x ratio past 3 (seen in CI)."""
    detector = SecretDetector()
    chars = 16_000
    while chars < 256_000 and best_times([repeated(unit, chars)], detector, rounds=3)[0] < 0.02:
        chars *= 2
    texts = [repeated(unit, chars), repeated(unit, 4 * chars)]
    elapsed, quadrupled = best_times(texts, detector, rounds=7)
    assert quadrupled / elapsed < 8.0, (rule, unit, chars, elapsed, quadrupled)
    # The absolute backstop: a megabyte of it.
    start = time.perf_counter()
    detector.spans(repeated(unit, 1_000_000))
    assert time.perf_counter() - start < MAX_SECONDS_PER_MB, (rule, unit)


@pytest.mark.slow  # measures time (≈40 s)
def test_a_mix_of_every_hostile_unit_scrubs_in_linear_time():
    rng = random.Random(0)
    units = [u for us in HOSTILE_UNITS.values() for u in us]
    mix = "".join(rng.choice(units) for _ in range(40_000))[:1_000_000]
    detector = SecretDetector()
    half, whole = best_times([mix[:500_000], mix], detector)
    assert whole / half < 3.0 and whole < MAX_SECONDS_PER_MB, (half, whole)


def test_settled_length_is_linear():
    """The streamed output's held-back tail: a long token run not at the end is read once."""
    short, long = "a" * 100_000 + " x", "a" * 200_000 + " x"
    times = []
    for text in (short, long):
        start = time.perf_counter()
        assert settled_length(text) == len(text) - 1
        times.append(time.perf_counter() - start)
    assert times[1] < 0.5, times


def test_the_budget_refuses_text_that_asks_too_much():
    """Keyword hits packed closer than the budget allows: refused, and quickly."""
    dense = "key " * 250_000  # a rule attempt every 4 characters; the budget allows one per 8
    start = time.perf_counter()
    with pytest.raises(ScrubBudgetExceeded):
        Scrubber(budget=ScrubBudget()).scrub(dense)
    assert time.perf_counter() - start < MAX_SECONDS_PER_MB
    # Small texts get the base allowance, however dense.
    Scrubber(budget=ScrubBudget()).scrub("key " * 1000)


def test_the_budget_never_refuses_real_code():
    """The densest 8 KB of the standard library spends well under the budget."""
    budget = ScrubBudget()
    for path in stdlib_files()[::5]:
        text = path.read_text(encoding="utf-8", errors="replace")
        Scrubber(budget=budget).scrub(text)
    assert budget.spent < budget.earned, (budget.spent, budget.earned)


def test_prefilter_finds_what_every_rule_finds_on_hostile_text():
    fast, full = SecretDetector(prefilter=True), SecretDetector(prefilter=False)
    rng = random.Random(1)
    units = [u for us in HOSTILE_UNITS.values() for u in us]
    for _ in range(300):
        text = "".join(rng.choice(units) for _ in range(rng.randint(1, 12)))
        assert fast.spans(text) == full.spans(text), text


# Pieces that make rules start, read on and stop: keywords in both cases, key characters,
# separators, quotes and line ends, key headers.
_FRAGMENTS = sorted(
    {k for r in RULES for k in r.keywords}
    | {k.upper() for r in RULES for k in r.keywords}
    | {"sk-proj-", "T3BlbkFJ", "eyJ", "AKIA", "1Q~", "=", ": ", " ", "\t", "\n", '"', "'"}
    | {"-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", B64_LINE}
    | {"aB3dE5fG7hK9mN1pQ4", "://u:", "@", ".", "\\n", "export ", "Bearer ", "_", "-", "x"}
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join))
def test_prefilter_finds_what_every_rule_finds_on_generated_text(text):
    assert SecretDetector(prefilter=True).spans(text) == SecretDetector(prefilter=False).spans(text)


CODE_ABOVE = "import os\n\n\ndef main():\n    return os.getcwd()\n\n"


@pytest.mark.parametrize("prefilter", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_every_rule_finds_the_same_secret_on_line_one_and_past_it(prefilter, seed):
    """The same line, first in the text and after some code, gives the same spans (shifted):
    a rule anchored at the start of the line must find the line's start wherever it is."""
    detector = SecretDetector(prefilter=prefilter)
    lines = [p.line for p in planted_secrets(random.Random(seed))]
    lines += ["DB_PASSWORD=aB3dE5fG7hK9mN1pQ4", 'export API_TOKEN="aB3dE5fG7hK9mN1pQ4"']
    for line in lines:
        first = detector.spans(line + "\n")
        later = detector.spans(CODE_ABOVE + line + "\n")
        shifted = [(s - len(CODE_ABOVE), e - len(CODE_ABOVE), rule) for s, e, rule in later]
        assert first and shifted == first, (line, first, later)


def test_dotenv_lines_past_the_first_are_their_rule():
    text = "A=1\nB=2\nDB_PASSWORD=aB3dE5fG7hK9mN1pQ4\n  export STRIPE_SECRET='aB3dE5fG7hK9'\n"
    for prefilter in (True, False):
        rules = [rule for _, _, rule in SecretDetector(prefilter=prefilter).spans(text)]
        assert rules == ["dotenv-assignment", "dotenv-assignment"], (prefilter, rules)


@pytest.mark.parametrize("seed", range(3))
def test_a_secret_cut_by_the_cursor_is_found_whole(seed):
    """Cut each planted line at every few characters inside its secret: neither side may keep
    a piece of the secret longer than a few characters, and the placeholder takes its place."""
    for planted in planted_secrets(random.Random(seed)):
        at = planted.line.index(planted.secret)
        for cut in range(at + 1, at + len(planted.secret), 7):
            prefix, suffix = "x = 1\n" + planted.line[:cut], planted.line[cut:] + "\ny = 2\n"
            (before, after), findings = Scrubber().scrub_adjacent((prefix, suffix))
            assert findings, (planted.family, cut)
            for piece in (planted.secret[:8], planted.secret[-8:]):
                assert piece not in before + "|" + after, (planted.family, cut)
            assert "<SECRET_1>" in before and after.endswith("\ny = 2\n")


def test_texts_scrubbed_apart_miss_the_secret_at_the_cut():
    """Why the cursor's two sides are scrubbed as one text: apart, neither half is a secret."""
    token = "ghp_" + "aB3dE5fG7h" * 3 + "aB3dE5"
    prefix, suffix = f'TOKEN = "{token[:20]}', f'{token[20:]}"\n'
    assert scrub(prefix).text == prefix and scrub(suffix).text == suffix
    (before, after), _ = Scrubber().scrub_adjacent((prefix, suffix))
    assert before == 'TOKEN = "<SECRET_1>' and after == '"\n'
