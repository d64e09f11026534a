"""Validation loss, perplexity and next-token accuracy on the held-out token stream."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def val_windows(tokens: np.ndarray, block_size: int, max_windows: int) -> np.ndarray:
    """Consecutive non-overlapping windows of block_size + 1 tokens from the start of the stream."""
    count = min(max_windows, (len(tokens) - 1) // block_size)
    starts = np.arange(count) * block_size
    return np.stack([np.asarray(tokens[s : s + block_size + 1], dtype=np.int64) for s in starts])


@torch.no_grad()
def val_metrics(
    model: nn.Module, windows: np.ndarray, batch_size: int, device: torch.device
) -> dict[str, float]:
    total_loss, correct, count = 0.0, 0, 0
    for i in range(0, len(windows), batch_size):
        rows = torch.from_numpy(windows[i : i + batch_size]).to(device)
        x, y = rows[:, :-1], rows[:, 1:]
        logits = model.compute_logits(model(x))
        total_loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        count += y.numel()
    loss = total_loss / count
    return {
        "val_loss": loss,
        "perplexity": math.exp(loss),
        "next_token_accuracy": correct / count,
        "val_tokens": count,
    }
