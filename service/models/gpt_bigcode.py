"""GPTBigCode (SantaCoder, StarCoder): GPT-2 blocks with multi-query attention.

Matches `transformers.GPTBigCodeForCausalLM`. With `multi_query=True` all heads share one K/V
head and `c_attn` projects to [q (d) | k (head_dim) | v (head_dim)]; with `multi_query=False`
`c_attn` is laid out per head as [H, (q | k | v), head_dim].
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPTBigCodeConfig

from service.models.attention import AttentionMetadata, PagedAttention
from service.models.gpt2 import GPT2MLP


class GPTBigCodeAttention(nn.Module):
    def __init__(self, config: GPTBigCodeConfig):
        super().__init__()
        d = config.n_embd
        self.num_heads = config.n_head
        self.num_kv_heads = 1 if config.multi_query else config.n_head
        self.head_dim = d // config.n_head
        self.c_attn = nn.Linear(d, d + 2 * self.num_kv_heads * self.head_dim)
        self.c_proj = nn.Linear(d, d)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.attn = PagedAttention(
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.head_dim**-0.5 if config.scale_attn_weights else 1.0,
            upcast=config.attention_softmax_in_fp32,
            dropout=config.attn_pdrop,
        )

    def forward(self, x: torch.Tensor, meta: AttentionMetadata | None) -> torch.Tensor:
        lead = x.shape[:-1]
        qkv = self.c_attn(x)
        if self.num_kv_heads == 1:
            q, k, v = qkv.split([x.shape[-1], self.head_dim, self.head_dim], dim=-1)
            q = q.view(*lead, self.num_heads, self.head_dim)
            k, v = k.view(*lead, 1, self.head_dim), v.view(*lead, 1, self.head_dim)
        else:
            q, k, v = qkv.view(*lead, self.num_heads, 3 * self.head_dim).split(self.head_dim, -1)
        out = self.attn(q, k, v, meta)
        return self.resid_dropout(self.c_proj(out.flatten(-2)))


class GPTBigCodeBlock(nn.Module):
    def __init__(self, config: GPTBigCodeConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPTBigCodeAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x: torch.Tensor, meta: AttentionMetadata | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), meta)
        return x + self.mlp(self.ln_2(x))


class GPTBigCode(nn.Module):
    def __init__(self, config: GPTBigCodeConfig):
        super().__init__()
        self.config = config
        self.num_layers = config.n_layer
        self.num_kv_heads = 1 if config.multi_query else config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.vocab_size = config.vocab_size
        self.max_positions = config.n_positions

        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPTBigCodeBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        tied = config.tie_word_embeddings
        self.lm_head = None if tied else nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def attention_layers(self) -> list[PagedAttention]:
        return [block.attn.attn for block in self.h]

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        meta: AttentionMetadata | None = None,
    ) -> torch.Tensor:
        if positions is None:
            positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        for block in self.h:
            x = block(x, meta)
        return self.ln_f(x)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            return F.linear(hidden, self.wte.weight).float()
        return self.lm_head(hidden).float()

    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load `GPTBigCodeForCausalLM` parameters (our names drop the `transformer.` prefix)."""
        ours = {}
        for name, tensor in state_dict.items():
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # causal-mask buffers of old checkpoints
            if name == "lm_head.weight" and self.lm_head is None:
                continue
            ours[name.removeprefix("transformer.")] = tensor
        self.load_state_dict(ours, strict=True)
