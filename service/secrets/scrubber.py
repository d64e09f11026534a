"""Secret scrubbing: find credentials in text and replace them with stable placeholders.

Runs on every text field of a request before anything else sees it (model, cache, logs,
metrics, events), and on the model's output. One rule per credential family (the gitleaks
families listed in REFERENCE.md) plus a generic "keyword = high-entropy value" rule.

Speed comes from a keyword prefilter: every rule names the lowercase literals that any match
must contain, one Aho-Corasick pass finds where they occur, and rules run only there. Ordinary
code triggers few or none.

Hostile text (a megabyte of `key`, of `sk-`, a key header with no END line) must cost time
linear in its length, because scrubbing runs on every request body. Three things make it so:
- no rule can backtrack over a run of characters: every quantifier is bounded, possessive, or
  followed by a character it cannot match (so it behaves as possessive);
- each rule runs at most once over any run of characters, as `finditer` would: a keyword hit
  inside the previous match of the rule, or inside the character run its previous failed
  attempt already read (`Rule.run`), is skipped;
- a request spends a `ScrubBudget` of rule attempts that grows with its length; past it the
  request is refused (`ScrubBudgetExceeded`), never passed on half scrubbed.
"""

import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
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
    # Where a match starts: at a keyword hit ("keyword", `offset` characters before it), at the
    # start of the hit's line ("line"), or anywhere ("scan": `finditer`, for patterns whose
    # keyword sits at a varying distance into the match; each must be linear on its own).
    anchor: Literal["keyword", "line", "scan"] = "keyword"
    offset: int = 0
    # What the pattern reads first from p, possessively: its opening literal and the run of
    # characters after it. When `run` matches at p but the pattern does not, an attempt at any
    # later hit inside that run fails too (it reads to the same end and goes on from there
    # alike), so those hits are skipped.
    run: re.Pattern[str] | None = None
    min_entropy: float = 0.0
    use_stop_words: bool = False
    accept: Callable[[str], bool] | None = None  # a further test of the secret's text


def _rule(name: str, regex: str, keywords: tuple[str, ...], **options) -> Rule:
    return Rule(name, re.compile(regex), keywords, **options)


def _openai_key(value: str) -> bool:
    """A run `sk-...` of key characters is an OpenAI key when it holds the `T3BlbkFJ` marker
    with 20 characters on each side, or a `sk-proj-` key of 40 more."""
    project = value.find("sk-proj-")
    return value.find("T3BlbkFJ", 23, len(value) - 20) != -1 or (
        project != -1 and len(value) - project >= 48
    )


_B64 = "A-Za-z0-9+/="
_GENERIC_NAME = r"(?i)(?:key|secret|token|passw(?:or)?d|passwd|pwd|credential|auth)[\w.-]*+"
_PEM_END = r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"

