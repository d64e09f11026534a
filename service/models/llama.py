"""Llama and Qwen2 (CodeLlama, Qwen2.5-Coder): RoPE, RMSNorm, SwiGLU MLP, grouped-query attention.

Matches `transformers.LlamaForCausalLM` / `Qwen2ForCausalLM`. Qwen2 differs only by biases on the
q/k/v projections. The q/k/v projections are fused into one matrix and gate/up into another
(one GEMM each instead of three and two), so loading concatenates the Hugging Face weights.
"""

from collections import defaultdict

import torch
import torch.nn.functional as F
from completion_kernels.cpu_decode_layers import fusable, llama_decode_layers, packed
from completion_kernels.rms_norm import rms_norm
from completion_kernels.rotary import apply_rope, rope_tables
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from service.models.attention import AttentionMetadata, PagedAttention

# Our fused projection -> the Hugging Face projections it concatenates, in order.
SPLIT_PROJECTIONS = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
# Hugging Face projection -> (our fused projection, its place in the concatenation).
FUSED_PROJECTIONS = {
    hf: (ours, index) for ours, parts in SPLIT_PROJECTIONS.items() for index, hf in enumerate(parts)
}


def rope_frequencies(config: PretrainedConfig, head_dim: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies and the cos/sin scale of the config's RoPE variant."""
    params = config.rope_parameters
    if params["rope_type"] == "default":
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim
        return 1.0 / params["rope_theta"] ** exponents, 1.0
    # Scaled variants (llama3, linear, yarn, ...): use transformers' formulas as they are.
    return ROPE_INIT_FUNCTIONS[params["rope_type"]](config)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class LlamaAttention(nn.Module):
    def __init__(self, config: PretrainedConfig, head_dim: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = head_dim
        qkv_bias = config.model_type == "qwen2" or config.attention_bias
        out_bias = config.model_type != "qwen2" and config.attention_bias
        self.q_size = self.num_heads * head_dim
        self.kv_size = self.num_kv_heads * head_dim
        self.qkv_proj = nn.Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=qkv_bias)
        self.o_proj = nn.Linear(self.q_size, config.hidden_size, bias=out_bias)
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, head_dim, head_dim**-0.5)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        meta: AttentionMetadata | None,
    ) -> torch.Tensor:
        qk, v = self.qkv_proj(x).split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # q and k rotated together: one pass over both.
        qk = apply_rope(qk.unflatten(-1, (-1, self.head_dim)), cos, sin)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=-2)
        v = v.unflatten(-1, (self.num_kv_heads, self.head_dim))
        return self.o_proj(self.attn(q, k, v, meta).flatten(-2))


