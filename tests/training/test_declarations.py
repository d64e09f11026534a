"""The declarations tabby-agent would send, rebuilt from a package's files (what editor-eval's
`--declarations-b` sends): which names resolve, which are left out, in what order, cut where."""

from training.evaluation.declarations import MAX_CHARS, MAX_SNIPPETS, declarations
from training.evaluation.editor_eval import Cursor, tabby_completion

HELPERS = '''def parse(text):
    """Parse it."""
    return text.split()


def render(items):
    return " ".join(items)


class Store:
''' + "".join(f"    def method_{i}(self):\n        return {i}\n\n" for i in range(40))

FILLER = "".join(f"    # line {i}\n" for i in range(30))

APP = (
    "from .helpers import parse, render as show, Store\n"
    "import os\n\n\n"
    "def local(x):\n    return x\n\n\n"
    "class App:\n"
    "    def load(self, path):\n        return path\n\n" + FILLER + "    def run(self, text):\n"
    "        items = parse(text)\n"
    "        near = local(items)\n"
    "        self.load(os.sep)\n"
    "        store = Store()\n"
    "        return show(items)\n"
)
FILES = {"pkg/pkg/helpers.py": HELPERS, "pkg/pkg/app.py": APP}


def at_end(source: str) -> tuple[str, str]:
    """The cursor on a new line at the end of `run`'s body."""
    return source, "        pass\n"


def test_names_resolve_to_their_declarations_nearest_the_cursor_first():
    prefix, suffix = at_end(APP)
    found = declarations("pkg/pkg/app.py", prefix, suffix, FILES)
    names = [d.body.split("\n", 1)[0] for d in found]
    # from the cursor backwards: show (render, imported under another name), Store, self.load
    # (a method of the cursor's class), local, parse; `os` is no declaration of the package
    assert names == [
        "def render(items):",
        "class Store:",
        "    def load(self, path):",
        "def local(x):",
        "def parse(text):",
    ]
    assert [d.filepath for d in found] == [
        "pkg/pkg/helpers.py",
        "pkg/pkg/helpers.py",
        "pkg/pkg/app.py",
        "pkg/pkg/app.py",
        "pkg/pkg/helpers.py",
    ]


def test_a_long_declaration_is_cut_at_a_line_end_within_the_limit():
    (store,) = [d for d in declarations("pkg/pkg/app.py", *at_end(APP), FILES) if "Store" in d.body]
    assert len(store.body) <= MAX_CHARS and store.body.endswith("\n")
    assert HELPERS[HELPERS.index("class Store:") :].startswith(store.body)


def test_declarations_in_the_lines_looked_at_or_around_the_cursor_are_not_sent():
    # without the filler, `load` and `local` are within the last 20 lines, and `run` encloses
    # the cursor: the client skips all three (the prompt shows them already)
    source = APP.replace(FILLER, "")
    bodies = [d.body for d in declarations("pkg/pkg/app.py", *at_end(source), FILES)]
    assert not any(b.startswith("    def load") or b.startswith("    def run") for b in bodies)
    assert not any(b.startswith("def local") for b in bodies)  # 9 lines up: looked at


def test_at_most_five_are_sent():
    calls = "".join(f"        f{i}()\n" for i in range(8))
    defs = "".join(f"def f{i}():\n    pass\n\n\n" for i in range(8))
    source = defs + FILLER + "def g():\n" + calls
    found = declarations("pkg/pkg/app.py", source, "", {"pkg/pkg/app.py": source})
    assert len(found) == MAX_SNIPPETS
    assert [d.body.split("(")[0] for d in found] == [f"def f{i}" for i in (7, 6, 5, 4, 3)]


def test_the_tabby_body_carries_them():
    class Client:
        def post(self, path, json):
            self.body = json

            class Answer:
                def raise_for_status(self):
                    pass

                def json(self):
                    return {"choices": [{"text": "x"}]}

            return Answer()

    client = Client()
    cursor = Cursor("pkg/pkg/app.py", "statement", APP.count("\n") + 1, APP, "", "")
    sent = declarations(cursor.file, cursor.prefix, cursor.suffix, FILES)
    tabby_completion(client, cursor, None, sent)
    assert client.body["segments"]["declarations"] == [
        {"filepath": d.filepath, "body": d.body} for d in sent
    ]
    tabby_completion(client, cursor)
    assert "declarations" not in client.body["segments"]
