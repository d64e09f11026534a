"""`python -m training pipeline --config C`: every stage of one config, in order.

    prepare -> tokenizer -> pack -> train -> export -> evaluate

`--from STAGE` starts later (the earlier stages' outputs are reused), `--until STAGE` stops
early (`--until pack`: corpus, tokenizer and shards alone); training resumes from its
checkpoint by itself, so re-running a pipeline after an interruption loses little.
"""

import json

from training.config import RunConfig

STAGES = ("prepare", "tokenizer", "pack", "train", "export", "evaluate")


def run_pipeline(cfg: RunConfig, start: str = "prepare", stop: str = "evaluate") -> dict:
    from training.data.pack import pack
    from training.data.prepare import prepare
    from training.data.tokenizer import train_tokenizer
    from training.evaluation.evaluate import evaluate
    from training.export import export
    from training.train import train

    stages = {
        "prepare": lambda: print(prepare(cfg.data).table()),
        "tokenizer": lambda: train_tokenizer(cfg.data),
        "pack": lambda: pack(cfg.data),
        "train": lambda: train(cfg),
        "export": lambda: export(cfg),
        "evaluate": lambda: evaluate(cfg, cfg.export.out_dir),
    }
    results = {}
    for name in STAGES[STAGES.index(start) : STAGES.index(stop) + 1]:
        print(f"== {name}", flush=True)
        results[name] = stages[name]()
    if "evaluate" in results:
        print(json.dumps(results["evaluate"], indent=2))
    return results.get("evaluate", {})
