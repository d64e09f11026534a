"""Build step: write `stdlib_members.py`, the member table of the standard library's modules and
their public classes, which `types.py` reads to know what may follow `os.` or `Path(...).`.

Run `python -m service.semantic.build_stdlib_members` after a Python upgrade and commit the
output. Why a build step: the server must never import code to learn its members (importing user
code runs it; importing every stdlib module at start-up costs seconds and memory), so the table is
made once, here, from the standard library alone. Why a `.py` file: setup.py ships the modules of
`service.*` without a package-data entry, and the table is a plain literal.
"""

import ast
import importlib
import inspect
import sys
import textwrap
import warnings
from pathlib import Path

OUT = Path(__file__).with_name("stdlib_members.py")
# Modules with side effects on import (a browser, a window, a printed poem) or not for users.
SKIP = {"antigravity", "this", "idlelib", "turtledemo", "turtle", "tkinter", "__main__", "lib2to3"}
# Names every class has; stored once, added back when the table is read.
OBJECT_MEMBERS = sorted(dir(object))


def public_modules() -> list[str]:
    return sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)


def instance_attributes(cls: type) -> set[str] | None:
    """The attributes the class's methods (and its bases') assign on `self` (`self.x = ...`,
    `self.a, self.b = ...`, `self.n += 1`), read from their source with `ast`: `dir()` of a class
    cannot show what `__init__` sets. None when a Python class of its MRO has no readable source
    (its instances may hold attributes no table shows)."""
    found: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or not hasattr(klass, "__dict__") or "__dict__" not in dir(klass):
            continue  # C types and slotted classes: dir() lists every attribute
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            if klass.__module__ == "builtins" or not hasattr(
                sys.modules.get(klass.__module__), "__file__"
            ):
                continue  # a C type of the interpreter
            return None
        for node in ast.walk(tree):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AugAssign | ast.AnnAssign)
                else []
            )
            for target in targets:
                for part in ast.walk(target):
                    if (
                        isinstance(part, ast.Attribute)
                        and isinstance(part.value, ast.Name)
                        and part.value.id == "self"
                    ):
                        found.add(part.attr)
    return found


def class_members(cls: type) -> tuple[list[str], bool]:
    """Members beyond `object`'s (the class's own and those its methods set on instances), and
    whether that is all an instance may hold."""
    attributes = instance_attributes(cls)
    members = set(dir(cls)) | (attributes or set())
    return sorted(members - set(OBJECT_MEMBERS)), attributes is not None


def describe(name: str) -> dict | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a module missing on this platform is left out
        return None
    members = sorted(n for n in dir(module) if not n.startswith("__") or n == "__name__")
    classes, submodules = {}, {}
    for attr in members:
        value = getattr(module, attr, None)
        if attr.startswith("_"):
            continue
        if inspect.isclass(value):
            classes[attr] = f"{value.__module__}.{value.__qualname__}"
        elif inspect.ismodule(value) and value.__name__.split(".")[0] in sys.stdlib_module_names:
            submodules[attr] = value.__name__
    return {"members": members, "classes": classes, "modules": submodules}


def build() -> tuple[dict, dict, set]:
    modules, classes, open_classes = {}, {}, set()
    queue = public_modules()
    while queue:
        name = queue.pop()
        if name in modules:
            continue
        described = describe(name)
        if described is None:
            continue
        modules[name] = described
        module = sys.modules[name]
        for attr, qualified in described["classes"].items():
            if qualified not in classes:
                classes[qualified], closed = class_members(getattr(module, attr))
                if not closed:
                    open_classes.add(qualified)
        queue += [m for m in described["modules"].values() if m not in modules]
    return modules, classes, open_classes


def main() -> None:
    modules, classes, open_classes = build()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [
        f'"""Generated by `python -m service.semantic.build_stdlib_members` on Python {version}:',
        "do not edit. MODULES: module -> members, public classes (name -> qualified name) and",
        "submodules; CLASSES: qualified class name -> members beyond `object`'s (with what its",
        "methods set on `self`); OPEN_CLASSES: those whose instances may hold more (a base without",
        'readable source)."""',
        "",
        "# fmt: off",
        f"PYTHON = {version!r}",
        f"OBJECT_MEMBERS = {OBJECT_MEMBERS!r}",
        "MODULES = {",
        *(f"    {name!r}: {modules[name]!r}," for name in sorted(modules)),
        "}",
        "CLASSES = {",
        *(f"    {name!r}: {classes[name]!r}," for name in sorted(classes)),
        "}",
        f"OPEN_CLASSES = {sorted(open_classes)!r}",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"{OUT}: {len(modules)} modules, {len(classes)} classes, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
