"""Unsafe patterns a suggestion would introduce: the caller drops the suggestion or ranks it last.

API:
- `unsafe_patterns(code) -> tuple[Finding, ...]`: every rule that matches `code`.
- `introduced(prefix, completion, suffix) -> tuple[Finding, ...]`: the findings in the completed
  lines (the cursor's line with the completion and the rest of that line) that those lines did
  not have without the completion: a user's own `eval(` is not the suggestion's fault.
- `Finding(rule, line)`: frozen; `rule` is one of `RULES`' names, `line` 0-based in `code`.

Rules (regular expressions over one logical line, so they cost microseconds; they ask for the
shape, not a proof of taint):
- eval_exec: `eval(`/`exec(` of anything but a string literal;
- shell_format: `shell=True`, or `os.system`/`os.popen`, with an f-string, `%`, `.format(` or
  `+` on the line;
- pickle_loads: `pickle`/`cPickle`/`dill`/`marshal` `.load(`/`.loads(`;
- yaml_load: `yaml.load(`/`yaml.load_all(` without a Safe/Base loader, and `yaml.unsafe_load`;
- sql_format: `.execute(`/`.executemany(`/`.executescript(` of an f-string, or of a string
  joined by `%`, `.format(` or `+`;
- verify_false: `verify=False` (TLS verification off).
"""

import re
from dataclasses import dataclass

from service.semantic.stopping import cursor_line, rest_of_line

_FORMATTED = r"""(\b[fF][rR]?["']|["']\s*%|%\s*\(|\.format\(|["']\s*\+|\+\s*["'])"""

RULES: dict[str, re.Pattern] = {
    "eval_exec": re.compile(r"""(?<![\w.])(eval|exec)\s*\(\s*(?![rRbBuU]?["'][^"']*["']\s*\))"""),
    "shell_format": re.compile(
        rf"""(shell\s*=\s*True.*{_FORMATTED}|{_FORMATTED}.*shell\s*=\s*True|"""
        rf"""\bos\.(system|popen)\s*\(.*{_FORMATTED})"""
    ),
    "pickle_loads": re.compile(r"""\b(c?[pP]ickle|dill|marshal)\.loads?\s*\("""),
    "yaml_load": re.compile(
        r"""\byaml\.unsafe_load(_all)?\s*\(|\byaml\.load(_all)?\s*\((?!.*Loader\s*=\s*"""
        r"""(yaml\.)?C?(Safe|Base)Loader)"""
    ),
    "sql_format": re.compile(
        r"""\.execute(many|script)?\s*\(\s*([fF][rR]?["']|["'][^"']*["']\s*(%|\.format\(|\+))"""
    ),
    "verify_false": re.compile(r"""\bverify\s*=\s*False\b"""),
}


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int


def unsafe_patterns(code: str) -> tuple[Finding, ...]:
    found = []
    for number, line in enumerate(code.split("\n")):
        found += [Finding(rule, number) for rule, pattern in RULES.items() if pattern.search(line)]
    return tuple(found)


def introduced(prefix: str, completion: str, suffix: str) -> tuple[Finding, ...]:
    before = cursor_line(prefix)
    after = rest_of_line(suffix)
    had = {f.rule for f in unsafe_patterns(before + after)}
    return tuple(f for f in unsafe_patterns(before + completion + after) if f.rule not in had)
