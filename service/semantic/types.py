"""The type of the expression before `.` at the cursor, where it is cheap to know, and its members.

API:
- `receiver_before_dot(prefix) -> tuple[str, str] | None`: (`expr`, `partial`) when the cursor
  follows `expr.partial` (`partial` may be empty); None elsewhere.
- `FileIndex(tree)`: the file's classes, functions and imports, looked up once per analysis.
- `infer(expr, index, scopes, class_node) -> KnownType | None`: the type of `expr` at the cursor.
- `members(t: KnownType, index) -> frozenset[str]`: what may follow `expr.`, as far as known.
- `complete_members(t, index) -> frozenset[str] | None`: the same where it is all that may follow
  (what the constraint and the checks use); None where more may exist than the tables show.

Known: literals and builtin constructor calls (`"a"`, `[..]`, `dict()`); annotations
(`x: Foo`, `def f(x: str)`); `self` in a class (its methods and the attributes assigned anywhere in
it, plus its bases' when they are classes in the file or in the standard library); classes
defined in the file; standard-library modules imported in the file and their classes (from the
build-time table `stdlib_members.py`; nothing is imported to learn members); return annotations of
functions in the file; a variable's last assignment in the cursor's scope. Anything else is
unknown (None): the caller then constrains nothing.
"""

import builtins
import functools
import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from tree_sitter import Node, Query, QueryCursor, Tree

from service.semantic import stdlib_members
from service.semantic.scope import DEFINITIONS, owner, parameters, targets, text
from service.semantic.syntax import LANGUAGE, new_parser

Kind = Literal["builtin", "module", "stdlib_class", "class"]


@dataclass(frozen=True)
class KnownType:
    kind: Kind
    name: str  # builtin name, module name, qualified stdlib class, or a class defined in the file


BUILTIN_TYPES = {
    name: KnownType("builtin", name)
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and not name.startswith("_")
}
LITERALS = {
    "string": "str",
    "concatenated_string": "str",
    "integer": "int",
    "float": "float",
    "true": "bool",
    "false": "bool",
    "list": "list",
    "list_comprehension": "list",
    "dictionary": "dict",
    "dictionary_comprehension": "dict",
    "set": "set",
    "set_comprehension": "set",
    "tuple": "tuple",
    "generator_expression": "generator",
}
OPEN_CLASSES = frozenset(stdlib_members.OPEN_CLASSES)
# Annotations that say nothing about the value's members.
ANY_TYPES = {"typing.Any", "typing_extensions.Any"}
# Names of classes written to be completed by others (`FooMixin`, `BaseFoo` with abstract
# methods): their methods use attributes that the classes deriving from them set.
ABSTRACT_MARKERS = ("abstractmethod", "abc.abstractmethod")
# A class that defines it answers any attribute (object's `__getattribute__` does not count).
DYNAMIC_MEMBERS = "__getattr__"
# What instances of a class defined in Python have beyond `object`'s members.
INSTANCE_MEMBERS = ("__dict__", "__module__", "__weakref__")
# Builtin types whose call is not an instance of them: `super()` is a proxy to the bases,
# `type(x)` is x's class.
NOT_CONSTRUCTORS = {"super", "type"}
MAX_DEPTH = 6  # `a = b; b = c; ...` chains: past this it is not cheap any more

_IDENTIFIER_TAIL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_EXPRESSION_PARSER = new_parser()


def receiver_before_dot(prefix: str) -> tuple[str, str] | None:
    """Split `... expr.partial` at the cursor; the expression is a chain of names, calls,
    subscripts and literals (scanned backwards with brackets balanced)."""
    tail = _IDENTIFIER_TAIL.search(prefix[-200:])
    partial = tail.group() if tail else ""
    end = len(prefix) - len(partial)
    if end == 0 or prefix[end - 1] != ".":
        return None
    i = end - 1  # the dot
    depth, quote = 0, ""
    j = i
    while j > 0:
        c = prefix[j - 1]
        if quote:
            if c == quote and (j < 2 or prefix[j - 2] != "\\"):
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in _CLOSERS:
            depth += 1
        elif c in "([{":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and not (c.isalnum() or c in "_."):
            break
        j -= 1
        if i - j > 500:  # a receiver this long is not cheap
            return None
    expr = prefix[j:i].strip()
    if not expr or expr[0].isdigit() and "." not in expr and expr.isdigit():
        return None  # `1.` is a float being typed, not an attribute
    return expr, partial


