"""Allowed-token masks that keep a completion's first identifier inside a set of names.

After `expr.` with known members (or wherever the grammar wants one of a known set of names), the
completion's leading identifier must be one of a set of names (`SamplingParams.
allowed_continuations`: the rest of each legal member after what the user typed). While it is
being generated, a token is allowed when the identifier text so far plus the token's text

- is still a prefix of a name (all identifier characters), or
- completes a name and then goes on with a non-identifier character (`append(`): the
  constraint is then over, and the rest of that token and every later token are free.

The names come from the semantic analysis (service/semantic/cursor.py); this module knows tokens
and text only, so the engine computes its masks without importing the semantics.

API:
- `token_texts(tokenizer, special_ids) -> list[str | None]`: each id's text for a `tokenizers`
  Tokenizer (None: special tokens and pieces of a UTF-8 character, never allowed under a
  constraint).
- `TokenTrie(texts)`: a character trie of the vocabulary, built once per tokenizer.
- `constraint_state(names, generated) -> "active" | "done" | "violated"`: where a constraint
  stands after `generated` (the text emitted since it started); the engine stops masking at "done".
- `MaskCache(trie).mask(names, generated) -> torch.Tensor`: bool [vocab] of allowed ids for an
  active constraint, cached per (name set, identifier so far): a beam or a keystroke that
  reaches the same state reuses it.
- `MemberConstraint(texts)`: the engine's side, one per engine: `generated(names, forced_prefix,
  output_ids)` (the text under the constraint, None once it is over) and `mask(names, generated,
  vocab_size)` (padded to the model's vocabulary; the stop tokens alone at a dead end, so a
  sequence that cannot spell on ends rather than leave the set). The sampler and greedy paths use
  the mask as it is, speculation verifies drafts under it, beam search packs it for the beam
  kernel (`completion_kernels.beam_step.pack_allowed`).

Why a product walk of two tries: a mask costs the size of the overlap between the vocabulary and
the names (plus whole subtrees copied as index tensors), not vocabulary x names.
"""

from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from tokenizers import Tokenizer

State = Literal["active", "done", "violated"]


def is_identifier_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def token_texts(tokenizer: Tokenizer, special_ids: Collection[int]) -> list[str | None]:
    """Each token id's text as it reads after other text; None for special tokens and
    undecodable byte pieces.

    Decoded after an anchor ("a") and the anchor's text removed: SentencePiece decoders drop the
    leading space of a sequence's first token (`▁foo` alone reads "foo", after text " foo"),
    and a mask built from "foo" would let a token through that emits " foo".
    """
    anchor_ids = tokenizer.encode("a", add_special_tokens=False).ids
    anchor = tokenizer.decode(anchor_ids)
    pairs = [anchor_ids + [token_id] for token_id in range(tokenizer.get_vocab_size())]
    # One call into Rust instead of a Python loop over the vocabulary.
    decoded = tokenizer.decode_batch(pairs, skip_special_tokens=False)
    texts: list[str | None] = []
    for token_id, text in enumerate(decoded):
        piece = text[len(anchor) :] if text.startswith(anchor) else None
        ok = token_id not in special_ids and piece and "\ufffd" not in piece
        texts.append(piece if ok else None)
    return texts


@dataclass
class _Node:
    children: dict[str, "_Node"] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)  # tokens whose text ends here
    subtree: torch.Tensor | None = None  # every id at or below this node (built on first use)


def _insert(root: _Node, word: str, token_id: int) -> None:
    node = root
    for c in word:
        node = node.children.setdefault(c, _Node())
    node.ids.append(token_id)


class TokenTrie:
    """The vocabulary's token texts in a character trie (mutable only by its lazy subtree cache)."""

    def __init__(self, texts: Sequence[str | None]):
        self.vocab_size = len(texts)
        self.root = _Node()
        for token_id, piece in enumerate(texts):
            if piece:  # the empty text never makes progress: never allowed
                _insert(self.root, piece, token_id)

    def subtree(self, node: _Node) -> torch.Tensor:
        if node.subtree is None:
            ids, stack = [], [node]
            while stack:
                current = stack.pop()
                ids += current.ids
                stack.extend(current.children.values())
            node.subtree = torch.tensor(ids, dtype=torch.long)
        return node.subtree


# A member trie is nested dicts, one per character; END marks where a member ends (no character
# is the empty string). Plain dicts because a mask miss may need a set of hundreds of names (a
# module's members): built as `_Node`s that took ~9 ms for `dir(os)`, on the engine thread.
MemberTrie = dict
END = ""


def member_trie(members: frozenset[str]) -> MemberTrie:
    root: MemberTrie = {}
    for member in members:
        node = root
        for c in member:
            node = node.setdefault(c, {})
        node[END] = True
    return root


