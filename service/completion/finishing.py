"""The semantic engine's output side: what a finished suggestion becomes before a client sees it.

API (runner.finish calls `finish_code` on a code-aware request's finished text when the job's
`semantic` switch is on, and `count_parse` when it is off):
- `SourceFile(prefix, suffix)`: frozen; the whole file around the cursor as the client sent it
  (LF), which the checks read (a prompt's window may have clipped the imports away).
- `finish_code(text, file, unsafe) -> str`: in order, each on the previous one's output:
  1. post-processing (semantic/postprocess.py `clean`, in the file's style): the end of the
     scope, no repeated lines, no closing brackets the suffix has; nothing worth showing -> "";
  2. checks (semantic/checks.py): names resolve, attributes exist on known types, brackets
     balance, no new syntax error; a failing suggestion is cut to its valid part, else "";
  3. the unsafe-pattern filter (semantic/unsafe.py): `unsafe` "drop" -> "", "last" and
     "allow" keep it ("last": `ranks_last` puts it after the safe choices).
  "" is the empty choice the dialects already answer for "no output".
- `ranks_last(text, file, unsafe) -> bool`: a kept suggestion that introduces an unsafe pattern
  under "last" (for ordering a request's choices).
- `count_parse(text, file)`: the served-suggestion metric for a request without the checks.

Metrics (default registry, exported on /metrics):
`semantic_suggestions_total{outcome}` (kept, cleaned, repaired, dropped_empty, dropped_invalid,
dropped_unsafe, unchecked: a file past cursor.MAX_BYTES, not parsed),
`semantic_unsafe_suggestions_total{rule, action}`, and the pair
`semantic_served_suggestions_total{semantic}` / `semantic_served_parsed_total{semantic}`: of the
non-empty suggestions served to code-aware requests, how many parse in context (checks.py's
`adds_syntax_error`), with the switch on and off.

Costs: one parse of the file per job (`PARSED_FILES`: the analysis's own, else fresh; shared by
a beam's candidates and a request's choices), one incremental parse per check (`python -m benchmarks.bench_semantic`).
"""

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from prometheus_client import Counter
from tree_sitter import Tree

from service.prompt.newlines import to_lf
from service.semantic.checks import FileAround, adds_syntax_error, valid_part
from service.semantic.cursor import parsable
from service.semantic.postprocess import clean, is_substantive
from service.semantic.style import FileStyle, detect_style
from service.semantic.unsafe import introduced

UnsafePolicy = Literal["drop", "last", "allow"]
UNSAFE_POLICIES: tuple[UnsafePolicy, ...] = ("drop", "last", "allow")

SUGGESTIONS = Counter(
    "semantic_suggestions_total",
    "Finished suggestions of code-aware requests with the semantic engine on, by what its output "
    "side did: kept, cleaned (post-processed), repaired (cut to its valid part), dropped_empty "
    "(nothing worth showing), dropped_invalid (no valid part), dropped_unsafe, unchecked (a file "
    "too large to parse in a keystroke's time: service/semantic/cursor.py MAX_BYTES).",
    ["outcome"],
)
UNSAFE = Counter(
    "semantic_unsafe_suggestions_total",
    "Suggestions that introduce an unsafe pattern (service/semantic/unsafe.py), by rule and by "
    "what --unsafe-suggestions did: dropped, ranked_last, allowed.",
    ["rule", "action"],
)
SERVED = Counter(
    "semantic_served_suggestions_total",
    "Non-empty suggestions served to code-aware requests, by the semantic switch (on, off).",
    ["semantic"],
)
PARSED = Counter(
    "semantic_served_parsed_total",
    "Of semantic_served_suggestions_total, those that parse in context (add no syntax error).",
    ["semantic"],
)
STYLE_CHARS = 8_000
UNSAFE_ACTIONS = {"drop": "dropped", "last": "ranked_last", "allow": "allowed"}


@dataclass(frozen=True)
class SourceFile:
    prefix: str
    suffix: str

    @staticmethod
    def of(prefix: str, suffix: str) -> "SourceFile":
        """From the client's text, in any newline convention."""
        return SourceFile(to_lf(prefix), to_lf(suffix))


class ParsedFiles:
    """The last few files' parses, one per file: a beam's candidates and a request's choices
    share it, and the job's analysis (semantics.py), which parsed the same text incrementally
    from the editor session's last tree, hands its tree over (a fresh parse of a 43 KB file was
    ~3 ms of the output side's 5.2 ms)."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self.files: OrderedDict[SourceFile, FileAround] = OrderedDict()

    def remember(self, file: SourceFile, tree: Tree) -> None:
        """`tree` is the parse of `file.prefix + file.suffix`, owned by the caller no more."""
        self._keep(file, FileAround(file.prefix, file.suffix, tree=tree))

    def around(self, file: SourceFile) -> FileAround:
        return self._keep(file, self.files.pop(file, None) or FileAround(file.prefix, file.suffix))

    def _keep(self, file: SourceFile, around: FileAround) -> FileAround:
        self.files.pop(file, None)
        self.files[file] = around
        if len(self.files) > self.capacity:
            self.files.popitem(last=False)
        return around


PARSED_FILES = ParsedFiles()


@lru_cache(maxsize=16)
def _style(file: SourceFile) -> FileStyle:
    """From the code around the cursor: a file's style is the same throughout, and reading all
    of a 100 KB file cost 12 ms, a third of a keystroke."""
    return detect_style(file.prefix[-STYLE_CHARS:] + file.suffix[: STYLE_CHARS // 4])


def finish_code(text: str, file: SourceFile, unsafe: UnsafePolicy) -> str:
    cleaned = clean(text, file.prefix, file.suffix, style=_style(file))
    if cleaned is None:
        SUGGESTIONS.labels("dropped_empty").inc()
        return ""
    if not parsable(file.prefix, file.suffix):
        checked = cleaned  # too large to parse within a keystroke: not checked
    else:
        checked = valid_part(PARSED_FILES.around(file), cleaned)
    if not is_substantive(checked):
        SUGGESTIONS.labels("dropped_invalid").inc()
        return ""
    findings = introduced(file.prefix, checked, file.suffix)
    for rule in sorted({f.rule for f in findings}):
        UNSAFE.labels(rule, UNSAFE_ACTIONS[unsafe]).inc()
    if findings and unsafe == "drop":
        SUGGESTIONS.labels("dropped_unsafe").inc()
        return ""
    if not parsable(file.prefix, file.suffix):
        SUGGESTIONS.labels("unchecked").inc()
        return checked
    outcome = "kept" if checked == text else "repaired" if checked != cleaned else "cleaned"
    SUGGESTIONS.labels(outcome).inc()
    # The checks left no syntax error: it parses in context by construction.
    SERVED.labels("on").inc()
    PARSED.labels("on").inc()
    return checked


def ranks_last(text: str, file: SourceFile, unsafe: UnsafePolicy) -> bool:
    return unsafe == "last" and bool(text) and bool(introduced(file.prefix, text, file.suffix))


def count_parse(text: str, file: SourceFile) -> None:
    if not text.strip() or not parsable(file.prefix, file.suffix):
        return
    SERVED.labels("off").inc()
    if not adds_syntax_error(PARSED_FILES.around(file), text):
        PARSED.labels("off").inc()