def _parse_expression(expr: str) -> Node | None:
    root = _EXPRESSION_PARSER.parse(expr.encode()).root_node
    if root.has_error or root.named_child_count != 1:
        return None
    statement = root.named_children[0]
    if statement.type != "expression_statement" or statement.named_child_count != 1:
        return None
    return statement.named_children[0]


def _module_names(imports: list[Node]) -> dict[str, KnownType]:
    """Names bound by the file's imports of standard-library modules and classes."""
    table, found = stdlib_members.MODULES, {}
    for node in imports:
        if node.type == "import_statement":
            for name in node.children_by_field_name("name"):
                if name.type == "aliased_import":
                    module = _dotted_module(text(name.child_by_field_name("name")))
                    if module is not None:
                        found[text(name.child_by_field_name("alias"))] = module
                else:
                    root = text(name).split(".")[0]
                    if root in table:
                        found[root] = KnownType("module", root)
        elif node.type == "import_from_statement":
            module_node = node.child_by_field_name("module_name")
            known_module = _dotted_module(text(module_node)) if module_node is not None else None
            if known_module is not None:
                for name in node.children_by_field_name("name"):
                    if name.type == "aliased_import":
                        imported = text(name.child_by_field_name("name"))
                        bound = text(name.child_by_field_name("alias"))
                    else:
                        imported = bound = text(name)
                    known = _module_attribute(known_module, imported)
                    if known is not None:
                        found[bound] = known
    return found


# Definitions and imports, found by tree-sitter's query engine in C (a Python walk over every
# node of a 3,000-line file costs ~10 ms).
_DEFINITIONS = Query(
    LANGUAGE,
    """
    (class_definition) @class
    (function_definition) @function
    (import_statement) @import
    (import_from_statement) @import
    """,
)


def stdlib_module(dotted: str) -> KnownType | None:
    """The standard-library module `dotted` names (`os.path` is `posixpath` here), else None."""
    return _dotted_module(dotted)


def _dotted_module(dotted: str) -> KnownType | None:
    """`os.path` is `posixpath` here: submodules are found through their parents' attributes."""
    if dotted in stdlib_members.MODULES:
        return KnownType("module", dotted)
    head, *rest = dotted.split(".")
    known = KnownType("module", head) if head in stdlib_members.MODULES else None
    for attr in rest:
        known = _module_attribute(known, attr) if known is not None else None
    return known if known is not None and known.kind == "module" else None


def _module_attribute(module: KnownType, attr: str) -> KnownType | None:
    entry = stdlib_members.MODULES.get(module.name)
    if entry is None:
        return None
    if attr in entry["classes"]:
        return KnownType("stdlib_class", entry["classes"][attr])
    if attr in entry["modules"]:
        return KnownType("module", entry["modules"][attr])
    full = f"{module.name}.{attr}"
    return KnownType("module", full) if full in stdlib_members.MODULES else None


