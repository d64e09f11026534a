"""Code-aware post-processing (service/semantic/postprocess.py, style.py, unsafe.py): plain
Python snippets as fixtures; the cursor is where `|` stands in (prefix, suffix) pairs."""

import pytest

from service.semantic.postprocess import (
    clean,
    cut_at_scope_end,
    drop_closing_brackets,
    drop_repeated_lines,
    drop_repeated_runs,
    drop_unfinished_tail,
    is_substantive,
)
from service.semantic.style import FileStyle, adapt_style, detect_style
from service.semantic.unsafe import Finding, introduced, unsafe_patterns


def split(source: str) -> tuple[str, str]:
    prefix, suffix = source.split("|")
    return prefix, suffix


def test_cut_at_scope_end():
    prefix = "def f(x):\n    y = 1\n    "
    text = "return y\n\ndef g():\n    pass"
    assert cut_at_scope_end(text, prefix) == "return y"
    # Inside the block it goes on; a deeper line stays.
    assert cut_at_scope_end("if y:\n        z = 2\n    return z", prefix) == text_block()
    assert cut_at_scope_end("x = 1", "") == "x = 1"


def text_block() -> str:
    return "if y:\n        z = 2\n    return z"


def test_drop_repeated_lines():
    prefix, suffix = split("def f():\n    a = 1\n    |\n    return a\n")
    assert drop_repeated_lines("b = 2\n    a = 3", prefix, suffix) == "b = 2\n    a = 3"
    assert drop_repeated_lines("b = 2\n    b = 2\n    c = 3", prefix, suffix) == "b = 2\n    c = 3"
    # The model started re-typing the code after the cursor: it ends before it.
    assert drop_repeated_lines("b = 2\n    return a\n", prefix, suffix) == "b = 2"
    # A line continuing the cursor's line is never judged as a repeat.
    prefix, suffix = split("x = 1\nx = |\n")
    assert drop_repeated_lines("1", prefix, suffix) == "1"
    assert drop_repeated_lines("b = 2", prefix, suffix) == "b = 2"


def test_drop_repeated_runs():
    """The model's loop over a block (the semantic evaluation on deepdiff's diff.py)."""
    loop = "if a:\n    return\nif b:\n    return\nif a:\n    return\nif b:"
    assert drop_repeated_runs(loop) == "if a:\n    return\nif b:\n    return"
    tests = "assert f(1) == 1\nassert f(2) == 2\nassert f(1) == 1"  # one line again: kept
    assert drop_repeated_runs(tests) == tests


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # max_tokens cut these (the held-out packages in the semantic evaluation):
        ("a = 1\n        self.b = 2\n        self.", "a = 1\n        self.b = 2"),
        ("a = 1\n        return f(a,\n            b", "a = 1"),
        ("x = 1\n        if not x:", "x = 1"),  # a header with no body
        ("x = 1\n    with pytest.raises(E):  # no body", "x = 1"),
        ("x = 1\n        # a comment at the end", "x = 1"),
        # finished: kept as they are
        ("foo(a,\n    b)", "foo(a,\n    b)"),
        ('x = "a:"\ny = "#("', 'x = "a:"\ny = "#("'),
        ("if x:\n    return 1", "if x:\n    return 1"),
        # the cursor's own line stays whatever it ends with: the user types on
        ("if x:", "if x:"),
        ("foo(", "foo("),
    ],
)
def test_drop_unfinished_tail(text, expected):
    assert drop_unfinished_tail(text) == expected


def test_first_line_repeating_the_line_above_on_a_blank_cursor_line():
    prefix, suffix = split("def f():\n    a = 1\n    |\n")
    # The next line moves up to the cursor, which already stands at its indentation.
    assert drop_repeated_lines("a = 1\n    b = 2", prefix, suffix) == "b = 2"
    assert drop_repeated_lines("a = 1\n    a = 1\n    c = 3", prefix, suffix) == "c = 3"


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("print(foo(|)\n", "x))", "x)"),
        ("print(foo(|))\n", "x))", "x"),
        ("items = [f(|]\n", "a)]", "a)"),
        ("call(|)\n", "a, b", "a, b"),
        ("call(|)\n", "g(a)", "g(a)"),  # its own pair: kept
        ("d = {|}\n", "'a': [1, 2]}", "'a': [1, 2]"),
        ("x = (|\n", "1 + 2)", "1 + 2)"),  # the suffix has no closer: kept
    ],
)
def test_drop_closing_brackets_the_suffix_has(source, text, expected):
    prefix, suffix = split(source)
    assert drop_closing_brackets(text, prefix, suffix) == expected


@pytest.mark.parametrize(
    ("text", "ok"),
    [("", False), ("   \n ", False), (")", False), ("):", False), ("]),\n", False)]
    + [("x", True), ("0", True), ("self.a)", True), ("_", True)],
)
def test_is_substantive(text, ok):
    assert is_substantive(text) is ok


