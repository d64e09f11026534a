"""The import rules of docs/CONTRACTS.md ("Import rules"), checked on the source.

Every module of `service/`, `kernels/` (imported as `completion_kernels`), `training/` and
`benchmarks/` is parsed with `ast`; each import, lazy ones inside functions included, is an arrow
from the importing module's unit to the imported module's unit. A unit is a top-level module or
subpackage of `service` (`service.engine`, `service.app`, ...), or a whole part
(`completion_kernels`, `training`, `benchmarks`). No server starts and nothing is imported.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Folder -> the import name of its part (docs/CONTRACTS.md, "Import names").
PARTS = {
    "service": "service",
    "kernels": "completion_kernels",
    "training": "training",
    "benchmarks": "benchmarks",
}

SERVICE_TOP = {"service.app", "service.server", "service.__main__"}
# The units each unit may import (besides itself). Read bottom-up: a unit names only units above
# it in this table, so the table has no loop and neither does `service` between its parts.
ALLOWED: dict[str, set[str]] = {
    "completion_kernels": set(),
    "service": set(),  # service/__init__.py
    "service.secrets": set(),
    "service.prompt": set(),
    "service.cache": set(),
    "service.semantic": set(),
    "service.models": {"completion_kernels"},
    "service.engine": {"service.models", "completion_kernels"},
    "service.settings": {"service.secrets"},
    "service.logging_setup": {"service.secrets"},
    "service.middleware": {"service.secrets", "service.logging_setup", "service.settings"},
    "service.completion": {
        "service.engine",
        "service.prompt",
        "service.cache",
        "service.semantic",
        "service.secrets",
        "service.logging_setup",
    },
    "service.api": {
        "service.completion",
        "service.engine",
        "service.prompt",
        "service.cache",
        "service.semantic",
        "service.secrets",
        "service.middleware",
        "service.settings",
        "service.logging_setup",
    },
    # The composition root: builds the app from every part.
    **{top: {"service"} for top in SERVICE_TOP},
    # Training shares the model definitions and the rules that shape what is served: the
    # completion core (one way to build a job), the prompt and the secrets scrubber; end-to-end
    # evaluation builds the served app itself (its public entry: service.app, service.settings).
    "training": {
        "service.app",
        "service.settings",
        "service.models",
        "service.completion",
        "service.prompt",
        "service.secrets",
        "service.semantic",  # the semantic evaluation judges suggestions with its checks
        "completion_kernels",
    },
    # Benchmarks measure every part.
    "benchmarks": {"service", "completion_kernels", "training"},
}

# Arrows the rules forbid that are still in the code while issue 25's refactor is under way, as
# (importing module, imported unit). Remove an entry when its arrow goes: the test fails on an
# entry that no longer matches any arrow, so this list cannot go stale.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def module_names() -> dict[str, Path]:
    modules = {}
    for folder, name in PARTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name `module` imports; `from a import b` gives `a.b` (b may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def our_module(name: str) -> str | None:
    """The module of ours that `name` (a module, or a name inside one) lives in, if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def arrows() -> set[tuple[str, str]]:
    found = set()
    for module, path in MODULES.items():
        for name in imported_names(module, path):
            target = our_module(name)
            if target is not None and target != module:
                found.add((module, target))
    return found


def unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "service" and len(parts) > 1 else parts[0]


def allowed(source: str, target: str) -> bool:
    """Whether unit `source` may import unit `target`; naming `service` allows all of it."""
    if source == target:
        return True
    return any(target == rule or target.startswith(rule + ".") for rule in ALLOWED[source])


def forbidden_arrows() -> set[tuple[str, str]]:
    """(importing module, imported unit) of every arrow the rules forbid."""
    return {(a, unit(b)) for a, b in arrows() if not allowed(unit(a), unit(b))}


def module_cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The import loops between modules: strongly connected components (Tarjan) of two or more."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_unit_has_a_rule():
    # A new top-level module or subpackage of service must be placed in the table.
    assert {unit(m) for m in MODULES} <= set(ALLOWED)


def test_the_rules_have_no_loop():
    # `service` in a rule stands for every unit of the service below the composition root.
    below_root = [u for u in ALLOWED if u.startswith("service") and u not in SERVICE_TOP]
    edges = {
        (source, target)
        for source, rule in ALLOWED.items()
        for name in rule
        for target in (below_root if name == "service" else [name])
        if target != source
    }
    assert module_cycles(edges) == []


def test_no_arrow_the_rules_forbid():
    unexpected = sorted(forbidden_arrows() - KNOWN_EXCEPTIONS)
    assert unexpected == [], "imports that docs/CONTRACTS.md's import rules forbid"


def test_known_exceptions_still_exist():
    gone = sorted(KNOWN_EXCEPTIONS - forbidden_arrows())
    assert gone == [], "arrows fixed: remove them from KNOWN_EXCEPTIONS"


@pytest.mark.parametrize("part", ["service", "completion_kernels"])
def test_no_import_loop_between_modules(part):
    edges = {(a, b) for a, b in arrows() if a.split(".")[0] == part == b.split(".")[0]}
    assert module_cycles(edges) == []


def suite_files(folder: Path) -> Iterator[Path]:
    """The Python files of the test suite; tests/node holds the editor client's npm packages."""
    for path in sorted(folder.iterdir()):
        if path.is_dir() and path.name != "node":
            yield from suite_files(path)
        elif path.suffix == ".py":
            yield path


def test_helpers_come_from_tests_support():
    """Helpers the tests share live in tests/support/ (issue 25): no test file imports another
    test file, and no helper lives elsewhere in tests/."""
    stray = []
    for path in suite_files(ROOT / "tests"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for name in imported_names(module, path):
            if name.split(".")[0] != "tests" or name.split(".")[:2] == ["tests", "support"]:
                continue
            stray.append(f"{path.relative_to(ROOT)} imports {name}")
    assert stray == [], "import shared test helpers from tests.support"
