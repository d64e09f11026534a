"""The context window around the cursor: token budgets for prefix, suffix and snippets.

Cuts fall on line boundaries, so the model never sees half a line at the edge of its context
(which it would take for the start of a file). Budgets are counted on the tokenizer's own
encoding; re-encoding the kept text can differ by a token at the seam, which a budget tolerates.
"""

import re
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from tokenizers import Tokenizer

from service.prompt.prefix_tokens import Encoded


@dataclass(frozen=True)
class Budget:
    """Token budgets of the prompt's parts."""

    prefix: int
    suffix: int
    snippets: int

    def within(self, room: int) -> "Budget":
        """These budgets shrunk to `room` tokens in all; the prefix gives up room last."""
        suffix = min(self.suffix, room // 4)
        snippets = min(self.snippets, (room - suffix) // 4)
        return Budget(min(self.prefix, room - suffix - snippets), suffix, snippets)


def clip_prefix(prefix: str, encoding: Encoded, budget: int) -> str:
    """The last whole lines of `prefix` that fit in `budget` tokens (`encoding` encodes prefix)."""
    offsets = encoding.offsets
    if len(offsets) <= budget:
        return prefix
    if budget <= 0:
        return ""
    first_kept = offsets[len(offsets) - budget][0]
    if first_kept > 0 and prefix[first_kept - 1] != "\n":
        next_line = prefix.find("\n", first_kept)
        # The cursor's own line is longer than the budget: keep its tail, cut mid-line.
        if next_line != -1:
            first_kept = next_line + 1
    return prefix[first_kept:]


def clip_suffix(suffix: str, encoding: Encoded, budget: int) -> str:
    """The first whole lines of `suffix` that fit in `budget` tokens."""
    offsets = encoding.offsets
    if len(offsets) <= budget:
        return suffix
    if budget <= 0:
        return ""
    end = offsets[budget - 1][1]
    last_newline = suffix.rfind("\n", 0, end)
    return suffix[: last_newline + 1] if last_newline != -1 else suffix[:end]


def clip_prefix_chars(prefix: str, max_chars: int) -> str:
    """The last whole lines of `prefix` within `max_chars` characters (Tabby clips by characters)."""
    if len(prefix) <= max_chars:
        return prefix
    first_kept = len(prefix) - max_chars
    if prefix[first_kept - 1] != "\n":
        next_line = prefix.find("\n", first_kept)
        if next_line != -1:
            first_kept = next_line + 1
    return prefix[first_kept:]


# A module-level import statement, a parenthesized list of names included.
IMPORT = re.compile(
    r"^(?:from[ \t]+[\w.]+[ \t]+import[ \t]*\([^)]*\)|(?:from[ \t]+[\w.]+[ \t]+)?import[ \t][^\n]*)",
    re.MULTILINE,
)


def imports_before(text: str, end: int, max_chars: int) -> str:
    """The module-level imports in `text[:end]` (the code a window dropped), one a line, the
    first ones within `max_chars`: the names they bind are what the kept code goes on using."""
    kept, used = [], 0
    for match in IMPORT.finditer(text, 0, end):
        statement = match.group().rstrip() + "\n"
        if used + len(statement) > max_chars:
            break
        kept.append(statement)
        used += len(statement)
    return "".join(kept)


@dataclass(frozen=True)
class Snippet:
    """Code from another file that the client thinks is relevant (Tabby's declarations etc.)."""

    filepath: str
    body: str


# Line-comment markers; languages not listed get "#", like Python.
COMMENT_MARKERS = {
    **dict.fromkeys(
        [
            "c",
            "cpp",
            "csharp",
            "go",
            "java",
            "javascript",
            "javascriptreact",
            "kotlin",
            "php",
            "rust",
            "scala",
            "swift",
            "typescript",
            "typescriptreact",
            "dart",
        ],
        "//",
    ),
    **dict.fromkeys(["sql", "lua", "haskell"], "--"),
}


def comment_marker(language: str | None) -> str:
    return COMMENT_MARKERS.get((language or "").lower(), "#")


def render_snippet(snippet: Snippet, marker: str) -> str:
    lines = [f"Path: {snippet.filepath}", *snippet.body.rstrip("\n").split("\n")]
    return "".join(f"{marker} {line}".rstrip() + "\n" for line in lines)


def render_snippets(
    snippets: list[Snippet], language: str | None, tokenizer: Tokenizer, budget: int
) -> str:
    """Snippets as comment lines, in the order given, as many whole snippets as fit `budget`."""
    marker = comment_marker(language)
    rendered, used = [], 0
    for snippet in snippets:
        text = render_snippet(snippet, marker)
        cost = len(tokenizer.encode(text, add_special_tokens=False).ids)
        if used + cost > budget:
            continue  # a later, shorter snippet may still fit
        rendered.append(text)
        used += cost
    return "".join(rendered)


# A top-level definition (Python's, and decorators): the best place for a window to begin.
DEFINITION = re.compile(r"(?:@|(?:async\s+)?def\s|class\s)")
# A line at column 0 that continues a statement rather than starting one.
CLOSING = ")]}"


def line_rank(text: str, line_start: int) -> int:
    """How good a place the line at `line_start` is for a window's edge: 0 a top-level
    definition (not a decorated one's `def`, which would lose its decorator), 1 another line
    at column 0, 2 any other line."""
    first = text[line_start : line_start + 1]
    if not first or first.isspace() or first in CLOSING:
        return 2
    if DEFINITION.match(text, line_start):
        previous = text.rfind("\n", 0, max(line_start - 1, 0)) + 1
        return 1 if line_start > 0 and text.startswith("@", previous) else 0
    return 1


class StickyWindows:
    """Window edges that stay put while the user types, so the prefix cache keeps hitting.

    Clipping to the last `budget` tokens moves the prefix window's start with every keystroke
    that adds a token, and then the prompt's first block, so every chained block hash, misses.
    Instead a window begins at a line start where it keeps between `budget - 2 * step` and
    `budget - step` tokens (a top-level definition if there is one, else the longest), and
    stays there while the code up to the cursor still fits `budget` and keeps at least
    `budget - 2 * step`: one re-prefill per `step` tokens typed at least. The suffix window
    mirrors it: its end, placed to keep at least `budget - step` tokens, stays put while the
    cursor moves down until fewer than `budget - 2 * step` are left. Edges are remembered per editor session, and for requests
    without one by the text at the edge (scoped by cache salt), so the next keystroke of the
    same file finds its edge again. Prompts that fit their budget are never touched.
    """

    def __init__(
        self,
        step_fraction: float = 0.25,  # of the budget: tokens typed between two window moves
        max_sessions: int = 4096,  # editor sessions remembered, least recently used dropped
        max_edges: int = 4096,  # edges remembered by their text for requests without a session
        edge_chars: int = 64,  # characters at an edge that identify it
    ):
        self.step_fraction = step_fraction
        self.max_sessions, self.max_edges, self.edge_chars = max_sessions, max_edges, edge_chars
        # (session, "prefix" | "suffix") -> (edge offset, text at the edge)
        self.sessions: OrderedDict[tuple[Hashable, str], tuple[int, str]] = OrderedDict()
        # (cache salt, "prefix" | "suffix", text at the edge)
        self.edges: OrderedDict[tuple[str | None, str, str], None] = OrderedDict()
        self.lock = threading.Lock()  # builders may run on several threads

    def step(self, budget: int) -> int:
        return max(1, int(budget * self.step_fraction))

    def clip_prefix(
        self,
        prefix: str,
        encoding: Encoded,
        budget: int,
        session: Hashable | None = None,
        cache_salt: str | None = None,
    ) -> str:
        """`prefix` from a line start that keeps at most `budget` tokens: the remembered start
        if it still fits, else a new one that leaves `step` tokens for typing."""
        # The tokens' starts are read through a key, not copied out: a list of a long file's
        # ~10,000 starts a keystroke was the largest cost of its prompt on the event loop.
        clipped = self.sticky_prefix(
            prefix, encoding.offsets, budget, session, cache_salt, start_of=itemgetter(0)
        )
        return clip_prefix(prefix, encoding, budget) if clipped is None else clipped

    def sticky_prefix(
        self,
        prefix: str,
        tokens: Sequence,
        budget: int,
        session: Hashable | None,
        cache_salt: str | None,
        start_of: Callable[[Any], int] | None = None,
    ) -> str | None:
        """clip_prefix on `tokens`, in order, each starting at `start_of(token)` (the token
        itself when None); None where plain clipping applies (the prefix fits, or the cursor's
        line alone is longer than the budget)."""
        if len(tokens) <= budget or budget <= 0:
            return None
        step = self.step(budget)

        def kept(cut: int) -> int:  # tokens from `cut` to the cursor
            return len(tokens) - bisect_left(tokens, cut, key=start_of)

        # Line starts where the window keeps between budget - 2 steps and budget tokens, in
        # order (a start kept further back than that is given up: the window got too short).
        first = tokens[len(tokens) - budget]
        cuts, cut = [], first if start_of is None else start_of(first)
        if cut > 0 and prefix[cut - 1] != "\n":
            cut = prefix.find("\n", cut) + 1
        while 0 < cut < len(prefix) and kept(cut) >= budget - 2 * step:
            cuts.append(cut)
            cut = prefix.find("\n", cut) + 1
        if not cuts:  # the cursor's line alone is longer than the budget
            return None
        texts = [prefix[cut : cut + self.edge_chars] for cut in cuts]
        chosen = self.remembered(cuts, texts, session, cache_salt, "prefix")
        if chosen is None:  # the best line start leaving room for `step` tokens of typing
            fresh = [i for i, cut in enumerate(cuts) if kept(cut) <= budget - step]
            chosen = min(fresh or [len(cuts) - 1], key=lambda i: (line_rank(prefix, cuts[i]), i))
        self.remember(cuts[chosen], texts[chosen], session, cache_salt, "prefix")
        return prefix[cuts[chosen] :]

    def clip_prefix_chars(
        self,
        prefix: str,
        max_chars: int,
        session: Hashable | None = None,
        cache_salt: str | None = None,
    ) -> str:
        """`clip_prefix_chars` that stays put while the user types: the last whole lines within
        `max_chars` characters, from a remembered line start (per session, else by its text)
        as long as it fits, moved by a quarter of `max_chars` when it must (Tabby's clip)."""
        key = None if session is None else ("chars", session)  # apart from the token window's
        # Every character is a token here. A range, not a list: bodies of a megabyte reach this
        # on the event loop, and a list of their offsets stalled it for ~0.2 s each.
        clipped = self.sticky_prefix(prefix, range(len(prefix)), max_chars, key, cache_salt)
        return clip_prefix_chars(prefix, max_chars) if clipped is None else clipped

    def clip_suffix(
        self,
        suffix: str,
        encoding: Encoded,
        budget: int,
        session: Hashable | None = None,
        cache_salt: str | None = None,
    ) -> str:
        """`suffix` up to a line end that keeps at most `budget` tokens, mirroring clip_prefix."""
        ends = [end for _, end in encoding.offsets]
        if len(ends) <= budget or budget <= 0:
            return clip_suffix(suffix, encoding, budget)
        step = self.step(budget)

        def kept(cut: int) -> int:  # tokens from the cursor to `cut`
            return bisect_right(ends, cut)

        # Line ends (just past a newline) from the longest window that fits down to budget - 2
        # steps tokens, in order.
        cuts, cut = [], suffix.rfind("\n", 0, ends[budget - 1]) + 1
        while cut > 0 and kept(cut) >= budget - 2 * step:
            cuts.append(cut)
            cut = suffix.rfind("\n", 0, cut - 1) + 1
        if not cuts:
            return clip_suffix(suffix, encoding, budget)
        texts = [suffix[max(0, cut - self.edge_chars) : cut] for cut in cuts]
        chosen = self.remembered(cuts, texts, session, cache_salt, "suffix")
        if chosen is None:  # the best line end keeping room for the cursor to move `step` down
            fresh = [i for i, cut in enumerate(cuts) if kept(cut) >= budget - step]
            chosen = min(fresh or [0], key=lambda i: (line_rank(suffix, cuts[i]), i))
        self.remember(cuts[chosen], texts[chosen], session, cache_salt, "suffix")
        return suffix[: cuts[chosen]]

    def remembered(
        self,
        cuts: list[int],
        texts: list[str],
        session: Hashable | None,
        cache_salt: str | None,
        side: str,
    ) -> int | None:
        """The index of the cut the session used last time (at the same offset first, else by
        its text), else of the first cut whose text a recent window had at its edge."""
        with self.lock:
            if session is not None and (last := self.sessions.get((session, side))) is not None:
                offset, text = last
                matching = [i for i, t in enumerate(texts) if t == text]
                if matching:
                    return next((i for i in matching if cuts[i] == offset), matching[0])
            return next(
                (i for i, t in enumerate(texts) if (cache_salt, side, t) in self.edges), None
            )

    def remember(
        self, cut: int, text: str, session: Hashable | None, cache_salt: str | None, side: str
    ) -> None:
        with self.lock:
            if session is not None:
                self.sessions[(session, side)] = (cut, text)
                self.sessions.move_to_end((session, side))
                if len(self.sessions) > self.max_sessions:
                    self.sessions.popitem(last=False)
            self.edges[(cache_salt, side, text)] = None
            self.edges.move_to_end((cache_salt, side, text))
            if len(self.edges) > self.max_edges:
                self.edges.popitem(last=False)