class FileIndex:
    """The file's classes, functions and standard-library imports, from one query over the tree,
    built on first use and shared by one analysis's inference and member lookup."""

    def __init__(self, tree: Tree):
        self.tree = tree
        self._bindings: dict[int, tuple[dict[str, list[Node]], frozenset[str]]] = {}

    @cached_property
    def _definitions(self) -> dict[str, list[Node]]:
        return QueryCursor(_DEFINITIONS).captures(self.tree.root_node)

    @cached_property
    def classes(self) -> dict[str, Node]:
        """By name; nested ones too (a cheap over-approximation)."""
        found = self._definitions.get("class", [])
        return {text(n.child_by_field_name("name")): n for n in found}

    def bindings(self, scope: Node) -> tuple[dict[str, list[Node]], frozenset[str]]:
        """`_scope_bindings(scope)`, read once per scope: every name looked up reuses it."""
        if scope.id not in self._bindings:
            self._bindings[scope.id] = _scope_bindings(scope)
        return self._bindings[scope.id]

    @cached_property
    def base_names(self) -> frozenset[str]:
        """The last part of every base named by a class of the file (`Base`, `mod.Base`)."""
        names = set()
        for cls in self.classes.values():
            bases = cls.child_by_field_name("superclasses")
            for base in bases.named_children if bases is not None else ():
                if base.type in ("identifier", "attribute"):
                    names.add(text(base).split(".")[-1])
        return frozenset(names)

    @cached_property
    def functions(self) -> dict[str, Node]:
        found = self._definitions.get("function", [])
        return {text(n.child_by_field_name("name")): n for n in found}

    @cached_property
    def modules(self) -> dict[str, KnownType]:
        imports = sorted(self._definitions.get("import", []), key=lambda n: n.start_byte)
        return _module_names(imports)


@dataclass(frozen=True)
class _Context:
    """Where one lookup happens: the file, and the scopes and class around the expression."""

    index: FileIndex
    scopes: tuple[Node, ...]
    class_node: Node | None

    @property
    def tree(self) -> Tree:
        return self.index.tree

    def modules(self) -> dict[str, KnownType]:
        return self.index.modules

    def classes(self) -> dict[str, Node]:
        return self.index.classes

    def functions(self) -> dict[str, Node]:
        return self.index.functions


def _annotation_type(node: Node | None, ctx: _Context) -> KnownType | None:
    """`Foo`, `str`, `"Foo"`, `Optional[Foo]`/`Foo | None` (the non-None part), `mod.Cls`."""
    if node is None:
        return None
    if node.type == "type":
        return _annotation_type(node.named_children[0] if node.named_children else None, ctx)
    source = text(node).strip("\"'")
    source = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2", source)
    parts = [p.strip() for p in source.split("|") if p.strip() != "None"]
    if len(parts) != 1:
        return None
    name = re.sub(r"\[.*\]$", "", parts[0])  # list[int] -> list
    known = _name_type(name, ctx, depth=MAX_DEPTH - 1) if re.fullmatch(r"[\w.]+", name) else None
    return None if known is not None and known.name in ANY_TYPES else known


# What a variable is bound to in a scope: its type where every binding agrees on one, else None
# (bound, but to something unknown: a loop target, a parameter without annotation, two types).
UNBOUND = object()


def _scope_binding(name: str, scope: Node, ctx: _Context, depth: int) -> object:
    """`name`'s type in one scope (UNBOUND when the scope does not bind it): the annotation of a
    parameter, else the one type all its assignments in the scope agree on."""
    if scope.type == "function_definition":
        params = scope.child_by_field_name("parameters")
        for param in params.named_children if params is not None else ():
            pname = param.child_by_field_name("name")
            if param.type == "typed_parameter":
                pname = param.named_children[0]
            if pname is not None and text(pname) == name:
                return _annotation_type(param.child_by_field_name("type"), ctx)
        if params is not None and name in parameters(params):  # `x`, `*args`, `**kw`: untyped
            return None
    assigned, bound = ctx.index.bindings(scope)
    types: list[KnownType | None] = []
    for node in assigned.get(name, ()):
        annotated = _annotation_type(node.child_by_field_name("type"), ctx)
        right = node.child_by_field_name("right")
        types.append(
            annotated or (_node_type(right, ctx, depth + 1) if right is not None else None)
        )
    if name in bound:
        types.append(None)  # a loop target, `with ... as`, a tuple's part: no type known
    if not types:
        return UNBOUND
    return types[0] if all(t == types[0] for t in types) else None