# Keyword hits come from one Aho-Corasick pass over the lowercased text; see Rule.anchor.
RULES: tuple[Rule, ...] = (
    # A BEGIN header with no END line takes the rest of the text: the key may go on there.
    _rule(
        "private-key",
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:" + _PEM_END + r"|\Z)",
        ("private key",),
        anchor="scan",
    ),
    # The tail of a key block whose BEGIN line was cut off before the text: from the first
    # base64 run of 20+ characters of the run of base64, blanks and backslashes (`\n` escapes)
    # that ends at the END line. It is tried once per such run (the look-behind), and reads it
    # possessively: linear.
    _rule(
        "private-key-tail",
        rf"(?<![{_B64}\s\\])(?:[\s\\]|[{_B64}]{{1,19}}+(?![{_B64}]))*+"
        rf"([{_B64}]{{20}}[{_B64}\s\\]*+{_PEM_END})",
        ("private key",),
        group=1,
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
        r"\bxox[abposr]-[0-9a-zA-Z-]{10,}+",
        ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"),
    ),
    _rule(
        "slack-webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}+",
        ("hooks.slack.com",),
    ),
    _rule(
        "stripe-key",
        r"\b(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{10,99}\b",
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    ),
    # The whole run of key characters from `sk-`, tested by _openai_key: the legacy, project
    # and service-account shapes alike, read once however many `sk-` the run holds.
    _rule(
        "openai-key",
        r"\bsk-[A-Za-z0-9_-]{20,}+",
        ("sk-",),
        run=re.compile(r"\bsk-[A-Za-z0-9_-]*+"),
        accept=_openai_key,
    ),
    _rule(
        "anthropic-key",
        r"\bsk-ant-[a-z0-9]{2,10}-[A-Za-z0-9_-]{32,}+",
        ("sk-ant-",),
    ),
    _rule("huggingface-token", r"\b(?:hf_|api_org_)[a-zA-Z]{34}\b", ("hf_", "api_org_")),
    _rule("pypi-token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}+", ("pypi-ageichlwas5vcmc",)),
    _rule("npm-token", r"\bnpm_[a-zA-Z0-9]{36}\b", ("npm_",)),
    _rule(
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{10,}+\.eyJ[A-Za-z0-9_-]{10,}+\.[A-Za-z0-9_-]{10,}+",
        ("eyj",),
        run=re.compile(r"\beyJ[A-Za-z0-9_-]*+"),
    ),
    _rule("gcp-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b", ("aiza",)),
    _rule(
        "azure-storage-key",
        r"(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/=]{40,}+)",
        ("accountkey=", "sharedaccesskey="),
        group=1,
    ),
    # Three characters, a digit, then `Q~`: the match starts 4 characters before the keyword.
    _rule(
        "azure-client-secret",
        r"(?<![\w~.-])[a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.-]{31,34}(?![\w~.-])",
        ("q~",),
        offset=4,
    ),
    # scheme://user:password@host; only the password is replaced.
    _rule(
        "url-credentials",
        r"://[^\s:/@'\"<>{}$%]++:([^\s:/@'\"<>{}$%]{3,}+)@",
        ("://",),
        group=1,
        use_stop_words=True,
    ),
    # .env files: NAME_WITH_A_KEYWORD=value, no spaces around '='. The name is read once,
    # possessively; the look-ahead finds its keyword in one pass.
    _rule(
        "dotenv-assignment",
        r"(?m)^[ \t]*+(?:export[ \t]++)?"
        r"(?=[A-Z][A-Z0-9_]*?(?:KEY|SECRET|TOKEN|PASSWORD|PASSWD|PWD|CREDENTIALS?|AUTH))"
        r"[A-Z][A-Z0-9_]*+="
        r"(?:\"([^\"\n]{6,})\"|'([^'\n]{6,})'|([^\s#'\"()]{6,}+))",
        ("key", "secret", "token", "passw", "pwd", "credential", "auth"),
        group=-1,
        anchor="line",
        use_stop_words=True,
    ),
    _rule(
        "bearer-token",
        r"\b[Bb]earer[ \t]++([A-Za-z0-9._~+/-]{20,}+=*+)",
        ("bearer",),
        group=1,
        min_entropy=GENERIC_MIN_ENTROPY,
        use_stop_words=True,
    ),
    # keyword-in-a-name [: annotation] (=|:|:=|=>) "value", or an unquoted token-shaped value.
    # The name is read possessively (what follows it never starts with a name character).
    _rule(
        "generic-secret",
        _GENERIC_NAME + r"[\"']?"
        r"(?:[ \t]*+:[ \t]*+[A-Za-z_][\w.\[\], |]{0,100}+)?[ \t]*+(?:=|:=|:|=>)[ \t]*+"
        r"(?:[bru]{0,2}\"([^\s\"'\\]{8,200})\"|[bru]{0,2}'([^\s\"'\\]{8,200})'"
        r"|([A-Za-z0-9+/=_~-]{16,200})(?![\w(.\[]))",
        ("key", "secret", "token", "passw", "pwd", "credential", "auth"),
        group=-1,
        run=re.compile(_GENERIC_NAME),
        min_entropy=GENERIC_MIN_ENTROPY,
        use_stop_words=True,
    ),
)


class ScrubBudgetExceeded(Exception):
    """A text asked for more rule attempts than its length allows: refuse it, unscrubbed."""


