"""Every relative link in the repository's Markdown resolves: the file exists and, where the link
names a heading (`page.md#anchor`), the page has that heading. Every path of ours a reference page
names in backticks exists. Docs get split and code gets moved; a broken link or a path that is no
longer there is how a reader first finds out. History pages (docs/history/) keep the paths of their
day, so only their links are checked."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# [text](target) outside code; the target ends at the first space or closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
# A path of ours in backticks: `service/engine/scheduler.py`, `kernels/csrc/`, `tests/test_x.py::test_y`.
OUR_PATH = re.compile(
    r"`((?:service|kernels|training|benchmarks|tests|loadtests|deploy|docs|requirements)/[\w./-]*)"
)


def markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(ROOT / name for name in listed if (ROOT / name).is_file())


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code."""
    lines, in_fence = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, line))
    return lines


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    anchors: set[str] = set()
    for _, line in prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        anchor, repeat = text, 1
        while anchor in anchors:
            anchor, repeat = f"{text}-{repeat}", repeat + 1
        anchors.add(anchor)
    return anchors


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for number, line in prose_lines(path):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(root)}:{number}: {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{where} (no heading #{anchor})")
    return broken


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A heading\n[ok](#a-heading) [gone](missing.md) [bad](#nowhere)\n")
    (tmp_path / "other.md").write_text("```\n[in code](nowhere.md)\n```\n")
    assert [entry.split(": ", 1)[1] for entry in broken_links(page, tmp_path)] == [
        "missing.md (no such file)",
        "#nowhere (no heading #nowhere)",
    ]
    assert broken_links(tmp_path / "other.md", tmp_path) == []


def missing_paths(path: Path, root: Path = ROOT) -> list[str]:
    """Backticked paths of ours in `path` that name nothing: a file, a folder, a module (`.py`
    left off) or a module's attribute (`kernels/cpu_paged_attention.plan_sequences`)."""
    missing = []
    for number, line in prose_lines(path):
        for named in OUR_PATH.findall(line.replace("::", "`")):
            named = named.rstrip(".")
            module, _, _ = named.rpartition(".")
            candidates = [named, f"{named}.py", f"{module}.py"]
            if not any((root / candidate).exists() for candidate in candidates if candidate):
                missing.append(f"{path.relative_to(root)}:{number}: {named}")
    return missing


def reference_pages() -> list[Path]:
    return [page for page in markdown_files() if "history" not in page.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", reference_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_exist(path: Path) -> None:
    assert missing_paths(path) == []


def test_a_missing_path_is_caught(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "engine.py").write_text("")
    page = tmp_path / "page.md"
    page.write_text(
        "`service/engine.py` `service/engine` `service/engine.step` `service/` "
        "`service/gone.py` `tests/test_x.py::test_y`\n"
    )
    assert [entry.split(": ", 1)[1] for entry in missing_paths(page, tmp_path)] == [
        "service/gone.py",
        "tests/test_x.py",
    ]
