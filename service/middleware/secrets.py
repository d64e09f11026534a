"""Secret scrubbing: find credentials in text and replace them with stable placeholders.

Runs on every text field of a request before anything else sees it (model, cache, logs,
metrics, events), and on the model's output. One rule per credential family (the gitleaks
families listed in REFERENCE.md) plus a generic "keyword = high-entropy value" rule.

Speed comes from a keyword prefilter: every rule names the lowercase literals that any match
must contain, one compiled alternation finds which of them occur in the text, and only the rules
whose keywords occur are run. Ordinary code triggers few or none.
"""

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import ahocorasick

PLACEHOLDER_FORMAT = "<SECRET_{}>"

# Values the generic rules never treat as secrets: templates, placeholders, references to
# variables or settings rather than literal credentials.
STOP_WORDS = (
    "example",
    "sample",
    "dummy",
    "placeholder",
    "changeme",
    "change_me",
    "your_",
    "your-",
    "xxxx",
    "****",
    "redacted",
    "<secret_",
    "environ",
    "getenv",
    "settings.",
    "config.",
    "${",
    "{{",
    "%(",
    "%s",
    "self.",
)

GENERIC_MIN_ENTROPY = 3.5


@dataclass(frozen=True)
class Rule:
    """One credential family. The secret is `group` of `pattern`'s match (-1: the first group
    that took part in the match)."""

    name: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...]  # lowercase literals; every match contains one of them
    group: int = 0
    anchor: Literal["keyword", "line", "scan"] = "keyword"
    min_entropy: float = 0.0
    use_stop_words: bool = False


def _rule(name: str, regex: str, keywords: tuple[str, ...], **options) -> Rule:
    return Rule(name, re.compile(regex), keywords, **options)


