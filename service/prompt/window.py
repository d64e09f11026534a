"""The context window around the cursor: token budgets for prefix, suffix and snippets.

Cuts fall on line boundaries, so the model never sees half a line at the edge of its context
(which it would take for the start of a file). Budgets are counted on the tokenizer's own
encoding; re-encoding the kept text can differ by a token at the seam, which a budget tolerates.
"""

from dataclasses import dataclass

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