# What binds a name in a scope, found by tree-sitter's query engine in C (a Python walk over an
# 800-line module cost 6 ms of the analysis's 10 ms budget).
_BINDING_NODES = Query(
    LANGUAGE,
    """
    (assignment) @assignment
    (for_statement left: (_) @target)
    (as_pattern_target) @target
    (named_expression name: (identifier) @walrus)
    """,
)


def _scope_bindings(scope: Node) -> tuple[dict[str, list[Node]], frozenset[str]]:
    """One scope's `name = ...` assignments by name, and the names it binds otherwise (tuple
    targets, loop targets, `with`/`except ... as`, walrus); nested scopes are their own."""
    assigned: dict[str, list[Node]] = {}
    bound: set[str] = set()
    owner_id = None if scope.type == "module" else scope.id
    body = scope.child_by_field_name("body") if scope.type in DEFINITIONS else scope
    query = QueryCursor(_BINDING_NODES)
    for statement in body.children if body is not None else ():
        if statement.type in (*DEFINITIONS, "decorated_definition"):
            continue  # its own scope (its name is the index's)
        for kind, nodes in query.captures(statement).items():
            for node in nodes:
                scope_node = owner(node)
                if (scope_node.id if scope_node is not None else None) != owner_id:
                    continue
                if kind == "assignment":
                    left = node.child_by_field_name("left")
                    if left is not None and left.type == "identifier":
                        assigned.setdefault(text(left), []).append(node)
                    elif left is not None:  # `a, b = ...`
                        targets(left, bound)
                elif kind == "walrus":
                    bound.add(text(node))
                else:  # `for x in ...`, `with ... as x`, `except E as x`
                    targets(node, bound)
    return assigned, frozenset(bound)


def _value_type(name: str, ctx: _Context, depth: int) -> object:
    """A variable's type from its bindings in the cursor's scopes, innermost first, then the
    module: UNBOUND when no scope binds it."""
    for scope in reversed((ctx.tree.root_node, *ctx.scopes)):
        if scope.type not in ("module", "function_definition", "class_definition"):
            continue
        found = _scope_binding(name, scope, ctx, depth)
        if found is not UNBOUND:
            return found
    return UNBOUND


def _name_type(name: str, ctx: _Context, depth: int) -> KnownType | None:
    """The type of the value a (possibly dotted) name denotes."""
    if depth > MAX_DEPTH:
        return None
    head, _, rest = name.partition(".")
    # A variable shadows a class, module or builtin of the same name (`type = ...`, `def f(msg)`).
    local = _value_type(head, ctx, depth) if head != "self" else UNBOUND
    if head == "self" and ctx.class_node is not None:
        known = KnownType("class", text(ctx.class_node.child_by_field_name("name")))
    elif local is not UNBOUND:
        known = local  # type: ignore[assignment]
    elif head in ctx.classes():
        known = KnownType("class", head)
    elif head in ctx.modules():
        known = ctx.modules()[head]
    else:
        known = BUILTIN_TYPES.get(head)
    for attr in rest.split(".") if rest else ():
        if known is None:
            return None
        known = _attribute_type(known, attr, ctx, depth)
    return known


def _enclosing_functions(node: Node) -> tuple[Node, ...]:
    found, current = [], node.parent
    while current is not None:
        if current.type in DEFINITIONS:
            found.append(current)
        current = current.parent
    return tuple(reversed(found))