# Keyword hits come from one Aho-Corasick pass over the lowercased text. Each rule says how it
# uses them: "keyword" rules match starting exactly at a hit, "line" rules at the start of the
# hit's line, "scan" rules (keywords in the middle of a match, all rare in code) search the text.
RULES: tuple[Rule, ...] = (
    _rule(
        "private-key",
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|\Z)",
        ("private key",),
        anchor="scan",
    ),
    # The tail of a key block whose BEGIN line lies before the cursor (e.g. in the suffix).
    _rule(
        "private-key-tail",
        r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/=]{20,}[A-Za-z0-9+/=\s\\n]*"
        r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
        ("private key",),
        anchor="scan",
    ),
    _rule(
        "aws-access-key",
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
        ("akia", "asia", "abia", "acca", "a3t"),
    ),
    _rule(
        "github-token",
        r"\b(?:gh[pousr]_[0-9a-zA-Z]{36}|github_pat_[0-9a-zA-Z_]{82})\b",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _rule(
        "gitlab-token",
        r"\b(?:glpat-[0-9a-zA-Z_-]{20}|glptt-[0-9a-f]{40}|GR1348941[0-9a-zA-Z_-]{20})",
        ("glpat-", "glptt-", "gr1348941"),
    ),
    _rule(
        "slack-token",
        r"\bxox[abposr]-[0-9a-zA-Z-]{10,}",
        ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"),
    ),
    _rule(
        "slack-webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}",
        ("hooks.slack.com",),
    ),
    _rule(
        "stripe-key",
        r"\b(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{10,99}\b",
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    ),
    _rule(
        "openai-key",
        r"\bsk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"
        r"|\bsk-proj-[A-Za-z0-9_-]{40,}",
        ("sk-",),
    ),
    _rule("anthropic-key", r"\bsk-ant-[a-z0-9]{2,10}-[A-Za-z0-9_-]{32,}", ("sk-ant-",)),
    _rule("huggingface-token", r"\b(?:hf_|api_org_)[a-zA-Z]{34}\b", ("hf_", "api_org_")),
    _rule("pypi-token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", ("pypi-ageichlwas5vcmc",)),
    _rule("npm-token", r"\bnpm_[a-zA-Z0-9]{36}\b", ("npm_",)),
    _rule("jwt", r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", ("eyj",)),
    _rule("gcp-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b", ("aiza",)),
    _rule(
        "azure-storage-key",
        r"(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/=]{40,})",
        ("accountkey=", "sharedaccesskey="),
        group=1,
    ),
    _rule(
        "azure-client-secret",
        r"(?<![\w~.-])[a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.-]{31,34}(?![\w~.-])",
        ("q~",),
        anchor="scan",
    ),
    # scheme://user:password@host; only the password is replaced.
    _rule(
        "url-credentials",
        r"://[^\s:/@'\"<>{}$%]+:([^\s:/@'\"<>{}$%]{3,})@",
        ("://",),
        group=1,
        use_stop_words=True,
    ),
    # .env files: NAME_WITH_A_KEYWORD=value, no spaces around '='.
    _rule(
        "dotenv-assignment",
        r"[ \t]*(?:export[ \t]+)?[A-Z][A-Z0-9_]*"
        r"(?:KEY|SECRET|TOKEN|PASSWORD|PASSWD|PWD|CREDENTIALS?|AUTH)[A-Z0-9_]*="
        r"(?:\"([^\"\n]{6,})\"|'([^'\n]{6,})'|([^\s#'\"()]{6,}))",
        ("key", "secret", "token", "passw", "pwd", "credential", "auth"),
        group=-1,
        anchor="line",
        use_stop_words=True,
    ),
    _rule(
        "bearer-token",
        r"\b[Bb]earer[ \t]+([A-Za-z0-9._~+/-]{20,}=*)",
        ("bearer",),
        group=1,
        min_entropy=GENERIC_MIN_ENTROPY,
        use_stop_words=True,
    ),
    # keyword-in-a-name [: annotation] (=|:|:=|=>) "value", or an unquoted token-shaped value.
    _rule(
        "generic-secret",
        r"(?i)(?:key|secret|token|passw(?:or)?d|passwd|pwd|credential|auth)[\w.-]*[\"']?"
        r"(?:[ \t]*:[ \t]*[A-Za-z_][\w.\[\], |]*?)?[ \t]*(?:=|:=|:|=>)[ \t]*"
        r"(?:[bru]{0,2}\"([^\s\"'\\]{8,200})\"|[bru]{0,2}'([^\s\"'\\]{8,200})'"
        r"|([A-Za-z0-9+/=_~-]{16,200})(?![\w(.\[]))",
        ("key", "secret", "token", "passw", "pwd", "credential", "auth"),
        group=-1,
        min_entropy=GENERIC_MIN_ENTROPY,
        use_stop_words=True,
    ),
)


@dataclass(frozen=True)
class Finding:
    """Where a secret was found. Holds no part of the secret itself, so it is safe to log."""

    rule: str
    start: int
    end: int
    placeholder: str


@dataclass(frozen=True)
class ScrubResult:
    text: str
    findings: tuple[Finding, ...]


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s character distribution."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# Identifiers, dotted names, constants and kebab-case words: references to a secret, or labels.
_NAME_LIKE = re.compile(
    r"[A-Za-z_]+(?:\.[A-Za-z_]+)+|_*[a-z0-9]+(?:[-_][a-z0-9]+)*|_*[A-Z0-9]+(?:[-_][A-Z0-9]+)*"
)
# A value without digits whose letters split into words (CamelCase, Title-Case) of 3+ letters.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")


def _looks_like_words(value: str) -> bool:
    if any(c.isdigit() for c in value):
        return False
    words = _WORD.findall(value)
    return all(len(w) >= 3 for w in words) and len("".join(words)) >= len(value) * 0.8


def _is_stop_word_value(value: str) -> bool:
    lowered = value.lower()
    if any(word in lowered for word in STOP_WORDS):
        return True
    return _NAME_LIKE.fullmatch(value) is not None or _looks_like_words(value)


def _secret_span(rule: Rule, match: re.Match[str]) -> tuple[int, int] | None:
    """The span to replace for one match, or None when the rule's filters reject it."""
    group = rule.group
    if group == -1:
        group = next(i for i, g in enumerate(match.groups(), 1) if g is not None)
    value = match.group(group)
    if rule.use_stop_words and _is_stop_word_value(value):
        return None
    if rule.min_entropy and shannon_entropy(value) < rule.min_entropy:
        return None
    return match.span(group)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lowercase_same_length(text: str) -> str:
    lowered = text.lower()
    # A few characters (e.g. U+0130) lowercase to two; keyword offsets must stay valid.
    return lowered if len(lowered) == len(text) else text.translate(_ASCII_LOWER)


class SecretDetector:
    """The rule set behind its keyword prefilter, compiled once."""

    def __init__(self, rules: tuple[Rule, ...] = RULES, prefilter: bool = True):
        self.rules = rules
        self.prefilter = prefilter
        self._automaton = ahocorasick.Automaton()
        for keyword in {k for r in rules for k in r.keywords}:
            self._automaton.add_word(keyword, keyword)
        self._automaton.make_automaton()
        self._order = {rule.name: i for i, rule in enumerate(rules)}
        self._rules_by_keyword: dict[str, list[Rule]] = {}
        for rule in rules:
            for keyword in rule.keywords:
                self._rules_by_keyword.setdefault(keyword, []).append(rule)

    def _matches(self, text: str) -> Iterator[tuple[Rule, re.Match[str]]]:
        if not self.prefilter:
            for rule in self.rules:
                for match in rule.pattern.finditer(text):
                    yield rule, match
            return
        tried: set[tuple[str, int]] = set()  # (rule, position) already matched, or -1 for scans
        for end, keyword in self._automaton.iter(_lowercase_same_length(text)):
            start = end - len(keyword) + 1
            for rule in self._rules_by_keyword[keyword]:
                if rule.anchor == "scan":
                    pos = -1
                elif rule.anchor == "line":
                    pos = text.rfind("\\n", 0, start) + 1
                else:
                    pos = start
                if (rule.name, pos) in tried:
                    continue
                tried.add((rule.name, pos))
                if pos == -1:
                    for match in rule.pattern.finditer(text):
                        yield rule, match
                elif match := rule.pattern.match(text, pos):
                    yield rule, match

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, rule name) of every secret, in text order."""
        found = []
        for rule, match in self._matches(text):
            span = _secret_span(rule, match)
            if span is not None and span[1] > span[0]:
                found.append((span[0], span[1], rule.name))
        # Earliest first, longest first at the same start, then the rule listed first; drop
        # anything overlapping a kept span.
        found.sort(key=lambda s: (s[0], -s[1], self._order[s[2]]))
        kept: list[tuple[int, int, str]] = []
        for span in found:
            if not kept or span[0] >= kept[-1][1]:
                kept.append(span)
        return kept


@dataclass
class Scrubber:
    """Scrubs the text fields of one request: the same secret gets the same placeholder in
    every field (prefix, suffix, snippets...), numbered in order of first appearance, so equal
    requests scrub to equal text and still hit the cache."""

    detector: SecretDetector = field(default_factory=lambda: DEFAULT_DETECTOR)
    _placeholders: dict[str, str] = field(default_factory=dict)

    def _placeholder(self, secret: str) -> str:
        if secret not in self._placeholders:
            self._placeholders[secret] = PLACEHOLDER_FORMAT.format(len(self._placeholders) + 1)
        return self._placeholders[secret]

    def scrub(self, text: str) -> ScrubResult:
        spans = self.detector.spans(text)
        if not spans:
            return ScrubResult(text, ())
        parts, findings, last = [], [], 0
        for start, end, rule in spans:
            placeholder = self._placeholder(text[start:end])
            parts += [text[last:start], placeholder]
            findings.append(Finding(rule, start, end, placeholder))
            last = end
        parts.append(text[last:])
        return ScrubResult("".join(parts), tuple(findings))


DEFAULT_DETECTOR = SecretDetector()


def scrub(text: str) -> ScrubResult:
    """Replace every secret in `text` with `<SECRET_n>` placeholders (numbered within `text`)."""
    return Scrubber().scrub(text)


def contains_secret(text: str) -> bool:
    """True when `text` holds a secret-shaped string (used on the model's output)."""
    return bool(DEFAULT_DETECTOR.spans(text))


# Characters a token-shaped secret is made of: a run of them at the end may still be growing.
_TRAILING_TOKEN = re.compile(r"[\w+/=.~:@-]*\Z")


def settled_length(text: str) -> int:
    """How much of a text still being generated can be shown: all but a trailing run of
    token characters, which a secret could still be growing into."""
    return _TRAILING_TOKEN.search(text).start()