def constraint_state(members: frozenset[str], generated: str) -> State:
    k = 0
    while k < len(generated) and is_identifier_char(generated[k]):
        k += 1
    head = generated[:k]
    if k < len(generated):
        return "done" if head in members else "violated"
    return "active" if any(m.startswith(head) for m in members) else "violated"


def _allowed_ids(trie: TokenTrie, members: MemberTrie, head: str) -> torch.Tensor:
    node: MemberTrie | None = members
    for c in head:
        node = node.get(c) if node is not None else None
    if node is None:
        return torch.zeros(0, dtype=torch.long)
    parts: list[torch.Tensor] = []
    ids: list[int] = []
    stack = [(node, trie.root)]
    while stack:
        member_node, token_node = stack.pop()
        if token_node is not trie.root:
            ids += token_node.ids  # the text so far is still a member prefix
        for c, child in token_node.children.items():
            if is_identifier_char(c):
                next_member = member_node.get(c)
                if next_member is not None:
                    stack.append((next_member, child))
            elif END in member_node:
                parts.append(trie.subtree(child))  # member complete, then a non-identifier
    parts.append(torch.tensor(ids, dtype=torch.long))
    return torch.cat(parts)


class MaskCache:
    """Masks per (member set, identifier so far), least recently used dropped past `capacity`;
    beside them the member sets' tries, so each step of a constraint walks its set's trie
    rather than build it again."""

    def __init__(self, trie: TokenTrie, capacity: int = 256):
        self.trie = trie
        self.capacity = capacity
        self._masks: OrderedDict[tuple[frozenset[str], str], torch.Tensor] = OrderedDict()
        self._member_tries: OrderedDict[frozenset[str], MemberTrie] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def mask(self, members: frozenset[str], generated: str) -> torch.Tensor:
        """bool [vocab]: the ids allowed next while `constraint_state(...)` is "active"."""
        key = (members, generated)
        cached = self._masks.get(key)
        if cached is not None:
            self.hits += 1
            self._masks.move_to_end(key)
            return cached
        self.misses += 1
        allowed = torch.zeros(self.trie.vocab_size, dtype=torch.bool)
        allowed[_allowed_ids(self.trie, self._member_trie(members), generated)] = True
        self._masks[key] = allowed
        if len(self._masks) > self.capacity:
            self._masks.popitem(last=False)
        return allowed

    def _member_trie(self, members: frozenset[str]) -> MemberTrie:
        found = self._member_tries.get(members)
        if found is None:
            found = self._member_tries[members] = member_trie(members)
            if len(self._member_tries) > self.capacity:
                self._member_tries.popitem(last=False)
        self._member_tries.move_to_end(members)
        return found


class MemberConstraint:
    """The engine's member masks: one per engine (its tokenizer's texts and trie, and the masks
    cached across requests, so the next keystroke after the same `expr.` reuses them)."""

    def __init__(self, texts: list[str | None], stop_ids: Collection[int]):
        self.texts = texts
        self.masks = MaskCache(TokenTrie(texts))
        self.stop_ids = torch.tensor(sorted(stop_ids), dtype=torch.long)

    def generated(
        self, names: frozenset[str], forced_prefix: str, output_ids: Sequence[int]
    ) -> str | None:
        """The text `output_ids` spelled past the forced prefix (token healing's, which comes
        first) while the constraint is active, else None (it is over: every token is free)."""
        # Only the first tokens matter: past the longest name the constraint is over, so a long
        # output costs no more than a short one.
        limit = len(forced_prefix) + max(map(len, names), default=0)
        pieces, length = [], 0
        for token_id in output_ids:
            piece = self.texts[token_id] if token_id < len(self.texts) else None
            if piece is None:
                return None  # never allowed while active: the constraint was already over
            pieces.append(piece)
            length += len(piece)
            if length > limit:
                return None
        text = "".join(pieces)[len(forced_prefix) :]
        return text if constraint_state(names, text) == "active" else None

    def mask(self, names: frozenset[str], generated: str, vocab_size: int) -> torch.Tensor:
        """bool [vocab_size]: the tokens allowed next; at a dead end (no token spells on, which a
        vocabulary with every single character never has) the stop tokens, so the sequence ends
        inside the set rather than leave it."""
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        member_mask = self.masks.mask(names, generated)
        allowed[: len(member_mask)] = member_mask[:vocab_size]
        return allowed if allowed.any() else self.dead_end(vocab_size)

    def dead_end(self, vocab_size: int) -> torch.Tensor:
        """bool [vocab_size]: the stop tokens only: the sequence ends where it stands."""
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        allowed[self.stop_ids[self.stop_ids < vocab_size]] = True
        return allowed

    def allows(self, names: frozenset[str], piece: str) -> bool:
        """Whether a token whose text past the forced prefix is `piece` may start the output."""
        return constraint_state(names, piece) != "violated"
