"""CUDA graphs for the decode step: one graph per bucketed batch size, replayed on padded inputs.

A decode step of a small model is dominated by kernel launches (a few dozen per layer) rather
than by the GPU work itself. Every decode step has the same shapes once its batch is padded up to
a bucket (1, 2, 4, ... max_num_seqs), so each bucket is captured once and then replayed: one
launch per step. The graph reads its inputs from static buffers, so a step copies the real inputs
into the first B rows, pads the rest (token 0 at position 0, slot -1 so nothing is stored,
sequence length 0 so attention yields zeros, block table -1) and reads back the first B rows.
Block tables have a fixed width, enough blocks for the model's longest sequence, so any decode
step fits. Prefill, mixed steps and batches larger than the largest bucket run eagerly.

Without capture the same padded buffers run through the model eagerly, which is how the padding
is tested on the CPU.
"""

import torch
from torch import nn

from service.engine.scheduler import ScheduledChunk
from service.models.attention import AttentionMetadata


def batch_buckets(max_num_seqs: int) -> list[int]:
    """Powers of two below max_num_seqs, then max_num_seqs itself."""
    buckets = [1]
    while buckets[-1] < max_num_seqs:
        buckets.append(min(2 * buckets[-1], max_num_seqs))
    return buckets


class DecodeGraphs:
    """Runs decode steps from static, bucket-padded buffers; replays CUDA graphs once captured."""

    def __init__(
        self,
        model: nn.Module,
        max_num_seqs: int,
        max_blocks_per_seq: int,
        block_size: int,
        device: torch.device,
    ):
        self.model = model
        self.block_size = block_size
        self.buckets = batch_buckets(max_num_seqs)
        rows = self.buckets[-1]
        self.input_ids = torch.zeros(rows, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, dtype=torch.long, device=device)
        self.slot_mapping = torch.full((rows,), -1, dtype=torch.int64, device=device)
        self.seq_lens = torch.zeros(rows, dtype=torch.int32, device=device)
        self.block_tables = torch.full(
            (rows, max_blocks_per_seq), -1, dtype=torch.int32, device=device
        )
        self.cu_seqlens_q = torch.arange(rows + 1, dtype=torch.int32, device=device)  # 1 each
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.hidden: torch.Tensor | None = None  # the graphs' output, [rows, hidden_size]

    def fits(self, chunks: list[ScheduledChunk]) -> bool:
        """Whether this step is a decode step the buffers can hold."""
        width = self.block_tables.shape[1]
        return len(chunks) <= self.buckets[-1] and all(
            c.num_tokens == 1 and c.completes_sequence and len(c.seq.block_table) <= width
            for c in chunks
        )

    @torch.inference_mode()
    def capture(self) -> None:
        """Capture every bucket, largest first so the smaller graphs reuse its pool memory."""
        pool = None
        for bucket in reversed(self.buckets):
            # Eager warm-up: compiles the Triton kernels for this shape before capture. The
            # buffers hold padding only, so nothing is written to the KV cache.
            hidden = self._forward(bucket)
            if self.hidden is None:
                self.hidden = torch.empty_like(hidden)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.hidden[:bucket] = self._forward(bucket)
            pool = graph.pool()
            self.graphs[bucket] = graph
        torch.cuda.synchronize()

    @torch.inference_mode()
    def run(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """float32 logits of a decode step that `fits`, one row per chunk."""
        batch = len(chunks)
        bucket = next(b for b in self.buckets if b >= batch)
        self._load(chunks, bucket)
        if bucket in self.graphs:
            self.graphs[bucket].replay()
            hidden = self.hidden
        else:
            hidden = self._forward(bucket)
        return self.model.compute_logits(hidden[:batch]).float()

    def _forward(self, bucket: int) -> torch.Tensor:
        meta = AttentionMetadata(
            slot_mapping=self.slot_mapping[:bucket],
            block_tables=self.block_tables[:bucket],
            seq_lens=self.seq_lens[:bucket],
            cu_seqlens_q=self.cu_seqlens_q[: bucket + 1],
            max_seqlen_q=1,
        )
        return self.model(self.input_ids[:bucket], self.positions[:bucket], meta)

    def _load(self, chunks: list[ScheduledChunk], bucket: int) -> None:
        """Copy the step's inputs into the first rows of the buffers; pad the rest up to bucket."""
        pad, bs, width = bucket - len(chunks), self.block_size, self.block_tables.shape[1]
        ids, positions, slots, lens, tables = [], [], [], [], []
        for chunk in chunks:
            seq, pos = chunk.seq, chunk.seq.num_computed_tokens
            ids.append(seq.token_ids[pos])
            positions.append(pos)
            slots.append(seq.block_table[pos // bs] * bs + pos % bs)
            lens.append(pos + 1)
            tables.append(seq.block_table + [-1] * (width - len(seq.block_table)))
        self.input_ids[:bucket].copy_(torch.tensor(ids + [0] * pad))
        self.positions[:bucket].copy_(torch.tensor(positions + [0] * pad))
        self.slot_mapping[:bucket].copy_(torch.tensor(slots + [-1] * pad))
        self.seq_lens[:bucket].copy_(torch.tensor(lens + [0] * pad))
        self.block_tables[:bucket].copy_(torch.tensor(tables + [[-1] * width] * pad))