def _attribute_type(owner: KnownType, attr: str, ctx: _Context, depth: int) -> KnownType | None:
    """A module's attribute; or a file class's attribute: a property's return annotation, or the
    annotation or value of `attr = ...` / `self.attr = ...` anywhere in the class (the value read
    in the scope of the method that assigns it)."""
    if owner.kind == "module":
        return _module_attribute(owner, attr)
    if owner.kind != "class" or owner.name not in ctx.classes():
        return None
    cls = ctx.classes()[owner.name]
    body = cls.child_by_field_name("body")
    stack = [body] if body is not None else []
    while stack:
        node = stack.pop()
        if node.type == "decorated_definition" and node.parent == body:
            definition = node.child_by_field_name("definition")
            name = definition.child_by_field_name("name") if definition is not None else None
            decorators = {text(d).strip("@ ") for d in node.named_children if d.type == "decorator"}
            if name is not None and text(name) == attr and "property" in decorators:
                return _annotation_type(definition.child_by_field_name("return_type"), ctx)
        if node.type == "assignment":
            left = node.child_by_field_name("left")
            target = text(left) if left is not None else ""
            if target in (attr, f"self.{attr}"):
                annotated = _annotation_type(node.child_by_field_name("type"), ctx)
                right = node.child_by_field_name("right")
                if annotated is not None or right is None:
                    return annotated
                where = _Context(ctx.index, _enclosing_functions(node), cls)
                return _node_type(right, where, depth + 1)
        stack.extend(node.children)
    return None


def _call_type(function: Node, ctx: _Context, depth: int) -> KnownType | None:
    """`Foo(...)` is a Foo; `f(...)` is f's return annotation when f is defined in the file."""
    name = text(function)
    if re.fullmatch(r"[\w.]+", name) is None:
        return None
    callee = _name_type(name, ctx, depth + 1)
    if callee is not None and callee.kind in ("class", "stdlib_class"):
        return callee  # the name denoted a class: calling it builds one
    if (
        callee is not None
        and callee.kind == "builtin"
        and name.split(".")[-1] == callee.name
        and callee.name not in NOT_CONSTRUCTORS
    ):
        return callee
    last = name.split(".")[-1]
    function_node = ctx.functions().get(last)
    if function_node is not None:
        return _annotation_type(function_node.child_by_field_name("return_type"), ctx)
    return None


def _node_type(node: Node, ctx: _Context, depth: int) -> KnownType | None:
    if depth > MAX_DEPTH:
        return None
    if node.type in LITERALS:
        kind = LITERALS[node.type]
        if node.type == "string" and text(node)[:1] in "bB":
            kind = "bytes"
        return BUILTIN_TYPES.get(kind)
    if node.type in ("identifier", "attribute"):
        known = _name_type(text(node), ctx, depth + 1)
        # A bare class name denotes the class object; its members are the same table.
        return known
    if node.type == "call":
        return _call_type(node.child_by_field_name("function"), ctx, depth)
    if node.type == "parenthesized_expression" and node.named_child_count == 1:
        return _node_type(node.named_children[0], ctx, depth + 1)
    return None


def infer(
    expr: str, index: FileIndex, scopes: tuple[Node, ...], class_node: Node | None
) -> KnownType | None:
    node = _parse_expression(expr)
    if node is None:
        return None
    return _node_type(node, _Context(index, scopes, class_node), 0)


_SELF_ATTRIBUTES = Query(
    LANGUAGE,
    """
    (assignment left: (attribute) @target)
    (augmented_assignment left: (attribute) @target)
    (assignment left: (pattern_list (attribute) @target))
    (assignment left: (tuple_pattern (attribute) @target))
    """,
)


def _class_members(cls: Node, ctx: _Context, seen: set[str]) -> set[str]:
    """Methods, class attributes and attributes assigned as `self.x = ...` anywhere in the class,
    and the members of its bases when they are known. The statements of the body are read
    directly; the `self.x` assignments, spread over every method, by a query (C): a Python walk
    over a 1,000-line class cost ~7 ms."""
    out: set[str] = set()
    body = cls.child_by_field_name("body")
    for statement in body.children if body is not None else ():
        if statement.type == "decorated_definition":
            statement = statement.child_by_field_name("definition") or statement
        if statement.type in DEFINITIONS:
            out.add(text(statement.child_by_field_name("name")))
        elif statement.type == "expression_statement":
            for node in statement.named_children:
                while node is not None and node.type == "assignment":  # `a = b = ...` too
                    left = node.child_by_field_name("left")
                    if left is not None and left.type == "identifier":
                        out.add(text(left))
                    node = node.child_by_field_name("right")
    targets = QueryCursor(_SELF_ATTRIBUTES).captures(body).get("target", []) if body else []
    for target in targets:
        obj = target.child_by_field_name("object")
        if obj is not None and text(obj) == "self":
            out.add(text(target.child_by_field_name("attribute")))
    bases = cls.child_by_field_name("superclasses")
    for base in bases.named_children if bases is not None else ():
        if base.type == "keyword_argument":
            continue
        known = _name_type(text(base), ctx, 1) if base.type in ("identifier", "attribute") else None
        if known is not None and known.name not in seen:
            seen.add(known.name)
            out |= _members(known, ctx, seen)
    return out


