import numpy as np
import pytest

from tests.support.fim_examples import split_fim
from tests.support.training_data import SAMPLE_CODE, make_tokenizer, python_sources
from training.config import PhaseConfig
from training.curriculum import IGNORE_INDEX, Curriculum
from training.fim import FimConfig, FimTransform
from training.spans import candidate_spans, choose_span


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(python_sources())


def chunk_of_documents(tokenizer, docs):
    eot = tokenizer.token_to_id("<|endoftext|>")
    ids = []
    for doc in docs:
        ids += tokenizer.encode(doc).ids + [eot]
    return np.asarray(ids[:-1])  # the chunk ends mid-document, as chunks do


def test_psm_and_spm_keep_every_character(tokenizer):
    docs = [src[:1500] for src in python_sources()]
    transform = FimTransform(tokenizer, FimConfig(rate=1.0, spm_rate=0.5))
    s = transform.sentinels
    rng = np.random.default_rng(0)
    out = transform(chunk_of_documents(tokenizer, docs), rng).tolist()
    examples = np.split(np.asarray(out), np.flatnonzero(np.asarray(out) == s.eot))
    orders = set()
    for doc, example in zip(docs, examples, strict=True):
        example = [t for t in example.tolist() if t != s.eot]
        order, prefix, suffix, middle = split_fim(example, s)
        orders.add(order)
        # SPM puts prefix+middle after <fim_middle>: the text is still exactly recoverable.
        decode = tokenizer.decode
        assert decode(prefix) + decode(middle) + decode(suffix) == doc
    assert orders == {"psm", "spm"}


def test_curriculum_fim_samples_fit_their_block(tokenizer):
    """Nothing is cut from a FIM sample's end, where its middle is: a cut one-line middle
    would teach the model that <fim_middle> is rarely followed by a short fill."""
    ids = np.asarray(tokenizer.encode("\n".join(python_sources())).ids)  # one long document
    phase = PhaseConfig(10, FimConfig(rate=1.0, spm_rate=0.5, structured_rate=0.5))
    curriculum = Curriculum({"fim": phase}, {"pretrain": ids}, tokenizer, block_size=256, seed=0)
    decode = tokenizer.decode
    for index in range(40):
        window, _ = curriculum.window_at(0, index)
        sample = [t for t in curriculum.sample(0, index).tolist() if t != IGNORE_INDEX]
        _, prefix, suffix, middle = split_fim(sample, curriculum.fim["fim"].sentinels)
        assert decode(prefix) + decode(middle) + decode(suffix) == decode(window.tolist())


def test_rate_zero_is_identity_and_rate_is_respected(tokenizer):
    chunk = chunk_of_documents(tokenizer, ["x = 1\n"] * 400)
    identity = FimTransform(tokenizer, FimConfig(rate=0.0))
    assert np.array_equal(identity(chunk, np.random.default_rng(0)), chunk)
    half = FimTransform(tokenizer, FimConfig(rate=0.5))
    out = half(chunk, np.random.default_rng(1))
    fraction = np.sum(out == half.sentinels.prefix) / 400
    assert 0.4 < fraction < 0.6


def test_split_is_at_character_level_inside_tokens(tokenizer):
    transform = FimTransform(tokenizer, FimConfig(rate=1.0, spm_rate=0.0))
    s = transform.sentinels
    rng = np.random.default_rng(3)
    ids = tokenizer.encode("identifier_with_a_long_name = another_long_identifier\n").ids
    inside_token = 0
    for _ in range(50):
        _, prefix, _, _ = split_fim(transform.permute(ids, rng), s)
        text = tokenizer.decode(prefix)
        inside_token += text not in {tokenizer.decode(ids[:k]) for k in range(len(ids) + 1)}
    assert inside_token > 10


def test_candidate_spans_find_each_structure():
    spans = {
        kind: [SAMPLE_CODE.encode()[a:b].decode() for a, b in found]
        for kind, found in candidate_spans(SAMPLE_CODE).items()
    }
    assert '"""Read the configuration file at path."""' in spans["docstring"]
    assert "f.read(), strict=True" in spans["call_args"]
    assert "return default" in spans["line"]
    assert any(
        body.startswith('"""Read') and body.endswith("strict=True)") for body in spans["block"]
    )


@pytest.mark.parametrize("kind", ["line", "rest_of_line", "block", "docstring", "call_args"])
def test_structured_fim_puts_the_span_in_the_middle(tokenizer, kind):
    config = FimConfig(rate=1.0, spm_rate=0.0, structured_rate=1.0, span_kinds=(kind,))
    transform = FimTransform(tokenizer, config)
    rng = np.random.default_rng(7)
    for _ in range(10):
        _, prefix, suffix, middle = split_fim(
            transform.permute(tokenizer.encode(SAMPLE_CODE).ids, rng), transform.sentinels
        )
        middle_text = tokenizer.decode(middle)
        lines = [line.strip() for line in SAMPLE_CODE.splitlines()]
        if kind == "line":
            assert middle_text in lines
        elif kind == "rest_of_line":
            assert "\n" not in middle_text and any(line.endswith(middle_text) for line in lines)
        elif kind == "docstring":
            assert middle_text == '"""Read the configuration file at path."""'
        elif kind == "call_args":
            assert middle_text in {"path", "f.read(), strict=True"}
        assert tokenizer.decode(prefix) + middle_text + tokenizer.decode(suffix) == SAMPLE_CODE


def test_choose_span_returns_none_without_candidates():
    assert choose_span("", np.random.default_rng(0)) is None
