"""Paged KV cache bookkeeping: fixed-size blocks, reference counts and automatic prefix caching.

A full block is known by a chained hash of its tokens and of the block before it, so equal
hashes mean equal prefixes (the tokens are compared too, against collisions). When the next
keystroke's prompt starts with the previous one, its leading blocks are found by hash and only
the new tokens are computed. Blocks nobody references stay in the cache, in least-recently-used
order, until a new allocation needs them.

A sequence's `cache_salt` starts its chain: sequences of different salts never share a block,
so a tenant cannot learn from the timing of its own requests what another tenant's prompts
held (the server's --isolate-tenants salts each request with its tenant).
"""

from collections import OrderedDict
from dataclasses import dataclass, field

from service.engine.sequence import Sequence


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    parent: int | None = None  # the chained hash of the block before it, when it is cached
    token_ids: list[int] = field(default_factory=list)


def chain_hash(token_ids: list[int], previous: int | None) -> int:
    return hash((previous, tuple(token_ids)))


def chain_start(seq: Sequence) -> int | None:
    """The hash a sequence's first block chains from: its salt's, or None without one."""
    return None if seq.cache_salt is None else hash(("cache_salt", seq.cache_salt))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        self.block_size = block_size
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.cached: dict[int, int] = {}  # chained hash -> block id
        # Unreferenced blocks, least recently used first; they may still hold a cached prefix.
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return len(self.blocks) - len(self.free)

    def match_prefix(self, seq: Sequence) -> None:
        """Take the cached blocks that hold the start of a fresh sequence's tokens."""
        assert not seq.block_table and seq.num_computed_tokens == 0
        # The last token is always computed, for its logits: leave its block out of the match.
        num_full = (len(seq) - 1) // self.block_size
        previous = chain_start(seq)
        for i in range(num_full):
            tokens = seq.block_tokens(i, self.block_size)
            h = chain_hash(tokens, previous)
            block_id = self.cached.get(h)
            if block_id is None:
                break
            block = self.blocks[block_id]  # compared too: equal hashes may still differ
            if block.token_ids != tokens or block.parent != previous:
                break
            self._take(block_id)
            seq.block_table.append(block_id)
            seq.block_hashes.append(h)
            previous = h
        seq.num_computed_tokens = seq.num_cached_tokens = len(seq.block_table) * self.block_size

    def ensure_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Give the sequence blocks for `num_new_tokens` more computed tokens, or nothing at all."""
        needed = self.blocks_needed(seq, num_new_tokens)
        if needed > len(self.free):
            return False
        # The hash our next block continues, when our last block is full and cached.
        full_and_cached = seq.block_hashes and len(seq.block_hashes) == len(seq.block_table)
        chain = seq.block_hashes[-1] if full_and_cached else None
        for _ in range(needed):
            after = seq.block_table[-1] + 1 if seq.block_table else None
            block_id, chain = self._allocate_fresh(after, chain)
            seq.block_table.append(block_id)
        return True

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        total = seq.num_computed_tokens + num_new_tokens
        return max(0, -(-total // self.block_size) - len(seq.block_table))

    def register_full_blocks(self, seq: Sequence) -> None:
        """Hash the blocks that the last step filled, so later requests can reuse them. (Accepted
        draft tokens are computed before they join the sequence: their blocks wait a step.)"""
        filled = min(seq.num_computed_tokens, len(seq)) // self.block_size
        for i in range(len(seq.block_hashes), filled):
            previous = seq.block_hashes[-1] if seq.block_hashes else chain_start(seq)
            tokens = seq.block_tokens(i, self.block_size)
            h = chain_hash(tokens, previous)
            seq.block_hashes.append(h)
            block = self.blocks[seq.block_table[i]]
            if h not in self.cached:  # a twin computed at the same time keeps the entry
                block.hash, block.parent, block.token_ids = h, previous, tokens
                self.cached[h] = block.block_id

    def fork(self, parent: Sequence, child: Sequence) -> tuple[int, int] | None:
        """Give a fresh child (a new beam) the parent's cache: its full blocks are shared by
        reference, its partial last block is copied, since both will write their next tokens there.
        Returns (source, destination) of the block whose K/V rows the runner must copy, if any."""
        assert not child.block_table
        num_full = parent.num_computed_tokens // self.block_size
        for block_id in parent.block_table[:num_full]:
            self._take(block_id)
        child.block_table = parent.block_table[:num_full]
        child.block_hashes = list(parent.block_hashes)
        child.num_computed_tokens = parent.num_computed_tokens
        if num_full == len(parent.block_table):
            return None
        child.block_table.append(self._allocate_fresh()[0])
        return parent.block_table[num_full], child.block_table[-1]

    def fork_needs_block(self, parent: Sequence) -> bool:
        return parent.num_computed_tokens % self.block_size != 0

    def free_sequence(self, seq: Sequence) -> None:
        # Tail blocks are released first so they are evicted before the prefixes they extend.
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table.clear()
        seq.block_hashes.clear()
        seq.num_computed_tokens = 0

    def _take(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]
        block.ref_count += 1

    def _allocate_fresh(
        self, preferred: int | None = None, chain: int | None = None
    ) -> tuple[int, int | None]:
        """The least recently used free block, or `preferred` when it is free and caches nothing
        or a continuation of the chain hash `chain`. Returns the block and, when it was such a
        continuation, the hash it held: the chain its own successor would continue.

        Preferring the block after a sequence's last one keeps its blocks adjacent, and the CPU
        attention reads adjacent blocks as one view instead of copying them. The next keystroke's
        request finds there the previous request's continuation of the same prefix (its stale
        completion): taking it keeps the new request in one run, and it evicts only that
        continuation (and whatever was cached after it), no other prefix's blocks.
        """
        candidate = self.blocks[preferred] if preferred in self.free else None
        continues = candidate is not None and chain is not None and candidate.parent == chain
        if candidate is not None and (candidate.hash is None or continues):
            del self.free[preferred]
            block_id = preferred
        else:
            block_id, _ = self.free.popitem(last=False)
            continues = False
        block = self.blocks[block_id]
        evicted = block.hash
        if block.hash is not None and self.cached.get(block.hash) == block_id:
            del self.cached[block.hash]
        block.hash, block.parent, block.token_ids, block.ref_count = None, None, [], 1
        return block_id, evicted if continues else None
