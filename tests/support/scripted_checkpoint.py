"""A tiny Llama checkpoint whose greedy output is a known script, so tests can assert exact text.

A random model's output is noise that no assertion can pin to the server. Here the attention and
MLP outputs are zeroed, so each position's hidden state is its token's embedding: the model is a
bigram table. Each script token gets its own embedding axis, and the LM head row of the token
that follows it points along that axis. After `<fim_middle>` (the last token of every PSM prompt)
greedy decoding spells the script, then `<|endoftext|>`. Requests that want the script send a
suffix: without one the prompt is the prefix alone, left to right (service/prompt/fim.py).
"""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from tests.support.tiny_checkpoints import build_checkpoint

SCRIPT = " b\nprint(add)"
MARGIN = 100.0


def build_scripted_checkpoint(
    out_dir: Path, script: str = SCRIPT, runner_up: tuple[int, str] | None = None
) -> Path:
    """`runner_up` = (i, token): after the script's i-th token (0 is `<fim_middle>`), `token`
    scores half the margin, so greedy decoding takes it where the script's next is excluded. A
    token from outside the script then stands in for the one it replaced: the script goes on
    after it (without that, what follows it is the random rows' noise, which differs by CPU)."""
    build_checkpoint(out_dir, "llama_gqa")  # untied embeddings: input and output rows are free
    tokenizer = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    chain = [
        tokenizer.token_to_id("<fim_middle>"),
        *tokenizer.encode(script, add_special_tokens=False).ids,
        tokenizer.token_to_id("<|endoftext|>"),
    ]
    if len(set(chain[:-1])) != len(chain) - 1:
        raise ValueError(f"a bigram script needs distinct tokens: {script!r}")
    state = load_file(out_dir / "model.safetensors")
    for name, tensor in state.items():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            tensor.zero_()
    embed, head = state["model.embed_tokens.weight"], state["lm_head.weight"]
    if len(chain) - 1 > embed.shape[1]:
        raise ValueError("script longer than the hidden size")
    for axis, (token, following) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
        embed[token] = torch.nn.functional.one_hot(torch.tensor(axis), embed.shape[1]).float()
        head[following, axis] = MARGIN
    if runner_up is not None:
        position, token = runner_up
        token_id = tokenizer.token_to_id(token)
        head[token_id, position] = MARGIN / 2
        if token_id not in chain:
            embed[token_id] = embed[chain[position + 1]]
    save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
    return out_dir
