"""Names in scope at the cursor, and the definitions that enclose it, read from a tree-sitter tree.

API:
- `enclosing(tree, anchor_byte, cursor_indent) -> tuple[Node, ...]`: the function, class and block
  statements around the cursor, outermost first.
- `names_in_scope(tree, cursor_byte, scopes) -> frozenset[str]`: what a name at the cursor may
  resolve to: builtins, module-level bindings anywhere in the file (a function body sees globals
  bound after it), the bindings of each enclosing function (parameters, assignments, loop and
  comprehension targets, `with ... as`, `except ... as`, imports, `global`/`nonlocal`, nested
  definitions, walrus, `match` captures), a class body's own names only directly in that body (not in its
  methods: Python's rule), and the variables of comprehensions and lambdas around the cursor.

Python's scoping is lexical, so reading the tree is the whole analysis (the bindings found by a
tree-sitter query, in C); nothing is imported.
"""

import builtins

from tree_sitter import Node, Query, QueryCursor, Tree

from service.semantic.syntax import LANGUAGE

BUILTINS = frozenset(dir(builtins))
DEFINITIONS = ("function_definition", "class_definition")
BLOCKS = (
    "if_statement",
    "for_statement",
    "while_statement",
    "with_statement",
    "try_statement",
    "match_statement",
)
# Nodes whose bindings belong to their own scope, not to the one being walked.
NEW_SCOPES = (*DEFINITIONS, "lambda", "list_comprehension", "set_comprehension",
              "dictionary_comprehension", "generator_expression")  # fmt: skip
COMPREHENSIONS = NEW_SCOPES[3:]


def text(node: Node) -> str:
    return node.text.decode(errors="replace") if node.text is not None else ""


def enclosing(tree: Tree, anchor_byte: int, cursor_indent: int) -> tuple[Node, ...]:
    """Definitions and blocks around the cursor, outermost first.

    `anchor_byte`: the end of the last code before the cursor, because a cursor on a fresh
    indented line lies past the end of the block it belongs to (tree-sitter ends a block at its
    last statement); a statement counts only if its header is indented less than the cursor.
    """
    anchor = tree.root_node.descendant_for_byte_range(max(anchor_byte - 1, 0), anchor_byte)
    found: list[Node] = []
    node = anchor
    while node is not None:
        if node.type in DEFINITIONS + BLOCKS and node.start_point.column < cursor_indent:
            found.append(node)
        node = node.parent
    return tuple(reversed(found))


def targets(node: Node, out: set[str]) -> None:
    """Names bound by an assignment target: `a`, `a, (b, *c)`, `[d, e]`; not `x.y` or `x[0]`."""
    if node.type == "identifier":
        out.add(text(node))
    elif node.type in ("pattern_list", "tuple_pattern", "list_pattern", "tuple", "list",
                       "list_splat_pattern", "parenthesized_expression", "as_pattern_target",
                       "expression_list", "list_splat"):  # fmt: skip
        for child in node.named_children:
            targets(child, out)


def parameters(node: Node) -> set[str]:
    """The names a function's `parameters` node binds."""
    out: set[str] = set()
    _parameters(node, out)
    return out


def _parameters(node: Node, out: set[str]) -> None:
    for param in node.named_children:
        if param.type == "identifier":
            out.add(text(param))
        elif param.type in ("list_splat_pattern", "dictionary_splat_pattern", "typed_parameter"):
            for child in param.named_children:
                if child.type == "identifier":
                    out.add(text(child))
                elif child.type in ("list_splat_pattern", "dictionary_splat_pattern"):
                    _parameters(child, out)
        elif param.type in ("default_parameter", "typed_default_parameter"):
            name = param.child_by_field_name("name")
            if name is not None:
                out.add(text(name))


