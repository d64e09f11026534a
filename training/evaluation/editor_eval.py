"""Editor-like evaluation through the served path, on packages the corpus never contains.

Cursors where users type, inside a function or method body, each with the rest of the line as
target and the whole file around it (issue #28):

- `statement`: after the indentation of a statement line;
- `member`: right after `expr.` (the attribute and what follows is the target);
- `mid_identifier`: inside an identifier of 4+ characters (its tail is the target);
- `empty_line`: on a blank line in a block, where the user writes the block's next statement
  (the blank line becomes the target's line; the file after that statement is the suffix).

Each cursor is sent as a Tabby request (`segments.prefix`/`suffix`) to the server's own ASGI app
built with its defaults (`service.app.create_app(Settings(...))`), so job planning, the prompt
window, token healing, stopping and post-processing are exactly the served ones. The first line
of the returned text is scored against the target (whitespace-token exact match and edit
similarity, as `line_completion`), and each request's wall time is its keystroke latency.

The held-out packages are pinned pure-Python packages from PyPI whose names appear in no corpus
config (`training/configs/*.yaml`; checked by tests/training/test_editor_eval.py), downloaded once into a
cache directory like the corpus (`training.data.sources.download_packages`).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import random
import re
import time
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.evaluation.declarations import Declaration, declarations
from training.evaluation.line_completion import example_scores

HELD_OUT_PACKAGES = [
    "tinydb==4.9.0",
    "glom==25.12.0",
    "deepdiff==9.1.0",
    "jmespath==1.1.0",
    "cachelib==0.17.0",
    "munch==4.0.0",
]
KINDS = ("statement", "member", "mid_identifier", "empty_line")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Cursor:
    file: str
    kind: str
    line: int  # 1-based
    prefix: str
    suffix: str
    target: str


def _body_lines(tree: ast.AST) -> set[int]:
    """Lines of statements directly inside a function's body (not its docstring)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in ast.walk(node):
                if stmt is node or not isinstance(stmt, ast.stmt):
                    continue
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    continue  # docstrings and bare strings
                if stmt.lineno == stmt.end_lineno:
                    lines.add(stmt.lineno)
    return lines


