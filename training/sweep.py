"""`python -m training sweep`: a small scaling sweep, so a user with more compute knows what a
bigger model or a longer run buys. Each variant (config overrides) trains the same short
schedule on the same data; the plot shows validation loss against tokens and against training
FLOPs (6 × non-embedding parameters × tokens, plus the LM head, per Kaplan et al. 2020)."""

import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from training.config import RunConfig, load_config  # noqa: E402
from training.curves import read_metrics  # noqa: E402
from training.train import build_model, read_meta, train  # noqa: E402


def flops_per_token(cfg: RunConfig, vocab_size: int) -> float:
    """Forward + backward FLOPs a token: layer applications (tied or not) and the LM head."""
    m = cfg.model
    d = m.n_embd
    if m.family == "llama":  # q and o, k and v of the key/value heads, three SwiGLU matrices
        config = m.llama_config(vocab_size, 0)
        kv = d * config.num_key_value_heads // m.n_head
        layer = 2 * d * d + 2 * d * kv + 3 * d * config.intermediate_size
    else:  # c_attn, c_proj, and the 4d MLP
        layer = 12 * d * d
    return 6 * (m.n_layer * layer + vocab_size * d)


def run_sweep(config_path: str, overrides: list[str] = ()) -> list[dict]:
    base = load_config(config_path, overrides)
    s = base.sweep
    rows = []
    for name, variant in s.variants.items():
        cfg = load_config(
            config_path, [*overrides, *s.common, *variant, f"train.out_dir={s.out_dir}/{name}"]
        )
        first = next(iter(cfg.curriculum))
        cfg.curriculum = {first: dataclasses.replace(cfg.curriculum[first], steps=s.steps)}
        print(f"== {name}", flush=True)
        train(cfg)
        meta = read_meta(cfg.data.out)
        val = [
            r for r in read_metrics(Path(cfg.train.out_dir) / "metrics.jsonl") if "val_loss" in r
        ]
        params = sum(p.numel() for p in build_model(cfg, meta).parameters())
        rows.append(dict(name=name, parameters=params, flops_per_token=flops_per_token(cfg, meta["vocab_size"]),
                         curve=[[r["tokens"], r["val_loss"]] for r in val]))  # fmt: skip
    Path(s.out_dir, "sweep.json").write_text(json.dumps(rows, indent=2))
    plot_sweep(rows, Path(s.out_dir) / "scaling_sweep.png")
    return rows


def plot_sweep(rows: list[dict], png: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        tokens, loss = zip(*row["curve"], strict=True)
        label = f"{row['name']} ({row['parameters'] / 1e6:.1f}M)"
        axes[0].plot(tokens, loss, "o-", label=label)
        axes[1].plot([t * row["flops_per_token"] for t in tokens], loss, "o-", label=label)
    for ax, xlabel in zip(axes, ("tokens", "training FLOPs"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