def _binding(node: Node, out: set[str]) -> None:
    """The names one node binds in the scope that contains it (its children are walked apart)."""
    kind = node.type
    if kind in DEFINITIONS:
        name = node.child_by_field_name("name")
        if name is not None:
            out.add(text(name))
    elif kind in ("assignment", "augmented_assignment", "for_statement", "for_in_clause"):
        left = node.child_by_field_name("left")
        if left is not None:
            targets(left, out)
    elif kind == "named_expression":
        name = node.child_by_field_name("name")
        if name is not None:
            out.add(text(name))
    elif kind == "as_pattern":  # with ... as x, except E as x
        for child in node.named_children:
            if child.type == "as_pattern_target":
                targets(child, out)
    elif kind == "import_statement":
        for name in node.children_by_field_name("name"):
            if name.type == "aliased_import":
                out.add(text(name.child_by_field_name("alias")))
            else:  # `import os.path` binds `os`
                out.add(text(name).split(".")[0])
    elif kind == "import_from_statement":
        for name in node.children_by_field_name("name"):
            if name.type == "aliased_import":
                out.add(text(name.child_by_field_name("alias")))
            else:
                out.add(text(name).split(".")[-1])
    elif kind in ("global_statement", "nonlocal_statement"):
        out.update(text(child) for child in node.named_children if child.type == "identifier")


# What binds a name, found by tree-sitter's query engine in C: a Python walk over every node of a
# 2,000-line function cost ~5 ms a keystroke; the captures are a few hundred.
_BINDINGS = Query(
    LANGUAGE,
    """
    (function_definition name: (identifier) @name)
    (class_definition name: (identifier) @name)
    (assignment left: (_) @target)
    (augmented_assignment left: (_) @target)
    (for_statement left: (_) @target)
    (as_pattern_target) @target
    (named_expression name: (identifier) @walrus)
    (import_statement) @statement
    (import_from_statement) @statement
    (global_statement) @statement
    (nonlocal_statement) @statement
    (case_pattern (dotted_name) @capture)
    (keyword_pattern (dotted_name) @capture)
    (splat_pattern (identifier) @walrus)
    (case_pattern (as_pattern (identifier) @walrus))
    """,
)


def owner(node: Node) -> Node | None:
    """The scope a binding belongs to: the nearest enclosing function, class, lambda or
    comprehension; None for the module."""
    node = node.parent
    while node is not None and node.type not in NEW_SCOPES:
        node = node.parent
    return node


def scope_bindings(scope: Node) -> set[str]:
    """Names bound directly in one scope: a module, a class body or a function (with its
    parameters), not inside nested functions, classes, lambdas or comprehensions."""
    out: set[str] = set()
    if scope.type == "function_definition":
        params = scope.child_by_field_name("parameters")
        if params is not None:
            _parameters(params, out)
    owner_id = None if scope.type == "module" else scope.id
    body = scope.child_by_field_name("body") if scope.type in DEFINITIONS else scope
    if body is None:
        return out
    query = QueryCursor(_BINDINGS)
    for statement in body.children:
        definition = statement
        if statement.type == "decorated_definition":
            definition = statement.child_by_field_name("definition") or statement
        if definition.type in DEFINITIONS:
            # A definition's body is its own scope: not queried (most of a module's nodes).
            _binding(definition, out)
            continue
        for kind, nodes in query.captures(statement).items():
            for node in nodes:
                # A definition's name is bound around it: its owner starts above the definition.
                scope_node = owner(node.parent if kind == "name" else node)
                if (scope_node.id if scope_node is not None else None) != owner_id:
                    continue
                if kind in ("name", "walrus"):
                    out.add(text(node))
                elif kind == "capture":  # `case x`, `case str(x)`; `case Color.RED` is a value
                    if node.named_child_count == 1:
                        out.add(text(node))
                elif kind == "target":
                    targets(node, out)
                else:
                    _binding(node, out)
    return out


def names_in_scope(tree: Tree, cursor_byte: int, scopes: tuple[Node, ...]) -> frozenset[str]:
    names = set(BUILTINS) | scope_bindings(tree.root_node)
    definitions = [node for node in scopes if node.type in DEFINITIONS]
    for depth, node in enumerate(definitions):
        # A class body's names are visible in that body only, not in its methods.
        if node.type == "function_definition" or depth == len(definitions) - 1:
            names |= scope_bindings(node)
    # Comprehensions and lambdas the cursor is inside: their variables.
    node = tree.root_node.descendant_for_byte_range(max(cursor_byte - 1, 0), cursor_byte)
    while node is not None:
        if node.type in COMPREHENSIONS:
            for clause in node.named_children:
                if clause.type == "for_in_clause":
                    _binding(clause, names)
        elif node.type == "lambda":
            params = node.child_by_field_name("parameters")
            if params is not None:
                _parameters(params, names)
        node = node.parent
    return frozenset(names)
