"""GPT-2 (and CodeParrot): learned positions, pre-LayerNorm blocks, GELU MLP, tied LM head.

Matches `transformers.GPT2LMHeadModel`, including CodeParrot's `scale_attn_by_inverse_layer_idx`
(layer i divides the attention scale by i + 1) and `reorder_and_upcast_attn` (attention math in
fp32). One model serves both serving (flat tokens + paged KV cache) and training (dense [B, T]).

Weight-tied ("universal transformer") variant: when the config sets `n_shared_blocks = k`,
only k blocks hold parameters and layer i applies block i % k (k = 1: one block applied
n_layer times). Every layer still has its own attention scale and its own KV cache.
`to_hf_state_dict()` exports either variant as an ordinary GPT-2 state dict.

We use `nn.Linear` ([out, in]); Hugging Face's GPT-2 uses `Conv1D` ([in, out]), so those
weights are transposed on import and export.
"""

import math

import torch
import torch.nn.functional as F
from completion_kernels.cpu_decode_layers import fusable, gpt2_decode_layers, packed
from torch import nn
from transformers import GPT2Config

from service.models.attention import AttentionMetadata, PagedAttention

# Hugging Face parameter suffixes stored as Conv1D, i.e. transposed relative to nn.Linear.
CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)

# Activations the compiled decode layers run, as `torch.nn.functional.gelu`'s `approximate`.
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}


def activation(name: str):
    """The MLP nonlinearity named in a GPT-2 / GPTBigCode config."""
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported activation_function {name!r}")


