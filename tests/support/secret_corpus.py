"""A corpus of real code (the Python standard library), planted, realistic fake secrets, and
hostile text built to make each secret rule work hard.

Shared by tests/secrets/test_secrets.py, tests/secrets/test_secrets_hostile.py and benchmarks/bench_secrets.py. Every secret is generated
from a seeded RNG in the shape of its family, so no real credential is ever in the repository.
"""

import base64
import json
import random
import string
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


@dataclass(frozen=True)
class Planted:
    family: str
    line: str  # the line of code that carries the secret
    secret: str  # the part that must not survive scrubbing


def stdlib_files(limit: int | None = None) -> list[Path]:
    """The standard library's own modules (its tests excluded: they hold fake keys on purpose)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not {"test", "tests", "site-packages", "idlelib"} & set(p.relative_to(root).parts)
    )
    return files[:limit] if limit else files


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    """A random token; with digits in the alphabet, one that mixes digits and letters, as real
    random tokens of these lengths all but always do."""
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        mixed = any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
        if mixed or alphabet.isdigit() or not any(c.isdigit() for c in alphabet):
            return value


def _jwt(rng: random.Random) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    payload = part({"sub": _s(rng, ALNUM, 12), "iat": rng.randrange(10**9, 2 * 10**9)})
    return f"{header}.{payload}.{_s(rng, ALNUM + '-_', 43)}"


def _private_key(rng: random.Random) -> str:
    body = "\n".join(_s(rng, B64, 64) for _ in range(6))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


def planted_secrets(rng: random.Random) -> list[Planted]:
    """One fresh fake secret of every family, each in a typical line of code or config."""
    aws = "AKIA" + _s(rng, string.ascii_uppercase + "234567", 16)
    password = _s(rng, ALNUM + "!#&*", 14)
    samples = {
        "aws-access-key": (f'AWS_ACCESS_KEY_ID = "{aws}"', aws),
        "aws-secret-key": (
            f'aws_secret_access_key = "{(s := _s(rng, B64, 40))}"',
            s,
        ),
        "github-token": (f'GITHUB_TOKEN = "ghp_{(s := _s(rng, ALNUM, 36))}"', "ghp_" + s),
        "github-pat": (
            f'gh = Github("github_pat_{(s := _s(rng, ALNUM + "_", 82))}")',
            "github_pat_" + s,
        ),
        "gitlab-token": (
            f'gl = gitlab.Gitlab(url, private_token="glpat-{(s := _s(rng, ALNUM, 20))}")',
            "glpat-" + s,
        ),
        "slack-token": (
            f'client = WebClient(token="xoxb-{(s := _s(rng, string.digits, 11) + "-" + _s(rng, ALNUM, 24))}")',
            "xoxb-" + s,
        ),
        "slack-webhook": (
            f'WEBHOOK = "https://hooks.slack.com/services/T{(s := _s(rng, string.ascii_uppercase + string.digits, 8) + "/B" + _s(rng, string.ascii_uppercase + string.digits, 8) + "/" + _s(rng, ALNUM, 24))}"',
            s,
        ),
        "stripe-key": (f'stripe.api_key = "sk_live_{(s := _s(rng, ALNUM, 24))}"', "sk_live_" + s),
        "openai-key": (
            f'client = OpenAI(api_key="sk-proj-{(s := _s(rng, ALNUM, 48) + "T3BlbkFJ" + _s(rng, ALNUM, 48))}")',
            "sk-proj-" + s,
        ),
        "anthropic-key": (
            f'ANTHROPIC_API_KEY = "sk-ant-api03-{(s := _s(rng, ALNUM + "-_", 93))}AA"',
            "sk-ant-api03-" + s + "AA",
        ),
        "huggingface-token": (
            f'login(token="hf_{(s := _s(rng, string.ascii_letters, 34))}")',
            "hf_" + s,
        ),
        "pypi-token": (
            f"password = pypi-AgEIcHlwaS5vcmc{(s := _s(rng, ALNUM + '-_', 70))}",
            "pypi-AgEIcHlwaS5vcmc" + s,
        ),
        "npm-token": (
            f"//registry.npmjs.org/:_authToken=npm_{(s := _s(rng, ALNUM, 36))}",
            "npm_" + s,
        ),
        "jwt": (f'headers["X-Session"] = "{(s := _jwt(rng))}"', s),
        "private-key": (f'KEY_PEM = """{(s := _private_key(rng))}"""', s),
        "gcp-api-key": (f'GOOGLE_API_KEY = "AIza{(s := _s(rng, ALNUM + "-_", 35))}"', "AIza" + s),
        "azure-storage-key": (
            f'CONN = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={(s := _s(rng, B64, 86))}==;EndpointSuffix=core.windows.net"',
            s,
        ),
        "url-credentials": (
            f'DATABASE_URL = "postgres://admin:{password}@db.internal:5432/app"',
            password,
        ),
        "dotenv-assignment": (f"DB_PASSWORD={(s := _s(rng, ALNUM, 16))}", s),
        "bearer-token": (
            f'headers = {{"Authorization": "Bearer {(s := _s(rng, ALNUM + "-_.", 40))}"}}',
            s,
        ),
        "generic-secret": (f'config = {{"client_secret": "{(s := _s(rng, ALNUM, 32))}"}}', s),
        "generic-password": (f'db.connect(user="app", password="{(s := _s(rng, ALNUM, 18))}")', s),
    }
    return [Planted(family, line, secret) for family, (line, secret) in samples.items()]


def plant(text: str, planted: Planted, rng: random.Random) -> tuple[str, range]:
    """`text` with `planted.line` inserted at a random line boundary, indented like its
    neighbour, and the (1-based) line numbers it occupies."""
    lines = text.split("\n")
    at = rng.randrange(len(lines) + 1)
    neighbour = lines[at - 1] if at else ""
    indent = neighbour[: len(neighbour) - len(neighbour.lstrip())]
    planted_lines = range(at + 1, at + 2 + planted.line.count("\n"))
    return "\n".join([*lines[:at], indent + planted.line, *lines[at:]]), planted_lines


B64_LINE = "A" * 64 + "\n"

# Text built to make each rule work hard: runs of its keyword, keyword-led runs of the
# characters it reads, headers with no END, values one character short... Each is repeated
# up to the wanted length.
HOSTILE_UNITS: dict[str, tuple[str, ...]] = {
    "private-key": (
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\n" + B64_LINE,
        "-----BEGIN " + "A" * 90,
        "-----END RSA PRIVATE KEY-----",
    ),
    "private-key-tail": (B64_LINE, "A" * 19 + " ", "\\n" + "A" * 30, "A" * 30 + " -----END "),
    "aws-access-key": ("AKIA", "AKIA" + "A" * 15, "A3TA", "AKIA" + "A" * 17),
    "github-token": ("ghp_", "ghp_" + "a" * 35, "github_pat_" + "a" * 81),
    "gitlab-token": ("glpat-", "glpat-" + "a" * 19, "glptt-", "GR1348941"),
    "slack-token": ("xoxb-", "xoxb-1", "axoxb-", "xoxb-" + "a" * 9 + " "),
    "slack-webhook": ("hooks.slack.com/services/", "hooks.slack.com/services/" + "a" * 19 + " "),
    "stripe-key": ("sk_live_", "sk_live_" + "a" * 100, "sk_test_" + "a" * 9 + " "),
    "openai-key": ("sk-", "xsk-", "sk-" + "a" * 30, "sk-proj-", "sk-" + "a" * 25 + "T3BlbkFJ"),
    "anthropic-key": ("sk-ant-", "sk-ant-ab-", "sk-ant-abcdefghij", "sk-ant-ab-" + "a" * 31 + " "),
    "huggingface-token": ("hf_", "hf_" + "a" * 33 + "1", "api_org_"),
    "pypi-token": ("pypi-AgEIcHlwaS5vcmc", "pypi-AgEIcHlwaS5vcmc" + "a" * 49 + " "),
    "npm-token": ("npm_", "npm_" + "a" * 35 + " "),
    "jwt": ("eyJ", "aeyJ", "eyJ" + "a" * 10 + ".", "eyJaaaaaaaaaaa.eyJ", "eyJ-"),
    "gcp-api-key": ("AIza", "AIza" + "a" * 34 + " "),
    "azure-storage-key": ("AccountKey=", "AccountKey=" + "A" * 39 + " ", "SharedAccessKey="),
    "azure-client-secret": ("Q~", "abc1Q~", "abc1Q~" + "a" * 30 + " ", "~" * 7 + "1Q~"),
    "url-credentials": ("://", "://a", "://a:", "://a:bc", "://" + "a" * 50 + ":" + "b" * 50),
    "dotenv-assignment": ("KEY", "AKEY", "A_KEY=", "A_KEY=a", '\nA_KEY="abcde', "export "),
    "bearer-token": ("bearer", "Bearer ", "Bearer\t", "Bearer " + "a" * 19 + " "),
    "generic-secret": (
        "key",
        "key ",
        "key=",
        "key: a ",
        "key: a" + " " * 20,
        "key = '",
        "key='" + "a" * 199 + " ",
        "password=",
        "secret" + " " * 9,
        "passw",
    ),
}
