"""The declarations tabby-agent sends with a completion, rebuilt from a package's own source.

With an editor whose language server answers "go to declaration", tabby-agent (its
`collectDeclarationSnippets`, default config) reads the symbols of the last `PREFIX_LINES` lines
before the cursor, from the cursor backwards, asks where each class, function or method is
declared, skips a declaration that lies in those lines (or is the cursor's own), and sends up to
`MAX_SNIPPETS` declarations' text, each cut to `MAX_CHARS` characters at a line end, as the Tabby
body's `segments.declarations`. The held-out files carry no editor, so this module answers the
language server's part from the package's files with `ast`: a name defined at the top level of
the cursor's file or of a module of the same package it imports the name from, and `self.name` /
`cls.name` of a method of the cursor's class. What a language server resolves beyond that (types
of other receivers, names re-exported through `__init__`) is not rebuilt, so this undercounts
what a real client sends rather than adding what it would not.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

MAX_SNIPPETS = 5  # tabby-agent's completion.prompt.fillDeclarations defaults
MAX_CHARS = 500
PREFIX_LINES = 20  # completion.prompt.maxPrefixLines: where it looks for symbols
SYMBOL = re.compile(r"(?:\b(self|cls)\.)?\b([A-Za-z_][A-Za-z0-9_]*)\b")


@dataclass(frozen=True)
class Declaration:
    filepath: str
    line: int  # 1-based: where it starts and ends
    end_line: int
    body: str


def declared(path: str, source: str, node: ast.AST) -> Declaration:
    """The declaration's text from its `def`/`class` line, cut as tabby-agent cuts it."""
    lines = source.splitlines(keepends=True)
    text = "".join(lines[node.lineno - 1 : node.end_lineno])
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        text = text[: text.rfind("\n") + 1] or text
    return Declaration(path, node.lineno, node.end_lineno or node.lineno, text)


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def parsed(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def top_level(path: str, source: str, tree: ast.Module | None) -> dict[str, Declaration]:
    if tree is None:
        return {}
    return {n.name: declared(path, source, n) for n in tree.body if isinstance(n, DEFINITIONS)}


@lru_cache(maxsize=256)
def module_definitions(path: str, source: str) -> dict[str, Declaration]:
    """A package module's top-level declarations, read once for all the cursors importing it."""
    return top_level(path, source, parsed(source))


def module_path(importer: str, module: str | None, level: int, files: dict[str, str]) -> str | None:
    """The file of `files` that `from <level dots><module> import ...` in `importer` reads.
    Keys are "<distribution>/<path in its archive>", e.g. "glom/glom/core.py"."""
    distribution, *folders = importer.split("/")[:-1]
    if level:
        if level - 1 > len(folders):
            return None
        folders = folders[: len(folders) - (level - 1)]
    else:
        folders = []
    parts = [*folders, *(module.split(".") if module else [])]
    for candidate in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
        if f"{distribution}/{candidate}" in files:
            return f"{distribution}/{candidate}"
    return None


def imported(path: str, tree: ast.Module, files: dict[str, str]) -> dict[str, Declaration]:
    """Names the file imports from modules of its own package, with their declarations."""
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = module_path(path, node.module, node.level, files)
        if target is None:
            continue
        definitions = module_definitions(target, files[target])
        for alias in node.names:
            if alias.name in definitions:
                found[alias.asname or alias.name] = definitions[alias.name]
    return found


def methods_of_enclosing_class(
    path: str, source: str, tree: ast.Module, line: int
) -> dict[str, Declaration]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.lineno <= line <= (node.end_lineno or 0):
            return {
                m.name: declared(path, source, m)
                for m in node.body
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
    return {}


def declarations(path: str, prefix: str, suffix: str, files: dict[str, str]) -> list[Declaration]:
    """What tabby-agent would send as declarations at the cursor between `prefix` and `suffix`
    of the file `path` of the package whose files are `files`."""
    source = prefix + suffix
    tree = parsed(source)
    if tree is None:
        return []  # no language server resolves names in a file it cannot parse either
    cursor_line = prefix.count("\n") + 1
    first_looked_at = max(1, cursor_line - PREFIX_LINES)
    names = {**top_level(path, source, tree), **imported(path, tree, files)}
    members = methods_of_enclosing_class(path, source, tree, cursor_line)
    looked_at = "".join(prefix.splitlines(keepends=True)[first_looked_at - 1 :])
    found: list[Declaration] = []
    for match in reversed(list(SYMBOL.finditer(looked_at))):
        receiver, name = match.groups()
        declaration = members.get(name) if receiver else names.get(name)
        if declaration is None or declaration in found:
            continue
        if declaration.filepath == path and (
            declaration.line >= first_looked_at
            or declaration.line <= cursor_line <= declaration.end_line
        ):
            continue  # in the lines the client looked at, or the cursor's own
        found.append(declaration)
        if len(found) == MAX_SNIPPETS:
            break
    return found