class GPT2Attention(nn.Module):
    """The projections of one attention block (the attention step itself is per layer)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        d = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = d // config.n_head
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self, x: torch.Tensor, attn: PagedAttention, meta: AttentionMetadata | None
    ) -> torch.Tensor:
        q, k, v = self.c_attn(x).split(x.shape[-1], dim=-1)
        heads = (*x.shape[:-1], self.num_heads, self.head_dim)
        out = attn(q.view(heads), k.view(heads), v.view(heads), meta)
        return self.resid_dropout(self.c_proj(out.flatten(-2)))


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.act = activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(
        self, x: torch.Tensor, attn: PagedAttention, meta: AttentionMetadata | None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn, meta)
        return x + self.mlp(self.ln_2(x))


def layer_attention(config: GPT2Config, layer_idx: int) -> PagedAttention:
    head_dim = config.n_embd // config.n_head
    scale = head_dim**-0.5 if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= layer_idx + 1  # CodeParrot: deeper layers get softer attention
    return PagedAttention(
        config.n_head,
        config.n_head,
        head_dim,
        scale,
        upcast=config.reorder_and_upcast_attn,
        dropout=config.attn_pdrop,
    )


def init_like_gpt2(model: nn.Module, std: float, residual_projections: tuple[str, ...]) -> None:
    """GPT-2's initialisation: N(0, std) weights, zero biases, and the projections into the
    residual stream (modules named ending in `residual_projections`) at std / sqrt(2 n_layer)."""
    residual_std = std / math.sqrt(2 * model.num_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            scaled = name.endswith(residual_projections)
            nn.init.normal_(module.weight, std=residual_std if scaled else std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


class GPT2(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        if not config.tie_word_embeddings:
            raise ValueError("GPT-2 checkpoints with an untied lm_head are not supported")
        self.config = config
        self.num_layers = config.n_layer
        self.num_kv_heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.vocab_size = config.vocab_size
        self.max_positions = config.n_positions
        self.n_shared_blocks = getattr(config, "n_shared_blocks", None)

        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.lm_head = None  # tied: the logits are a product with wte (compute_logits)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(
            GPT2Block(config) for _ in range(self.n_shared_blocks or config.n_layer)
        )
        self.attn = nn.ModuleList(layer_attention(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        # The layers' packed weights for the compiled decode step, gathered on first use.
        self.packed_weights: list[torch.Tensor] | None = None
        self._init_weights()

    @classmethod
    def from_config(cls, config: GPT2Config) -> "GPT2":
        return cls(config)

    def _init_weights(self) -> None:
        init_like_gpt2(self, self.config.initializer_range, ("attn.c_proj", "mlp.c_proj"))

    def block(self, layer_idx: int) -> GPT2Block:
        return self.h[layer_idx % len(self.h)]

    def attention_layers(self) -> list[PagedAttention]:
        return list(self.attn)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        meta: AttentionMetadata | None = None,
    ) -> torch.Tensor:
        if positions is None:
            positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        if fusable(x, meta) and self.packed_layer_weights() is not None:
            return self.ln_f(self.compiled_decode_layers(x, meta))
        for i, attn in enumerate(self.attn):
            x = self.block(i)(x, attn, meta)
        return self.ln_f(x)

    def packed_layer_weights(self) -> list[torch.Tensor] | None:
        """The compiled decode step's weights, None until the projections are packed for it."""
        if self.packed_weights is None:
            self.packed_weights = self._layer_weights()
        return self.packed_weights

    def _layer_weights(self) -> list[torch.Tensor] | None:
        """The compiled call's 12 weights a layer (see the C++), or None where it cannot run."""
        if self.config.activation_function not in GELU:
            return None
        weights = []
        for i in range(self.num_layers):
            block = self.block(i)
            attn = packed(block.attn.c_attn, block.attn.c_proj)
            mlp = packed(block.mlp.c_fc, block.mlp.c_proj)
            if attn is None or mlp is None:
                return None
            ln_1, ln_2 = (block.ln_1.weight, block.ln_1.bias), (block.ln_2.weight, block.ln_2.bias)
            weights += [*ln_1, *attn, *ln_2, *mlp]
        return weights

    def compiled_decode_layers(self, x: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """All layers in one compiled call (a decode step the C++ takes, `fusable`), before ln_f,
        as the Python layers; the weights must be packed (`packed_layer_weights`)."""
        return gpt2_decode_layers(
            x,
            self.packed_weights,
            [c for a in self.attn for c in (a.k_cache, a.v_cache)],
            [a.scale for a in self.attn],
            meta,
            self.config.n_head,
            self.config.layer_norm_epsilon,
            GELU[self.config.activation_function],
        )

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            return F.linear(hidden, self.wte.weight).float()
        return self.lm_head(hidden).float()

    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load `GPT2LMHeadModel` parameters. The tied variant takes layer i < k as block i and
        requires every later layer to repeat its block."""
        ours, repeats = {}, []
        for name, tensor in state_dict.items():
            name = name.removeprefix("transformer.")
            if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # the tied head, and causal-mask buffers of old checkpoints
            if name.endswith(CONV1D_WEIGHTS):
                tensor = tensor.t()
            if name.startswith("h."):
                layer, rest = name[2:].split(".", 1)
                if int(layer) >= len(self.h):
                    repeats.append((f"h.{int(layer) % len(self.h)}.{rest}", name, tensor))
                    continue
            ours[name] = tensor
        for block_name, name, tensor in repeats:
            if not torch.equal(ours[block_name], tensor):
                raise ValueError(f"{name} differs from the shared {block_name}")
        self.load_state_dict(ours, strict=True)

    def to_hf_state_dict(self) -> dict[str, torch.Tensor]:
        """An ordinary `GPT2LMHeadModel` state dict (shared blocks copied into every layer)."""
        out = {}
        for name, tensor in self.state_dict().items():
            if name.endswith(CONV1D_WEIGHTS):
                tensor = tensor.t()
            if name.startswith("h."):
                block, rest = name[2:].split(".", 1)
                for layer in range(int(block), self.num_layers, len(self.h)):
                    out[f"transformer.h.{layer}.{rest}"] = tensor.contiguous().clone()
            else:
                out[f"transformer.{name}"] = tensor.contiguous().clone()
        # The tied head as its own copy: safetensors refuses tensors that share storage.
        out["lm_head.weight"] = out["transformer.wte.weight"].clone()
        return out
