"""The semantic engine's input side in the job plan: what the code at the cursor allows decoding.

Before a job reaches the engine (and only then: a suggestion-cache hit costs no analysis), the
code before and after its cursor is analysed (service/semantic/cursor.py, within its time
budget; incremental across the keystrokes of an editor session, whose tree is kept here; its
tree then serves the output side's checks). The analysis reads the whole file the client sent,
not the prompt's window: a class defined above a clipped prefix still types its instances. Where the cursor follows
`expr.` on a type whose members are known, the job's first identifier is constrained to them:
`SamplingParams.allowed_continuations`, honoured by every decoding path of the engine. A job with
`semantic` off, and a cursor where nothing is known, decode as they would without it.

The analysis's counters (service.semantic.cursor.COUNTERS) are exported at /metrics by
`AnalysisCollector`, read at scrape time.
"""

import re
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import TypeVar

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from service.completion.finishing import PARSED_FILES, SourceFile
from service.semantic.cursor import COUNTERS, analyze, parsable
from service.semantic.syntax import SessionParser
from service.semantic.types import receiver_before_dot

T = TypeVar("T")
LEADING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SessionTrees:
    """Each editor session's parser (its last tree), least recently used dropped past
    `capacity`: the next keystroke re-parses only around its edit."""

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self.parsers: OrderedDict[Hashable, SessionParser] = OrderedDict()

    def parser(self, session: Hashable) -> SessionParser:
        parser = self.parsers.pop(session, None) or SessionParser()
        self.parsers[session] = parser
        if len(self.parsers) > self.capacity:
            self.parsers.popitem(last=False)
        return parser


def legal_members(
    file: SourceFile, session: Hashable | None, trees: SessionTrees
) -> frozenset[str] | None:
    """The rest of each member legal at the cursor (its first identifier's constraint), where
    the analysis knows them within its budget; else None."""
    parser = trees.parser(session) if session is not None else SessionParser()
    context = analyze(file.prefix, file.suffix, session=parser, with_names=False)
    if parsable(file.prefix, file.suffix):  # then the analysis parsed exactly this text
        # The output side checks against the same text: a copy, as the session edits its own.
        PARSED_FILES.remember(file, parser.tree.copy())
    return (context.continuations() or None) if context is not None else None


def after_dot(file: SourceFile) -> bool:
    """The cursor follows `expr.` (and what the user typed of a member)."""
    return receiver_before_dot(file.prefix) is not None


def distinct_members_first(ranked: list[tuple[T, str]]) -> list[tuple[T, str]]:
    """Ranked (candidate, text) pairs after `expr.`, reordered so the best of each member comes
    first, in rank order, and the rest after: with n > 1 choices the user sees n different
    members, each with the model's best continuation of it, before a second way to use one."""
    firsts, rest, seen = [], [], set()
    for item in ranked:
        name = LEADING_NAME.match(item[1])
        member = name.group() if name else ""
        (firsts if member not in seen else rest).append(item)
        seen.add(member)
    return firsts + rest


def open_brackets(file: SourceFile) -> int | None:
    """The brackets open at the cursor (beam search prunes a beam that closes one more); None
    inside a string, or in a file too large to read."""
    if not parsable(file.prefix, file.suffix):
        return None
    return PARSED_FILES.around(file).open_brackets


class AnalysisCollector(Collector):
    """The analysis's plain counters as Prometheus counters, read when /metrics is scraped."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, help_text, value in (
            ("semantic_analyses", "Cursor analyses run", COUNTERS.analyses),
            (
                "semantic_analyses_over_budget",
                "Analyses past their time budget: the request went on without semantics",
                COUNTERS.over_budget,
            ),
            (
                "semantic_analyses_too_large",
                "Analyses of a text too large to parse in the budget (not started)",
                COUNTERS.too_large,
            ),
            ("semantic_receivers", "Cursors after `expr.`", COUNTERS.receivers),
            (
                "semantic_receivers_typed",
                "Cursors after `expr.` whose members were known (the first member constrained)",
                COUNTERS.receivers_typed,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)


REGISTRY.register(AnalysisCollector())