@dataclass
class ScrubBudget:
    """The rule attempts one request may spend: `base` plus one per `chars_per_attempt`
    characters it has scrubbed. Each attempt reads a bounded stretch of text, so this bounds
    the scrub time of a request by a constant per character."""

    base: int = 1024
    chars_per_attempt: int = 8
    earned: float = 0.0
    spent: int = 0

    def earn(self, chars: int) -> None:
        self.earned += chars / self.chars_per_attempt

    def spend(self) -> None:
        self.spent += 1
        if self.spent > self.base + self.earned:
            raise ScrubBudgetExceeded(
                f"more than {self.spent - 1} secret-rule checks for "
                f"{round(self.earned * self.chars_per_attempt)} characters"
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
_DIGIT = re.compile(r"\d")
_LONGEST_WORDS = 256
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")


def _looks_like_words(value: str) -> bool:
    # Longer values are not a name or a phrase someone typed: a secret, or junk to replace.
    if len(value) > _LONGEST_WORDS or _DIGIT.search(value):
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
    if rule.accept is not None and not rule.accept(value):
        return None
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


def _check_hits_come_in_order(rule: Rule) -> None:
    """Aho-Corasick reports hits by where they end; a rule's hits also come in the order of
    where they start (which skipping relies on) unless one keyword contains another."""
    for keyword in rule.keywords:
        for other in rule.keywords:
            if keyword != other and keyword in other:
                raise ValueError(f"rule {rule.name}: keyword {keyword!r} is inside {other!r}")


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
            _check_hits_come_in_order(rule)
            for keyword in rule.keywords:
                self._rules_by_keyword.setdefault(keyword, []).append(rule)

    def _matches(
        self, text: str, budget: ScrubBudget | None
    ) -> Iterator[tuple[Rule, re.Match[str]]]:
        if not self.prefilter:  # the reference the prefilter must agree with (tests, benchmarks)
            for rule in self.rules:
                for match in rule.pattern.finditer(text):
                    yield rule, match
            return
        scanned: set[str] = set()
        # Per rule, where its next attempt may start: hits before it lie inside its previous
        # match, or inside the run its previous failed attempt read.
        next_start: dict[str, int] = {}
        line_start = newline_seen_to = 0  # the line of the latest hit, found incrementally
        for end, keyword in self._automaton.iter(_lowercase_same_length(text)):
            start = end - len(keyword) + 1
            for rule in self._rules_by_keyword[keyword]:
                if rule.anchor == "scan":
                    if rule.name not in scanned:
                        scanned.add(rule.name)
                        for match in rule.pattern.finditer(text):
                            yield rule, match
                    continue
                if rule.anchor == "line":
                    if start > newline_seen_to:
                        line_start = text.rfind("\n", newline_seen_to, start) + 1 or line_start
                        newline_seen_to = start
                    pos = line_start
                else:
                    pos = start - rule.offset
                if pos < next_start.get(rule.name, 0):
                    continue
                if budget is not None:
                    budget.spend()
                if match := rule.pattern.match(text, pos):
                    next_start[rule.name] = max(match.end(), pos + 1)
                    yield rule, match
                elif rule.run is not None and (run := rule.run.match(text, pos)):
                    next_start[rule.name] = max(run.end(), pos + 1)
                else:
                    next_start[rule.name] = pos + 1

    def spans(self, text: str, budget: ScrubBudget | None = None) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, rule name) of every secret, in text order."""
        found = []
        for rule, match in self._matches(text, budget):
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
    requests scrub to equal text and still hit the cache. With a `budget`, raises
    ScrubBudgetExceeded when the request's texts ask for too much work."""

    detector: SecretDetector = field(default_factory=lambda: DEFAULT_DETECTOR)
    budget: ScrubBudget | None = None
    _placeholders: dict[str, str] = field(default_factory=dict)

    def _placeholder(self, secret: str) -> str:
        if secret not in self._placeholders:
            self._placeholders[secret] = PLACEHOLDER_FORMAT.format(len(self._placeholders) + 1)
        return self._placeholders[secret]

    def scrub(self, text: str) -> ScrubResult:
        (scrubbed,), findings = self.scrub_adjacent((text,))
        return ScrubResult(scrubbed, findings)

    def scrub_adjacent(self, parts: Sequence[str]) -> tuple[list[str], tuple[Finding, ...]]:
        """Scrub texts that are one text in the file, cut apart (the code before and after the
        cursor): a secret that spans a cut is found whole, and its placeholder goes where it
        starts. Findings are offsets into the joined text."""
        text = "".join(parts)
        if self.budget is not None:
            self.budget.earn(len(text))
        spans = self.detector.spans(text, self.budget)
        if not spans:
            return list(parts), ()
        part_ends = list(accumulate(len(p) for p in parts))
        pieces: list[list[str]] = [[] for _ in parts]

        def keep(begin: int, end: int) -> None:  # text[begin:end], cut where the parts meet
            while begin < end:
                i = bisect_right(part_ends, begin)
                cut = min(end, part_ends[i])
                pieces[i].append(text[begin:cut])
                begin = cut

        findings, last = [], 0
        for start, end, rule in spans:
            keep(last, start)
            placeholder = self._placeholder(text[start:end])
            pieces[bisect_right(part_ends, start)].append(placeholder)
            findings.append(Finding(rule, start, end, placeholder))
            last = end
        keep(last, len(text))
        return ["".join(p) for p in pieces], tuple(findings)


DEFAULT_DETECTOR = SecretDetector()


def scrub(text: str) -> ScrubResult:
    """Replace every secret in `text` with `<SECRET_n>` placeholders (numbered within `text`)."""
    return Scrubber().scrub(text)


def contains_secret(text: str) -> bool:
    """True when `text` holds a secret-shaped string (used on the model's output)."""
    return bool(DEFAULT_DETECTOR.spans(text))


# Characters a token-shaped secret is made of: a run of them at the end may still be growing.
# Tried only where such a run starts (the look-behind) and read possessively, so a long run
# that does not reach the end costs its length once, not once per character.
_TOKEN_CHAR = r"[\w+/=.~:@-]"
_TRAILING_TOKEN = re.compile(rf"(?<!{_TOKEN_CHAR}){_TOKEN_CHAR}*+\Z")


def settled_length(text: str) -> int:
    """How much of a text still being generated can be shown: all but a trailing run of
    token characters, which a secret could still be growing into."""
    return _TRAILING_TOKEN.search(text).start()
