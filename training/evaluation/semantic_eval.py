"""The semantic engine measured (issue #26): raw greedy, beam search and the hybrid pipeline side
by side, on editor_eval's cursors in never-seen packages, through the served app.

Each configuration is the server's own app with its defaults and one per-request switch:

- `raw greedy`: `"semantic": false`, the bare model (greedy, the served stopping);
- `beam`: `"semantic": false, "num_beams": 4` (length penalty 0.5, the Tabby default);
- `hybrid`: the default request, the semantic engine on: members after `expr.` constrained on
  the way in, post-processing, the checks (repair or drop) and the unsafe filter on the way out;
- `hybrid, 4 beams`: the same on four beams, so a suggestion the checks drop is replaced by the
  next candidate;
- `hybrid, line, 2 beams`: the hybrid pipeline asked for one line (`"stop_mode": "line"`) with
  two beams, the best single lines on editor_eval's protocol (docs/training.md).

Per cursor it records what the user sees (the suggestion's first line scored against the rest of
the line: exact match and edit similarity, as editor_eval) and, of each non-empty suggestion:

- `parses`: the file with the suggestion inserted at the cursor parses with Python's own `ast`
  (independent of the tree-sitter checks the hybrid pipeline applies; every sampled file parses
  as it is);
- `undefined` / `unknown_attribute`: a name that resolves nowhere in scope, or an attribute a known
  type lacks, as the semantic engine's checks (service/semantic/checks.py) find them; the hybrid
  pipeline applies the same checks, so its column says they work, not that they are right;
- `real_member` (cursors right after `expr.` on a type whose members the analysis knows): the
  suggestion starts with one of them;
- `top5`: one of five beams (`n=5`, OpenAI body, line stop), semantic off for raw greedy and beam
  and on for hybrid, matches exactly.

    python -m training semantic-eval --per-kind 40 --out runs/semantic_eval.jsonl
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.semantic.checks import FileAround, problems
from service.semantic.cursor import analyze
from training.evaluation.editor_eval import (
    HELD_OUT_PACKAGES,
    Cursor,
    cursor_arguments,
    first_line,
    package_files,
    paired,
    sample_cursors,
    served_app,
    tabby_completion,
)
from training.evaluation.line_completion import example_scores

CONFIGS: dict[str, dict] = {
    "raw greedy": {"semantic": False},
    "beam": {"semantic": False, "num_beams": 4},
    "hybrid": {"semantic": True},
    "hybrid, 4 beams": {"semantic": True, "num_beams": 4},
    "hybrid, line, 2 beams": {"semantic": True, "stop_mode": "line", "num_beams": 2},
}
TOP_K = 5
WARM_UP = 3  # cursors sent once untimed before the measured run
TOP_K_TOKENS = 32
LEADING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Generous: the evaluation wants the type whenever it can be known, not the keystroke's budget.
ANALYSIS_BUDGET_S = 1.0


def parses_in_context(cursor: Cursor, text: str) -> bool:
    try:
        ast.parse(cursor.prefix + text + cursor.suffix)
    except (SyntaxError, ValueError):
        return False
    return True


def known_members(cursor: Cursor) -> frozenset[str] | None:
    """The members the analysis knows right after `expr.` at the cursor; else None."""
    if cursor.kind != "member":
        return None
    context = analyze(cursor.prefix, cursor.suffix, budget_s=ANALYSIS_BUDGET_S, with_names=False)
    return context.continuations() if context is not None else None


def judge(cursor: Cursor, text: str, members: frozenset[str] | None) -> dict:
    """What one served suggestion is worth; the code checks only for a non-empty one."""
    prediction = first_line(text)
    exact, similarity = example_scores(prediction, cursor.target)
    record = {"prediction": prediction, "text": text, "exact": bool(exact)}
    record["similarity"] = float(similarity)
    record["empty"] = not text.strip()
    if record["empty"]:
        return record
    kinds = {p.kind for p in problems(FileAround(cursor.prefix, cursor.suffix), text)}
    record |= {
        "parses": parses_in_context(cursor, text),
        "undefined": "undefined_name" in kinds,
        "unknown_attribute": "unknown_attribute" in kinds,
    }
    if members is not None:
        name = LEADING_NAME.match(text)
        record["real_member"] = name is not None and name.group() in members
    return record


def top_k_hit(client, cursor: Cursor, semantic: bool) -> bool:
    body = {
        "prompt": cursor.prefix,
        "suffix": cursor.suffix,
        "max_tokens": TOP_K_TOKENS,
        "n": TOP_K,
        "num_beams": TOP_K,
        "temperature": 0,
        "stop_mode": "line",
        "semantic": semantic,
    }
    response = client.post("/v1/completions", json=body)
    response.raise_for_status()
    return any(
        example_scores(first_line(c["text"]), cursor.target)[0] for c in response.json()["choices"]
    )


def complete(client, cursor: Cursor, name: str, members: frozenset[str] | None) -> dict:
    """One cursor under one configuration: the Tabby request a plugin sends, judged."""
    text, latency = tabby_completion(client, cursor, CONFIGS[name])
    record = {"file": cursor.file, "line": cursor.line, "kind": cursor.kind}
    return record | judge(cursor, text, members) | {"latency_s": latency}


def run_configs(client, cursors: list[Cursor], members: list) -> dict[str, list[dict]]:
    """Every configuration on each cursor in turn, the first of them rotating: the first request
    of a cursor computes its prompt's KV, which the others then find in the prefix cache, so
    each configuration is first on a third of the cursors."""
    names = list(CONFIGS)
    records: dict[str, list[dict]] = {name: [] for name in names}
    for i, (cursor, known) in enumerate(
        tqdm(list(zip(cursors, members, strict=True)), unit="cursor")
    ):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            records[name].append(complete(client, cursor, name, known))
    return records


def share(records: list[dict], key: str) -> float | None:
    """The percentage of the records that hold `key` (None when none does)."""
    values = [r[key] for r in records if key in r]
    return round(100 * float(np.mean(values)), 1) if values else None


def summarize(records: list[dict]) -> dict:
    latency = np.array([r["latency_s"] for r in records]) * 1000
    exact = np.array([r["exact"] for r in records], dtype=float)
    return {
        "cursors": len(records),
        "exact_match": round(100 * exact.mean(), 1),
        "exact_match_stderr": round(
            100 * float(np.sqrt(exact.mean() * (1 - exact.mean()) / len(exact))), 1
        ),
        "edit_similarity": round(float(np.mean([r["similarity"] for r in records])), 1),
        "empty": share(records, "empty"),
        "parses": share(records, "parses"),
        "undefined": share(records, "undefined"),
        "unknown_attribute": share(records, "unknown_attribute"),
        "real_member": share(records, "real_member"),
        "top5": share(records, "top5"),
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(latency, 95)), 1),
    }


ROWS = (
    ("cursors", "cursors", "{}"),
    ("exact match %", "exact_match", "{}"),
    ("edit similarity", "edit_similarity", "{}"),
    ("empty suggestions %", "empty", "{}"),
    ("parse in context % (ast)", "parses", "{}"),
    ("reference an undefined name %", "undefined", "{}"),
    ("attribute a known type lacks %", "unknown_attribute", "{}"),
    ("start with a real member % (known type)", "real_member", "{}"),
    ("top-5 exact match % (n=5 beams)", "top5", "{}"),
    ("latency p50 / p95 ms", ("latency_ms_p50", "latency_ms_p95"), "{} / {}"),
)


def markdown(summaries: dict[str, dict[str, dict]]) -> str:
    """One table per cursor set (all single lines, right after `expr.`), a column a config."""
    out = []
    names = list(summaries)
    for subset in summaries[names[0]]:
        out.append(f"**{subset} cursors**\n\n| | " + " | ".join(names) + " |")
        out.append("|---" * (len(names) + 1) + "|")
        for label, key, form in ROWS:
            keys = key if isinstance(key, tuple) else (key,)
            cells = [
                form.format(
                    *(
                        "—" if summaries[n][subset][k] is None else summaries[n][subset][k]
                        for k in keys
                    )
                )
                for n in names
            ]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def evaluate(client, cursors: list[Cursor], top_k: bool = True) -> dict:
    """Every config on the same cursors: per-config summaries (all, member) and the paired
    difference hybrid − raw greedy."""
    members = [known_members(c) for c in cursors]
    for cursor in cursors[:WARM_UP]:  # the first requests compile kernels and fill caches
        for name in CONFIGS:
            complete(client, cursor, name, None)
    records = run_configs(client, cursors, members)
    if top_k:  # the n=5 beams depend on the semantic switch only: once each
        for semantic in (False, True):
            hits = [
                top_k_hit(client, c, semantic)
                for c in tqdm(cursors, desc=f"top-{TOP_K} semantic {semantic}", unit="cursor")
            ]
            for name in (n for n in CONFIGS if CONFIGS[n]["semantic"] == semantic):
                for record, hit in zip(records[name], hits, strict=True):
                    record["top5"] = hit
    summaries = {
        name: {
            subset: summarize(chosen)
            for subset, chosen in (
                ("all", rs),
                ("member", [r for r in rs if r["kind"] == "member"]),
            )
            if chosen
        }
        for name, rs in records.items()
    }
    return {
        "records": records,
        "summaries": summaries,
        "hybrid_minus_raw_greedy": paired(records["raw greedy"], records["hybrid"]),
        "hybrid_beams_minus_raw_greedy": paired(records["raw greedy"], records["hybrid, 4 beams"]),
        "hybrid_beams_minus_beam": paired(records["beam"], records["hybrid, 4 beams"]),
        "hybrid_line_beams_minus_raw_greedy": paired(
            records["raw greedy"], records["hybrid, line, 2 beams"]
        ),
    }


def main(argv: list[str] | None = None) -> None:
    ap = cursor_arguments(__doc__.split("\n")[0])
    ap.add_argument("--no-top5", action="store_true", help="skip the n=5 beam requests")
    args = ap.parse_args(argv)
    files = package_files(HELD_OUT_PACKAGES, Path(args.cache_dir))
    cursors = sample_cursors(files, args.per_kind, args.seed)
    with served_app(Path(args.model)) as client:
        result = evaluate(client, cursors, top_k=not args.no_top5)
    if args.out:
        lines = [{"config": n, **r} for n, rs in result["records"].items() for r in rs]
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in lines))
    print(markdown(result["summaries"]))
    for key in (
        "hybrid_minus_raw_greedy",
        "hybrid_beams_minus_raw_greedy",
        "hybrid_beams_minus_beam",
        "hybrid_line_beams_minus_raw_greedy",
    ):
        print(f"{key} (paired, file-bootstrap 95% interval): {json.dumps(result[key])}")