def _string_or_comment_spans(source: str) -> dict[int, list[tuple[int, int]]]:
    spans: dict[int, list[tuple[int, int]]] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.STRING, tokenize.COMMENT) and tok.start[0] == tok.end[0]:
                spans.setdefault(tok.start[0], []).append((tok.start[1], tok.end[1]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return spans


def file_cursors(path: str, source: str) -> list[Cursor]:
    """Every cursor of every kind in one file (deterministic order)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    body = _body_lines(tree)
    strings = _string_or_comment_spans(source)
    cursors = []

    def cut(lineno: int, col: int, kind: str) -> None:
        text = lines[lineno - 1]
        content = text.rstrip("\r\n")
        target = content[col:]
        if not target.strip():
            return
        before = "".join(lines[: lineno - 1])
        prefix = before + content[:col]
        suffix = text[len(content) :] + "".join(lines[lineno:])
        cursors.append(Cursor(path, kind, lineno, prefix, suffix, target))

    for lineno in sorted(body):
        content = lines[lineno - 1].rstrip("\r\n")
        indent = len(content) - len(content.lstrip())
        if content.lstrip().startswith("#"):
            continue
        cut(lineno, indent, "statement")
        in_string = strings.get(lineno, [])

        def outside(col: int, spans=in_string) -> bool:
            return not any(a <= col < b for a, b in spans)

        for m in re.finditer(r"[A-Za-z0-9_)\]]\.(?=[A-Za-z_])", content):
            if outside(m.end()):
                cut(lineno, m.end(), "member")
                break
        for m in IDENT.finditer(content, indent):
            if len(m.group()) >= 4 and outside(m.start()):
                cut(lineno, m.start() + len(m.group()) // 2, "mid_identifier")
                break
        if lineno >= 2 and not lines[lineno - 2].strip():
            # a blank line above a statement in a block: the user writes that statement there
            prefix = "".join(lines[: lineno - 1]) + content[:indent]
            suffix = lines[lineno - 1][len(content) :] + "".join(lines[lineno:])
            cursors.append(Cursor(path, "empty_line", lineno, prefix, suffix, content[indent:]))
    return cursors


def sample_cursors(files: dict[str, str], per_kind: int, seed: int) -> list[Cursor]:
    """Up to `per_kind` cursors of each kind, spread over files (at most 3 a kind per file)."""
    rng = random.Random(seed)
    chosen = []
    by_kind: dict[str, list[Cursor]] = {k: [] for k in KINDS}
    for path in sorted(files):
        found = file_cursors(path, files[path])
        for kind in KINDS:
            of_kind = [c for c in found if c.kind == kind]
            by_kind[kind] += rng.sample(of_kind, min(3, len(of_kind)))
    for kind in KINDS:
        pool = by_kind[kind]
        chosen += rng.sample(pool, min(per_kind, len(pool)))
    return chosen


def package_files(packages: list[str], cache_dir: Path, max_chars: int = 200_000) -> dict:
    """`{"pkg/path.py": source}` of the pinned packages' archives (downloaded once, then cached)."""
    from training.data.sources import download_packages, iter_sdist, iter_wheel, pin

    files = {}
    for spec, archive in zip(packages, download_packages(packages, cache_dir), strict=True):
        name, _ = pin(spec)
        reader = iter_wheel if archive.suffix == ".whl" else iter_sdist
        for rec in reader(archive, name):
            if len(rec["content"]) <= max_chars and "/tests/" not in f"/{rec['path']}":
                files[f"{name}/{rec['path']}"] = rec["content"]
    return files


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip("\r")


def tabby_completion(
    client, cursor: Cursor, extra: dict | None = None, declarations: list[Declaration] = ()
) -> tuple[str, float]:
    """The text a Tabby request for the cursor gets through `client` (a TestClient or
    httpx.Client), and the request's wall time."""
    segments = {"prefix": cursor.prefix, "suffix": cursor.suffix, "filepath": cursor.file}
    if declarations:
        segments["declarations"] = [{"filepath": d.filepath, "body": d.body} for d in declarations]
    body = {"language": "python", "segments": segments, **(extra or {})}
    start = time.perf_counter()
    response = client.post("/v1/completions", json=body)
    latency = time.perf_counter() - start
    response.raise_for_status()
    return response.json()["choices"][0]["text"], latency


def run_cursors(
    client, cursors: list[Cursor], extra: dict | None = None, files: dict[str, str] | None = None
) -> list[dict]:
    """POST each cursor as a Tabby request through `client`; with the package's `files`, with
    the declarations tabby-agent would send (training/evaluation/declarations.py)."""
    records = []
    for c in cursors:
        sent = declarations(c.file, c.prefix, c.suffix, files) if files is not None else []
        text, latency = tabby_completion(client, c, extra, sent)
        prediction = first_line(text)
        exact, similarity = example_scores(prediction, c.target)
        record = asdict(c)
        del record["prefix"], record["suffix"]
        records.append(
            {
                **record,
                "setting": f"editor_{c.kind}",
                "prediction": prediction,
                "exact": bool(exact),
                "similarity": float(similarity),
                "latency_s": latency,
                "declarations": len(sent),
            }
        )
    return records


def copy_line_above(cursors: list[Cursor]) -> list[dict]:
    """The baseline: the line above the cursor's line, from the cursor's column on."""
    out = []
    for c in cursors:
        above = [ln for ln in c.prefix.splitlines()[:-1] if ln.strip()]
        col = len(c.prefix) - (c.prefix.rfind("\n") + 1)
        guess = above[-1][col:] if above else ""
        exact, similarity = example_scores(guess, c.target)
        out.append({"kind": c.kind, "exact": bool(exact), "similarity": float(similarity)})
    return out


def summarize(records: list[dict]) -> list[dict]:
    """One row per cursor kind, plus `all`: cursors, exact match %, edit similarity, latency."""
    rows = []
    for kind in (*KINDS, "all"):
        rs = [r for r in records if kind == "all" or r["kind"] == kind]
        if not rs:
            continue
        exact = np.array([r["exact"] for r in rs], dtype=float)
        row = {
            "kind": kind,
            "cursors": len(rs),
            "exact_match": round(100 * exact.mean(), 1),
            "exact_match_stderr": round(
                100 * float(np.sqrt(exact.mean() * (1 - exact.mean()) / len(rs))), 1
            ),
            "edit_similarity": round(float(np.mean([r["similarity"] for r in rs])), 1),
        }
        if "latency_s" in rs[0]:
            lat = np.array([r["latency_s"] for r in rs]) * 1000
            row["latency_ms_p50"] = round(float(np.percentile(lat, 50)), 1)
            row["latency_ms_p90"] = round(float(np.percentile(lat, 90)), 1)
        rows.append(row)
    return rows


def paired(a: list[dict], b: list[dict], samples: int = 2000, seed: int = 0) -> dict:
    """B − A on the same cursors: mean differences with file-bootstrap 95% intervals, and the
    latency ratio (p50 of B / p50 of A)."""
    from training.evaluation.compare import file_bootstrap

    if [(r["file"], r["line"], r["kind"]) for r in a] != [
        (r["file"], r["line"], r["kind"]) for r in b
    ]:
        raise ValueError("the two runs completed different cursors")
    files = np.array([r["file"] for r in a])
    rng = np.random.default_rng(seed)
    out = {}
    for key, scale in (("exact", 100.0), ("similarity", 1.0)):
        xa = np.array([r[key] for r in a], dtype=float) * scale
        xb = np.array([r[key] for r in b], dtype=float) * scale
        low, high = file_bootstrap(files, xa, xb, samples, rng)
        out[key] = {
            "diff": round(float((xb - xa).mean()), 2),
            "ci95": [round(low, 2), round(high, 2)],
        }
    lat_a = np.median([r["latency_s"] for r in a])
    lat_b = np.median([r["latency_s"] for r in b])
    out["latency_p50_ratio"] = round(float(lat_b / lat_a), 3)
    return out


def cursor_arguments(description: str) -> argparse.ArgumentParser:
    """The options of an evaluation on these cursors: the model, the packages' cache, how many
    cursors, the seed, where the records go."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default="checkpoints/default")
    ap.add_argument("--cache-dir", default="data/cache/heldout_packages")
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the per-cursor records (jsonl) here")
    return ap


def served_app(model: Path, **overrides):
    """A TestClient of the server's own app with its defaults (and `overrides`)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    return TestClient(create_app(Settings(model=model, **overrides)))


def main(argv: list[str] | None = None) -> None:
    ap = cursor_arguments(__doc__.split("\n")[0])
    ap.add_argument("--extra", default="{}", help="JSON fields added to every Tabby body")
    ap.add_argument(
        "--settings-b",
        default=None,
        help='JSON server Settings overrides (e.g. {"line_num_beams": 1}): run the cursors '
        "again on a server built with them and report B − A paired",
    )
    ap.add_argument(
        "--extra-b",
        default=None,
        help='JSON Tabby body fields for the B run instead of --extra (e.g. {"stop_mode": '
        '"line", "num_beams": 4}: what a client sends); with or without --settings-b',
    )
    ap.add_argument(
        "--declarations-b",
        action="store_true",
        help="the B run sends the declarations tabby-agent would send with a language server "
        "(training/evaluation/declarations.py); with or without the other B options",
    )
    args = ap.parse_args(argv)
    files = package_files(HELD_OUT_PACKAGES, Path(args.cache_dir))
    cursors = sample_cursors(files, args.per_kind, args.seed)
    with served_app(Path(args.model)) as client:
        records = run_cursors(client, cursors, json.loads(args.extra))
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in records))
    report = {
        "files": len(files),
        "model": summarize(records),
        "copy_line_above": summarize(copy_line_above(cursors)),
    }
    if args.settings_b or args.extra_b or args.declarations_b:
        overrides = json.loads(args.settings_b or "{}")
        extra_b = json.loads(args.extra_b or args.extra)
        with served_app(Path(args.model), **overrides) as client:
            records_b = run_cursors(
                client, cursors, extra_b, files if args.declarations_b else None
            )
        report["b"] = {
            "settings": overrides,
            "extra": extra_b,
            "declarations": args.declarations_b,
            "cursors_with_declarations": sum(r["declarations"] > 0 for r in records_b),
            "model": summarize(records_b),
        }
        report["b_minus_a"] = paired(records, records_b)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
