"""Runs the model over one scheduled step: packs the chunks into flat tensors, owns the KV cache."""

import os

import torch
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.cpu_paged_attention import max_queries_in_place, plan_sequences
from completion_kernels.dispatch import use_cpu_kernel, use_triton

from service.engine.config import EngineConfig
from service.engine.cuda_graphs import DecodeGraphs
from service.engine.scheduler import ScheduledChunk
from service.models.attention import AttentionMetadata
from service.models.loader import load_model
from service.models.packed_linears import can_pack, pack_linears

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelRunner:
    def __init__(self, config: EngineConfig):
        torch.set_num_threads(config.num_threads or os.cpu_count() or 1)
        self.device = torch.device(config.device)
        self.dtype = DTYPES[config.dtype]
        self.block_size = config.block_size
        self.model = load_model(config.model_path, device=self.device, dtype=self.dtype)
        self.model.eval()
        if self.device.type == "cpu":
            cpu_kernels()  # build (first start on a machine) or load them now, not at a request
        if can_pack(self.model):
            pack_linears(self.model)
        self.num_blocks = self._allocate_kv_cache(config.kv_cache_mb)
        self.decode_graphs = self._capture_decode_graphs(config)

    def _allocate_kv_cache(self, kv_cache_mb: int) -> int:
        layers = self.model.attention_layers()
        shape = (self.block_size, self.model.num_kv_heads, self.model.head_dim)
        bytes_per_block = 2 * len(layers) * shape[0] * shape[1] * shape[2] * self.dtype.itemsize
        num_blocks = max(1, kv_cache_mb * 2**20 // bytes_per_block)
        for layer in layers:
            layer.k_cache = self._empty_cache(num_blocks, shape)
            layer.v_cache = self._empty_cache(num_blocks, shape)
        return num_blocks

    def _empty_cache(self, num_blocks: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """[num_blocks, block_size, H_kv, D]. On the CPU the storage behind that shape is
        head-major, [H_kv, num_blocks, block_size, D]: a run of consecutive blocks is then one
        contiguous stretch of keys per head, which the CPU attention reads without a copy."""
        if self.device.type != "cpu":
            return torch.zeros(num_blocks, *shape, dtype=self.dtype, device=self.device)
        block_size, heads, head_dim = shape
        storage = torch.zeros(heads, num_blocks, block_size, head_dim, dtype=self.dtype)
        return storage.permute(1, 2, 0, 3)

    def _capture_decode_graphs(self, config: EngineConfig) -> DecodeGraphs | None:
        # Capture needs a forward pass without host syncs: the Triton kernels, not the torch
        # reference (which reads lengths and tables on the host).
        weight = next(self.model.parameters())
        if not (config.cuda_graphs and weight.is_cuda and use_triton(weight)):
            return None
        max_blocks_per_seq = -(-self.model.max_positions // self.block_size)
        graphs = DecodeGraphs(
            self.model, config.max_num_seqs, max_blocks_per_seq, self.block_size, self.device
        )
        graphs.capture()
        return graphs

    @torch.inference_mode()
    def copy_blocks(self, pairs: list[tuple[int, int]]) -> None:
        """Copy whole KV blocks (source, destination) in every layer: a forked beam's last block."""
        src = torch.tensor([s for s, _ in pairs], device=self.device)
        dst = torch.tensor([d for _, d in pairs], device=self.device)
        for layer in self.model.attention_layers():
            layer.k_cache[dst] = layer.k_cache[src]
            layer.v_cache[dst] = layer.v_cache[src]

    def run(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """Compute the chunks' K/V; return float32 logits (on the model's device) for the chunks
        that complete their sequence: one row each, plus one per draft token, in chunk order.
        Decode steps replay a CUDA graph where one was captured."""
        if self.decode_graphs is not None and self.decode_graphs.fits(chunks):
            return self.decode_graphs.run(chunks)
        return self.run_eager(chunks)

    @torch.inference_mode()
    def run_eager(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        input_ids, positions, meta, last_rows = self._prepare(chunks)
        hidden = self.model(input_ids, positions, meta)
        if not last_rows:
            return torch.empty(0, self.model.vocab_size, device=self.device)
        return self.model.compute_logits(hidden[last_rows]).float()

    def _prepare(self, chunks: list[ScheduledChunk]):
        input_ids, positions, slots, seq_lens, cu_seqlens_q, last_rows = [], [], [], [], [0], []
        for chunk in chunks:
            seq, start = chunk.seq, chunk.seq.num_computed_tokens
            end = start + chunk.num_tokens
            input_ids.extend(seq.step_tokens(start, end))
            positions.extend(range(start, end))
            table, bs = seq.block_table, self.block_size
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            seq_lens.append(end)
            cu_seqlens_q.append(cu_seqlens_q[-1] + chunk.num_tokens)
            if chunk.completes_sequence:  # the last token's row, and one per draft token
                rows = 1 + len(seq.draft_token_ids)
                last_rows.extend(range(cu_seqlens_q[-1] - rows, cu_seqlens_q[-1]))
        width = max(len(c.seq.block_table) for c in chunks)
        tables = [c.seq.block_table + [-1] * (width - len(c.seq.block_table)) for c in chunks]

        def tensor(values, dtype):
            return torch.tensor(values, dtype=dtype, device=self.device)

        meta = AttentionMetadata(
            slot_mapping=tensor(slots, torch.int64),
            block_tables=tensor(tables, torch.int32),
            seq_lens=tensor(seq_lens, torch.int32),
            cu_seqlens_q=tensor(cu_seqlens_q, torch.int32),
            max_seqlen_q=max(c.num_tokens for c in chunks),
        )
        if use_cpu_kernel(meta.seq_lens):  # one plan for every layer, from the lists at hand
            limit = max_queries_in_place(self.dtype)
            meta.cpu_plan = plan_sequences(tables, seq_lens, cu_seqlens_q, self.block_size, limit)
        return tensor(input_ids, torch.long), tensor(positions, torch.long), meta, last_rows
