"""Allowed-token masks (service/engine/member_constraint.py): exactly the tokens the rule allows
(checked against a brute-force scan), and no sequence decoded under the mask leaves the member set
while the constraint is active, over many random vocabularies and member sets, and on the shipped
checkpoint's tokenizer and the tests' tiny ones."""

import random

import pytest
import torch

from service.engine.member_constraint import (
    MaskCache,
    MemberConstraint,
    TokenTrie,
    constraint_state,
    is_identifier_char,
    member_trie,
    token_texts,
)
from tests.support.fim_tokenizers import build_tokenizer
from tests.support.service_process import REPO
from tests.support.sweeps import fast_first

IDENT = "ab_c1"
OTHER = "(. ,\n"


def brute_force(texts: list[str | None], members: frozenset[str], head: str) -> set[int]:
    """The rule, token by token: head + text is a member prefix of identifier characters, or a
    member followed by a non-identifier character."""
    allowed = set()
    for token_id, piece in enumerate(texts):
        if not piece:
            continue
        s = head + piece
        k = next((i for i, c in enumerate(s) if not is_identifier_char(c)), len(s))
        if (k == len(s) and any(m.startswith(s) for m in members)) or (
            k < len(s) and s[:k] in members
        ):
            allowed.add(token_id)
    return allowed


def random_vocabulary(rng: random.Random) -> list[str | None]:
    texts: list[str | None] = list(IDENT + OTHER) if rng.random() < 0.7 else []
    for _ in range(rng.randint(5, 120)):
        length = rng.randint(1, 5)
        texts.append("".join(rng.choice(IDENT + OTHER) for _ in range(length)))
    texts += [None, ""] * rng.randint(0, 2)  # special tokens, empty pieces: never allowed
    rng.shuffle(texts)
    return texts


def random_members(rng: random.Random) -> frozenset[str]:
    words = {
        "".join(rng.choice(IDENT) for _ in range(rng.randint(1, 6)))
        for _ in range(rng.randint(1, 12))
    }
    if rng.random() < 0.2:
        words.add("")  # the partial typed already is a whole member
    return frozenset(words)


def decode_under_mask(cache: MaskCache, texts, members, rng: random.Random) -> str:
    generated = ""
    for _ in range(12):
        if constraint_state(members, generated) != "active":
            break
        allowed = cache.mask(members, generated).nonzero().flatten().tolist()
        if not allowed:
            break  # a dead end: the vocabulary cannot spell on; the engine then has no token
        generated += texts[rng.choice(allowed)]
    return generated


def assert_inside(members: frozenset[str], generated: str) -> None:
    state = constraint_state(members, generated)
    assert state != "violated", (sorted(members), generated)
    k = next((i for i, c in enumerate(generated) if not is_identifier_char(c)), len(generated))
    head = generated[:k]
    assert head in members if state == "done" else any(m.startswith(head) for m in members)


@pytest.mark.parametrize("seed", fast_first(range(300), keep=20))
def test_random_vocabularies_and_member_sets(seed):
    rng = random.Random(seed)
    texts = random_vocabulary(rng)
    cache = MaskCache(TokenTrie(texts), capacity=8)
    for _ in range(4):
        members = random_members(rng)
        prefixes = {m[:i] for m in members for i in range(len(m) + 1)}
        for head in prefixes:  # every active state: the mask is exactly the rule
            mask = cache.mask(members, head)
            assert mask.dtype == torch.bool and mask.shape == (len(texts),)
            assert set(mask.nonzero().flatten().tolist()) == brute_force(texts, members, head)
        for _ in range(20):
            assert_inside(members, decode_under_mask(cache, texts, members, rng))


def test_constraint_state():
    members = frozenset({"append", "appendleft", "pop"})
    assert constraint_state(members, "") == "active"
    assert constraint_state(members, "app") == "active"
    assert constraint_state(members, "append") == "active"  # `appendleft` is still reachable
    assert constraint_state(members, "append(") == "done"
    assert constraint_state(members, "pop()\nx = 1") == "done"
    assert constraint_state(members, "apx") == "violated"
    assert constraint_state(members, "ap(") == "violated"


def test_the_cache_reuses_masks_per_member_set_and_state():
    cache = MaskCache(TokenTrie(list("abc(") + ["ab", "abc("]), capacity=2)
    members = frozenset({"abc"})
    first = cache.mask(members, "")
    assert cache.mask(frozenset({"abc"}), "") is first and cache.hits == 1
    cache.mask(members, "a")
    cache.mask(members, "ab")  # past capacity: the least recently used ("") goes
    assert cache.mask(members, "") is not first and cache.misses == 4


