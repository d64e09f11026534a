"""`python -m training evaluate`: the numbers of a model directory's evaluation table.

- validation loss, perplexity and next-token accuracy on the held-out repositories (val.bin);
- line completion on held-out files through the server's prompt builder and engine;
- HumanEval pass@1 / pass@10, and infilling pass@1 (single-line, multi-line, random-span),
  candidates run in the sandbox.

Results go to MODEL_DIR/eval_results.json and into the model card; each line completion
(target and prediction) to MODEL_DIR/line_completion.jsonl, for `python -m training compare`.
"""

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from service.completion.batch import BatchCompleter
from service.models.loader import load_model
from training.config import RunConfig
from training.evaluation.humaneval import evaluate_humaneval
from training.evaluation.humaneval_infilling import check_kinds, evaluate_humaneval_infilling
from training.evaluation.line_completion import (
    LINE_RECORDS,
    evaluate_line_completion,
    held_out_files,
)
from training.evaluation.sandbox import Limits
from training.export import EVAL_RESULTS, TRAINING_SUMMARY, write_model_card
from training.train import read_meta, read_tokens
from training.validation import val_metrics, val_windows


def evaluate(cfg: RunConfig, model_dir: str | None = None) -> dict[str, float]:
    e = cfg.evaluate
    path = Path(model_dir or e.model_dir)
    check_kinds(e.humaneval.infilling)
    meta = read_meta(cfg.data.out)
    val = read_tokens(cfg.data.out / "val.bin", meta["dtype"])
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)

    model = load_model(path)
    block = min(cfg.train.block_size, model.max_positions)
    results = val_metrics(
        model, val_windows(val, block, e.val_tokens // block), e.batch_size, torch.device("cpu")
    )
    del model

    lc = e.line_completion
    completer = BatchCompleter(
        path, lc.prefix_tokens, lc.suffix_tokens, num_threads=cfg.train.num_threads
    )
    files = held_out_files(
        val, Tokenizer.from_file(str(path / "tokenizer.json")), meta["eot_id"], lc.files
    )
    line_results, line_records = evaluate_line_completion(completer, files, lc)
    results |= line_results
    with open(path / LINE_RECORDS, "w") as out:
        out.writelines(json.dumps(record) + "\n" for record in line_records)
    h = e.humaneval
    if h.enabled:
        limits = Limits(timeout_s=h.timeout_s, memory_mb=h.memory_mb)
        results |= evaluate_humaneval(
            completer, h.problems, h.samples, h.temperature, h.max_new_tokens, limits
        )
        results |= evaluate_humaneval_infilling(
            completer, h.infilling, h.problems, h.infilling_max_new_tokens, limits
        )

    (path / EVAL_RESULTS).write_text(json.dumps(results, indent=2))
    if (path / TRAINING_SUMMARY).exists():
        write_model_card(path, cfg)
    return results