def test_clean_runs_them_all():
    prefix, suffix = split("def f(a):\n    return g(|)\n\ndef h():\n    pass\n")
    assert clean("a))\n\ndef h():", prefix, suffix) == "a"
    assert clean(")", prefix, suffix) is None
    style = FileStyle(indent="\t", quote="'")
    prefix, suffix = split("def f(a):\n\tif a:\n\t\t|\n")
    assert clean('x = "on"\n        if x:\n            y = 1', prefix, suffix, style) == (
        "x = 'on'\n\t\tif x:\n\t\t\ty = 1"
    )


@pytest.mark.parametrize(
    ("source", "indent", "quote"),
    [
        ("def f():\n    return 'a'\n", "    ", "'"),
        ('def f():\n  if x:\n    return "a"\n', "  ", '"'),
        ("def f():\n\tif x:\n\t\treturn 'a' + 'b'\n", "\t", "'"),
        ("x = 1\n", "    ", None),  # nothing to go by: 4 spaces, strings left as they come
        ("a = 'x'\nb = 'y'\nc = \"z\"\n", "    ", None),  # mixed (2 of 3): left alone
        (
            "s = \"it's\"\nt = 'a'\n",
            "    ",
            "'",
        ),  # a string with the other quote inside: not simple
    ],
)
def test_detect_style(source, indent, quote):
    assert detect_style(source) == FileStyle(indent=indent, quote=quote)


@pytest.mark.parametrize(
    ("text", "style", "expected"),
    [
        (
            "if x:\n    y = 1\n    if z:\n        w = 2",
            FileStyle("\t", '"'),
            "if x:\n\ty = 1\n\tif z:\n\t\tw = 2",
        ),
        ("if x:\n\ty = 1", FileStyle("  ", '"'), "if x:\n  y = 1"),
        ("x = 'a' + f'{b}'", FileStyle("    ", '"'), 'x = "a" + f"{b}"'),
        ('x = "a"  # say "hi"', FileStyle("    ", "'"), "x = 'a'  # say \"hi\""),
        ('x = "it\'s"', FileStyle("    ", "'"), 'x = "it\'s"'),  # would need escaping: kept
        ('x = """doc"""', FileStyle("    ", "'"), 'x = """doc"""'),  # triple quotes: kept
        ('x = "#" + y', FileStyle("    ", "'"), "x = '#' + y"),
        ('x = "open', FileStyle("    ", "'"), 'x = "open'),  # unclosed: the line is left alone
        ("x = 'a' + f\"{b}\"", FileStyle("    ", None), "x = 'a' + f\"{b}\""),  # mixed file
    ],
)
def test_adapt_style(text, style, expected):
    assert adapt_style(text, style) == expected


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("result = eval(user_input)", "eval_exec"),
        ("exec(request.body)", "eval_exec"),
        ("subprocess.run(f'ls {path}', shell=True)", "shell_format"),
        ("subprocess.call('rm -rf %s' % path, shell=True)", "shell_format"),
        ("os.system('tar xf ' + name)", "shell_format"),
        ("data = pickle.loads(blob)", "pickle_loads"),
        ("obj = pickle.load(f)", "pickle_loads"),
        ("cfg = yaml.load(text)", "yaml_load"),
        ("cfg = yaml.load(text, Loader=yaml.Loader)", "yaml_load"),
        ("cfg = yaml.unsafe_load(text)", "yaml_load"),
        ("cur.execute(f'SELECT * FROM t WHERE id = {uid}')", "sql_format"),
        ("cur.execute('SELECT * FROM t WHERE id = %s' % uid)", "sql_format"),
        ("cur.execute('SELECT * FROM t WHERE id = ' + uid)", "sql_format"),
        ("cur.execute('SELECT {}'.format(x))", "sql_format"),
        ("requests.get(url, verify=False)", "verify_false"),
    ],
)
def test_unsafe_patterns_found(code, rule):
    assert Finding(rule, 0) in unsafe_patterns(code)


@pytest.mark.parametrize(
    "code",
    [
        "value = literal_eval(text)",
        "x = eval('1 + 2')",
        "model.eval()",
        "subprocess.run(['ls', path])",
        "subprocess.run(['ls', path], shell=False)",
        "data = json.loads(blob)",
        "cfg = yaml.safe_load(text)",
        "cfg = yaml.load(text, Loader=yaml.SafeLoader)",
        "cur.execute('SELECT * FROM t WHERE id = ?', (uid,))",
        "cur.execute('SELECT * FROM t WHERE id = %s', (uid,))",
        "requests.get(url, verify=True)",
        "retrieval(x)",
    ],
)
def test_safe_code_is_not_flagged(code):
    assert unsafe_patterns(code) == ()


def test_only_what_the_completion_introduced():
    assert introduced("x = ", "eval(data)", "\n") == (Finding("eval_exec", 0),)
    assert introduced("x = eval(", "data)", "\n") == ()  # the user typed the eval
    assert introduced("requests.get(url, ", "verify=False)", "\n") == (Finding("verify_false", 0),)
    assert introduced("def f():\n    ", "return 1\n    x = pickle.loads(b)", "") == (
        Finding("pickle_loads", 1),
    )
