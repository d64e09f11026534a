"""Cache keys: SHA-256 digests of everything that decides a suggestion, so nothing readable
(no prompt, no tenant name, no file path) is ever stored in a key.

Every key starts with its tenant's namespace, a digest of the tenant, so one tenant's entries
can never answer another's requests and can be listed or flushed per tenant.
"""

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path


def _digest(*fields: str) -> str:
    h = hashlib.sha256()
    for value in fields:
        data = value.encode("utf-8", "surrogatepass")
        # Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def tenant_namespace(tenant: str) -> str:
    return "cc:" + _digest("tenant", tenant)[:24]


def canonical_decoding(decoding: Mapping[str, object]) -> str:
    """Decoding parameters as one canonical string (key order does not matter)."""
    return json.dumps(decoding, sort_keys=True, separators=(",", ":"), default=str)


def suggestion_key(
    tenant: str, model: str, decoding: Mapping[str, object], prompt_window: str
) -> str:
    """Key of the exact entry. `model` is the model id and revision, `prompt_window` the
    scrubbed text actually sent to the model."""
    digest = _digest("suggestion", model, canonical_decoding(decoding), prompt_window)
    return f"{tenant_namespace(tenant)}:s:{digest}"


def typing_key(
    tenant: str, model: str, decoding: Mapping[str, object], filepath: str, suffix: str
) -> str:
    """Key of the typing-through record: everything that stays the same while the user types
    a served suggestion into the document (the text after the cursor, the file)."""
    digest = _digest("typing", model, canonical_decoding(decoding), filepath, suffix)
    return f"{tenant_namespace(tenant)}:t:{digest}"


def prefix_digest(prefix: str) -> str:
    return _digest("prefix", prefix)


def model_revision(checkpoint: Path) -> str:
    """A short revision of a checkpoint directory: its config and the size and modification
    time of its weights, so a retrained or replaced model never serves the old one's entries."""
    parts = [(checkpoint / "config.json").read_text()]
    for weights in sorted(checkpoint.glob("*.safetensors")):
        stat = weights.stat()
        parts += [weights.name, str(stat.st_size), str(stat.st_mtime_ns)]
    return _digest("revision", *parts)[:16]
