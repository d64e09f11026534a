"""Files the user marks as sensitive get no completion at all: their text never reaches the model."""

from fnmatch import fnmatchcase
from pathlib import PurePosixPath

DEFAULT_SENSITIVE_GLOBS = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "secrets.*",
    "credentials*",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".npmrc",
)


class SensitiveFiles:
    """Glob patterns matched against the file's name and against its whole path, so both
    `*.pem` and `config/prod/*` work. Windows separators are normalised first, and case is
    ignored: `.ENV` and `Secrets.yaml` are the same files on Windows and macOS disks."""

    def __init__(self, globs: tuple[str, ...] = DEFAULT_SENSITIVE_GLOBS):
        self.globs = tuple(g.lower() for g in globs)

    def matches(self, filepath: str | None) -> bool:
        if not filepath:
            return False
        path = filepath.replace("\\", "/").lower()
        name = PurePosixPath(path).name
        return any(fnmatchcase(name, g) or fnmatchcase(path, g) for g in self.globs)