def test_each_member_set_is_built_into_a_trie_once(monkeypatch):
    """Each step of a constraint asks for a new mask (the identifier so far grows); the member
    set's trie is built on the first and walked on the rest. A module's members built again per
    step held the engine thread: 16 warm sessions after `expr.` had a p50 of 552 ms, not 369."""
    import service.engine.member_constraint as module

    built = []

    def counted(members: frozenset[str]) -> dict:
        built.append(members)
        return member_trie(members)

    monkeypatch.setattr(module, "member_trie", counted)
    texts = list("abcp(") + ["ab", "abc("]
    cache = MaskCache(TokenTrie(texts))
    members = frozenset({"abc", "append", "pop"})
    heads = ("", "a", "ab", "abc")
    masks = [cache.mask(members, head) for head in heads]
    assert built == [members] and cache.misses == len(heads)
    for head, mask in zip(heads, masks, strict=True):
        assert set(mask.nonzero().flatten().tolist()) == brute_force(texts, members, head)


def real_tokenizers():
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    yield "checkpoints/default", AutoTokenizer.from_pretrained(REPO / "checkpoints" / "default")
    for family in ("starcoder", "qwen"):
        yield family, PreTrainedTokenizerFast(tokenizer_object=build_tokenizer(family))


@pytest.mark.slow  # every token of three real vocabularies (≈5 s)
@pytest.mark.parametrize("name", ["checkpoints/default", "starcoder", "qwen"])
def test_real_tokenizers_never_leave_the_member_set(name):
    tokenizer = dict(real_tokenizers())[name]
    texts = token_texts(tokenizer.backend_tokenizer, set(tokenizer.all_special_ids))
    assert all(texts[i] is None for i in tokenizer.all_special_ids)
    cache = MaskCache(TokenTrie(texts))
    rng = random.Random(0)
    member_sets = [frozenset(dir(list)), frozenset(dir(str)), frozenset({"path", "pathsep", "x"})]
    for members in member_sets:
        for head in sorted({m[:i] for m in members for i in range(len(m) + 1)})[:60]:
            mask = cache.mask(members, head)
            assert set(mask.nonzero().flatten().tolist()) == brute_force(texts, members, head)
        for _ in range(50):
            generated = decode_under_mask(cache, texts, members, rng)
            assert_inside(members, generated)


def test_the_engine_side_follows_generated_ids_past_the_forced_prefix():
    texts = ["ap", "pend", "(", "pop", None, "x", "append(", "."]
    member = MemberConstraint(texts, stop_ids={4})
    names = frozenset({"append", "pop"})
    assert member.generated(names, "", []) == ""
    assert member.generated(names, "", [0]) == "ap"
    assert member.generated(names, "", [0, 1]) == "append"
    assert member.generated(names, "", [0, 1, 2]) is None  # over: every token is free
    assert member.generated(names, "", [6, 5]) is None
    assert member.generated(names, "", [4]) is None  # a special token: already over
    # Token healing backed the prompt up by ".": the names follow it.
    assert member.generated(names, ".", [7]) == ""
    assert member.generated(names, ".", [7, 0]) == "ap"
    assert member.mask(names, "ap", 10).nonzero().flatten().tolist() == [1]
    # The model's vocabulary may be larger than the tokenizer's: padded, never allowed.
    assert member.mask(names, "", 10).nonzero().flatten().tolist() == [0, 3, 6]
    # A dead end (no token spells on inside the set): the stop tokens alone.
    assert member.mask(frozenset({"zz"}), "", 10).nonzero().flatten().tolist() == [4]
    assert member.allows(names, "append(") and member.allows(names, "")
    assert not member.allows(names, "apx")


def test_token_texts_keep_the_leading_space_sentencepiece_drops():
    """A Metaspace (SentencePiece-style) decoder drops the first token's leading space: `▁pop`
    alone reads "pop" but emits " pop" after `x.`; it must not pass as the member `pop`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "a": 1, "▁a": 2, "pop": 3, "▁pop": 4, "(": 5, "▁": 6}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert tokenizer.decode([4]) == "pop"  # what a plain decode would have said
    texts = token_texts(tokenizer.backend_tokenizer, set(tokenizer.all_special_ids))
    assert texts[3] == "pop" and texts[4] == " pop" and texts[0] is None
    mask = MaskCache(TokenTrie(texts)).mask(frozenset({"pop"}), "")
    assert mask.nonzero().flatten().tolist() == [3]
