"""Our model implementations against `transformers`, dense and over a paged KV cache."""

import copy
import random

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from service.models.attention import AttentionMetadata
from service.models.gpt2 import GPT2
from service.models.loader import load_model
from tests.support.tiny_checkpoints import FAMILIES, build_checkpoint

ATOL = 1e-4
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PROMPT = '''def fibonacci(n: int) -> list[int]:
    """The first n Fibonacci numbers."""
    a, b = 0, 1
    out = []
'''


class PagedCache:
    """What the engine's model runner does, minimally: each sequence gets blocks from a shuffled
    pool, so block tables are scattered and never contiguous."""

    def __init__(self, model, num_blocks: int, block_size: int, seed: int = 0, device="cpu"):
        self.block_size, self.device = block_size, device
        self.free = list(range(num_blocks))
        random.Random(seed).shuffle(self.free)
        self.tables: list[list[int]] = []
        self.lengths: list[int] = []
        for layer in model.attention_layers():
            shape = (num_blocks, block_size, layer.num_kv_heads, layer.head_dim)
            layer.k_cache = torch.zeros(shape, device=device)
            layer.v_cache = torch.zeros(shape, device=device)

    def add_sequence(self, max_tokens: int) -> int:
        n_blocks = -(-max_tokens // self.block_size)
        self.tables.append([self.free.pop() for _ in range(n_blocks)])
        self.lengths.append(0)
        return len(self.tables) - 1

    def step(self, model, chunks: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Run the new tokens of several sequences in one call; logits [n_i, V] per sequence."""
        ids, positions, slots, cu = [], [], [], [0]
        for seq, tokens in chunks.items():
            start = self.lengths[seq]
            for pos in range(start, start + len(tokens)):
                block = self.tables[seq][pos // self.block_size]
                slots.append(block * self.block_size + pos % self.block_size)
            ids += tokens
            positions += range(start, start + len(tokens))
            cu.append(cu[-1] + len(tokens))
            self.lengths[seq] += len(tokens)
        width = max(len(self.tables[s]) for s in chunks)
        tables = [self.tables[s] + [-1] * (width - len(self.tables[s])) for s in chunks]

        def tensor(values, dtype=torch.int64):
            return torch.tensor(values, dtype=dtype, device=self.device)

        meta = AttentionMetadata(
            slot_mapping=tensor(slots),
            block_tables=tensor(tables, torch.int32),
            seq_lens=tensor([self.lengths[s] for s in chunks], torch.int32),
            cu_seqlens_q=tensor(cu, torch.int32),
            max_seqlen_q=max(len(t) for t in chunks.values()),
        )
        logits = model.compute_logits(model(tensor(ids), tensor(positions), meta)).cpu()
        return {s: logits[cu[i] : cu[i + 1]] for i, s in enumerate(chunks)}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(name, checkpoint dir, our model, the transformers model, prompt token ids)."""
    path = build_checkpoint(tmp_path_factory.mktemp(request.param), request.param)
    # eager: the only transformers attention that honours reorder_and_upcast_attn.
    reference = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    prompt = AutoTokenizer.from_pretrained(path)(PROMPT).input_ids
    return request.param, path, load_model(path), reference, prompt


@torch.no_grad()
def test_dense_batch_matches_transformers(family):
    _, _, model, reference, _ = family
    ids = torch.randint(0, model.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))
    ours = model.compute_logits(model(ids))
    assert ours.shape == (3, 40, model.vocab_size)
    torch.testing.assert_close(ours, reference(ids).logits, atol=ATOL, rtol=0)


@torch.no_grad()
def test_chunked_prefill_then_decode_over_scattered_blocks(family):
    name, _, model, reference, prompt = family
    block_size = 4 if name.startswith(("gpt2", "llama")) else 16
    cache = PagedCache(model, num_blocks=64, block_size=block_size, seed=len(name))
    seq = cache.add_sequence(len(prompt) + 32)
    split = len(prompt) // 2 - 1  # two chunks, the first not ending on a block boundary
    expected = reference(torch.tensor([prompt]), use_cache=True)
    first = cache.step(model, {seq: prompt[:split]})[seq]
    second = cache.step(model, {seq: prompt[split:]})[seq]
    torch.testing.assert_close(torch.cat([first, second]), expected.logits[0], atol=ATOL, rtol=0)

    cache_hf, logits = expected.cache, second[-1]
    for _ in range(32):
        token = int(logits.argmax())
        logits = cache.step(model, {seq: [token]})[seq][0]
        step = reference(torch.tensor([[token]]), cache=cache_hf, use_cache=True)
        cache_hf = step.cache
        torch.testing.assert_close(logits, step.logits[0, -1], atol=ATOL, rtol=0)


@torch.no_grad()
# Triton's interpreter on a CPU is slow: left out of `make test-fast`.
@pytest.mark.parametrize("kernels", ["reference", pytest.param("triton", marks=pytest.mark.slow)])
def test_sequences_of_different_lengths_in_one_call(family, kernels, monkeypatch):
    """Also with the Triton kernels forced (the interpreter on CPU, compiled on CUDA)."""
    monkeypatch.setenv("KERNELS", kernels)
    _, _, model, reference, prompt = family
    model = copy.deepcopy(model).to(DEVICE)
    cache = PagedCache(model, num_blocks=64, block_size=4, seed=7, device=DEVICE)
    short, long = cache.add_sequence(16), cache.add_sequence(len(prompt) + 8)
    tokens = {short: prompt[3:10], long: prompt}
    out = cache.step(model, {short: tokens[short][:6], long: tokens[long][:-5]})
    # A decode step of one sequence batched with a prefill chunk of the other.
    mixed = cache.step(model, {short: tokens[short][6:], long: tokens[long][-5:]})
    for seq in (short, long):
        expected = reference(torch.tensor([tokens[seq]])).logits[0]
        torch.testing.assert_close(torch.cat([out[seq], mixed[seq]]), expected, atol=ATOL, rtol=0)


def test_model_attributes(family):
    _, _, model, reference, _ = family
    config = reference.config
    assert model.num_layers == config.num_hidden_layers == len(model.attention_layers())
    assert model.vocab_size == config.vocab_size
    assert model.max_positions == config.max_position_embeddings
    layer = model.attention_layers()[0]
    assert (model.num_kv_heads, model.head_dim) == (layer.num_kv_heads, layer.head_dim)


@torch.no_grad()
@pytest.mark.parametrize("n_shared_blocks", [1, 2])
def test_weight_tied_gpt2_exports_an_ordinary_checkpoint(tmp_path, n_shared_blocks):
    config = GPT2Config(
        vocab_size=300,
        n_positions=64,
        n_embd=32,
        n_layer=4,
        n_head=4,
        scale_attn_by_inverse_layer_idx=True,
        n_shared_blocks=n_shared_blocks,
    )
    torch.manual_seed(0)
    model = GPT2.from_config(config).eval()
    assert len(model.h) == n_shared_blocks and len(model.attention_layers()) == 4
    state_dict = model.to_hf_state_dict()
    assert state_dict["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D [in, out]

    plain = GPT2Config(**{k: v for k, v in config.to_dict().items() if k != "n_shared_blocks"})
    reference = GPT2LMHeadModel(plain).eval()
    reference.load_state_dict(state_dict, strict=True)
    ids = torch.randint(0, 300, (2, 20))
    ours = model.compute_logits(model(ids))
    torch.testing.assert_close(ours, reference(ids).logits, atol=ATOL, rtol=0)

    # The export round-trips through a checkpoint directory and our loader.
    plain.save_pretrained(tmp_path)
    save_file(state_dict, tmp_path / "model.safetensors")
    reloaded = load_model(tmp_path)
    torch.testing.assert_close(reloaded.compute_logits(reloaded(ids)), ours, atol=ATOL, rtol=0)

    # With n_shared_blocks kept in config.json the loader re-ties, checking the layers repeat.
    config.save_pretrained(tmp_path)
    retied = load_model(tmp_path)
    assert len(retied.h) == n_shared_blocks
    torch.testing.assert_close(retied.compute_logits(retied(ids)), ours, atol=ATOL, rtol=0)
    state_dict["transformer.h.3.ln_1.bias"] += 1.0
    with pytest.raises(ValueError, match="differs from the shared"):
        GPT2.from_config(config).load_hf_state_dict(state_dict)


@torch.no_grad()
def test_sharded_checkpoint_loads(tmp_path):
    path = build_checkpoint(tmp_path / "full", "llama_gqa")
    model = AutoModelForCausalLM.from_pretrained(path)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ours = load_model(tmp_path / "sharded")
    ids = torch.arange(12)[None]
    torch.testing.assert_close(ours.compute_logits(ours(ids)), model(ids).logits, atol=ATOL, rtol=0)


def test_unsupported_model_type_is_a_clear_error(tmp_path):
    from transformers import BertConfig

    BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unsupported model_type 'bert'"):
        load_model(tmp_path)


@torch.no_grad()
@pytest.mark.parametrize("name", ["gpt2_codeparrot", "llama_gqa"])
def test_bfloat16_paged_is_as_accurate_as_transformers_bfloat16(tmp_path, name):
    path = build_checkpoint(tmp_path, name)
    half = load_model(path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert half.compute_logits(half(torch.arange(3)[None])).dtype == torch.float32
    prompt = list(range(5, 30))
    exact = AutoModelForCausalLM.from_pretrained(path)(torch.tensor([prompt])).logits[0]
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    reference_error = (reference(torch.tensor([prompt])).logits[0].float() - exact).abs()

    cache = PagedCache(half, num_blocks=16, block_size=4)
    for layer in half.attention_layers():
        layer.k_cache, layer.v_cache = layer.k_cache.bfloat16(), layer.v_cache.bfloat16()
    seq = cache.add_sequence(len(prompt))
    chunks = [cache.step(half, {seq: part})[seq] for part in (prompt[:11], prompt[11:])]
    error = (torch.cat(chunks) - exact).abs()
    # Rounding differs (the paged kernel accumulates in fp32), the size of the error must not.
    assert error.mean() < 1.5 * reference_error.mean(), (error.mean(), reference_error.mean())
    assert error.max() < 2 * reference_error.max(), (error.max(), reference_error.max())