def _members(known: KnownType, ctx: _Context, seen: set[str]) -> frozenset[str]:
    object_members = set(stdlib_members.OBJECT_MEMBERS)
    if known.kind == "builtin":
        return frozenset(dir(getattr(builtins, known.name)))
    if known.kind == "module":
        entry = stdlib_members.MODULES.get(known.name)
        return frozenset(entry["members"]) if entry else frozenset()
    if known.kind == "stdlib_class":
        return frozenset(object_members | set(stdlib_members.CLASSES.get(known.name, ())))
    cls = ctx.classes().get(known.name)
    if cls is None:
        return frozenset()
    own = _class_members(cls, ctx, seen | {known.name})
    return frozenset(object_members | set(INSTANCE_MEMBERS) | own)


def members(known: KnownType, index: FileIndex) -> frozenset[str]:
    return _members(known, _Context(index, (), None), set())


@functools.cache
def submodules(module: str) -> frozenset[str]:
    """A standard-library package's submodules (`http`: `client`, `server`, ...): each is an
    attribute once something imports it, which the build-time table cannot list. Read from the
    package's folder; no module is imported to learn them (a dotted name's parents are)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return frozenset()
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    return frozenset(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations))


def _is_abstract(cls: Node) -> bool:
    """A class with an `@abstractmethod`, or deriving from `ABC` directly."""
    bases = cls.child_by_field_name("superclasses")
    if bases is not None and any(text(b) in ("ABC", "abc.ABC") for b in bases.named_children):
        return True
    body = cls.child_by_field_name("body")
    for statement in body.children if body is not None else ():
        if statement.type == "decorated_definition":
            decorators = {
                text(d).strip("@ ") for d in statement.named_children if d.type == "decorator"
            }
            if decorators & set(ABSTRACT_MARKERS):
                return True
    return False


def complete_members(
    known: KnownType, index: FileIndex, seen: frozenset[str] = frozenset()
) -> frozenset[str] | None:
    """`members(known)` where they are all that may follow `expr.`, else None: the constraint
    and the checks then say nothing rather than forbid a real attribute. Complete: builtins,
    standard-library modules (with their submodules) and classes whose table holds what their
    methods set on `self` (not OPEN_CLASSES); a class of the file with no metaclass, no
    `__getattr__`, no subclass in the file, neither a mixin nor abstract (their methods use
    what the classes deriving from them set through `self`) and only complete bases."""
    found = members(known, index)
    if not found:
        return None
    if known.kind == "stdlib_class":
        return None if known.name in OPEN_CLASSES else found
    if known.kind == "module":
        return found | submodules(known.name)
    if known.kind != "class":
        return found
    cls = index.classes.get(known.name)
    if cls is None or DYNAMIC_MEMBERS in found:
        return None
    if not seen and known.name in index.base_names:
        return None  # (a base's own subclass is the class being asked about: that one is fine)
    if known.name.endswith("Mixin") or _is_abstract(cls):
        return None
    bases = cls.child_by_field_name("superclasses")
    for base in bases.named_children if bases is not None else ():
        if base.type == "keyword_argument":
            return None  # a metaclass may add anything
        if text(base) == "object":
            continue
        base_type = infer(text(base), index, (), None)
        if base_type is None or base_type.name in seen | {known.name}:
            return None
        if complete_members(base_type, index, seen | {known.name}) is None:
            return None
    return found