class LlamaMLP(nn.Module):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        bias = getattr(config, "mlp_bias", False)
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: PretrainedConfig, head_dim: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, head_dim)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, x, cos, sin, meta: AttentionMetadata | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        if config.hidden_act != "silu":
            raise ValueError(f"unsupported hidden_act {config.hidden_act!r} (Llama needs silu)")
        if "sliding_attention" in (getattr(config, "layer_types", None) or []):
            raise ValueError("sliding-window attention layers are not supported")
        self.config = config
        self.num_layers = config.num_hidden_layers
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self.vocab_size = config.vocab_size
        self.max_positions = config.max_position_embeddings

        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, self.head_dim) for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        tied = config.tie_word_embeddings
        self.lm_head = (
            None if tied else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        # A plain attribute, not a buffer: it stays fp32 when the model is cast to bf16.
        self.inv_freq, self.rope_scale = rope_frequencies(config, self.head_dim)
        # The layers' packed weights for the compiled decode step, gathered on first use.
        self.packed_weights: list[torch.Tensor] | None = None

    def attention_layers(self) -> list[PagedAttention]:
        return [layer.self_attn.attn for layer in self.layers]

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 cos and sin of each position's angles, [..., D/2]."""
        angles = positions[..., None].float() * self.inv_freq.to(positions.device)
        return angles.cos() * self.rope_scale, angles.sin() * self.rope_scale

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        meta: AttentionMetadata | None = None,
    ) -> torch.Tensor:
        if positions is None:
            positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        x = self.embed_tokens(input_ids)
        cos, sin = rope_tables(x, *self.rope(positions))
        if fusable(x, meta) and self.packed_layer_weights() is not None:
            x = self.compiled_decode_layers(x, cos, sin, meta)
        else:
            for layer in self.layers:
                x = layer(x, cos, sin, meta)
        return self.norm(x)

    def packed_layer_weights(self) -> list[torch.Tensor] | None:
        """The compiled decode step's weights, None until the projections are packed for it."""
        if self.packed_weights is None:
            self.packed_weights = self._layer_weights()
        return self.packed_weights

    def _layer_weights(self) -> list[torch.Tensor] | None:
        """The compiled call's 10 weights a layer (see the C++), or None where it cannot run."""
        weights = []
        for layer in self.layers:
            attn = packed(layer.self_attn.qkv_proj, layer.self_attn.o_proj)
            mlp = packed(layer.mlp.gate_up_proj, layer.mlp.down_proj)
            if attn is None or mlp is None:
                return None
            weights += [
                layer.input_layernorm.weight,
                *attn,
                layer.post_attention_layernorm.weight,
                *mlp,
            ]
        return weights

    def compiled_decode_layers(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        """All layers in one compiled call (a decode step the C++ takes, `fusable`), as the
        Python layers; the weights must be packed (`packed_layer_weights`)."""
        attention = self.layers[0].self_attn
        caches = [c for a in self.attention_layers() for c in (a.k_cache, a.v_cache)]
        return llama_decode_layers(
            x,
            self.packed_weights,
            caches,
            cos,
            sin,
            meta,
            attention.num_heads,
            attention.num_kv_heads,
            self.layers[0].input_layernorm.eps,
            attention.attn.scale,
        )

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            return F.linear(hidden, self.embed_tokens.weight).float()
        return self.lm_head(hidden).float()

    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load `LlamaForCausalLM` / `Qwen2ForCausalLM` parameters, fusing q/k/v and gate/up."""
        ours, fused = {}, defaultdict(dict)
        for name, tensor in state_dict.items():
            name = name.removeprefix("model.")
            tied_head = name == "lm_head.weight" and self.lm_head is None
            if tied_head or name.endswith("rotary_emb.inv_freq"):
                continue  # the embedding serves as the head; frequencies come from the config
            prefix, proj, kind = name.rsplit(".", 2) if name.count(".") >= 2 else ("", "", name)
            if proj in FUSED_PROJECTIONS:
                target, index = FUSED_PROJECTIONS[proj]
                fused[f"{prefix}.{target}.{kind}"][index] = tensor
            else:
                ours[name] = tensor
        for name, parts in fused.items():
            ours[name] = torch.cat([parts[i] for i in sorted(parts)])
        self.load_state_dict(ours, strict=True)

    def to_hf_state_dict(self) -> dict[str, torch.Tensor]:
        """A `LlamaForCausalLM` state dict (`load_hf_state_dict`'s inverse): the fused projections
        split again, and no head where it is the embedding."""
        attention = self.layers[0].self_attn
        sizes = {
            "qkv_proj": [attention.q_size, attention.kv_size, attention.kv_size],
            "gate_up_proj": [self.config.intermediate_size] * 2,
        }
        out = {}
        for name, tensor in self.state_dict().items():
            prefix, proj, kind = name.rsplit(".", 2) if name.count(".") >= 2 else ("", "", name)
            if proj in sizes:
                for hf, part in zip(
                    SPLIT_PROJECTIONS[proj], tensor.split(sizes[proj]), strict=True
                ):
                    out[f"model.{prefix}.{hf}.{kind}"] = part.contiguous().clone()
            else:
                out[name if name.startswith("lm_head") else f"model.{name}"] = tensor.clone()
        return out
