"""Request bodies are JSON in UTF-8, read once here and written back for the handler.

One encoding only, so that the text the secret scrubber reads is the text the handler parses:
Python's `json.loads(bytes)` would also read UTF-16 and UTF-32, which a scrubber of UTF-8 text
sees as noise. A UTF-8 byte-order mark is dropped (RFC 8259 section 8.1 lets a parser ignore
it, and some HTTP clients send one); UTF-16 and UTF-32 bodies, with or without their mark, and
bytes that are not UTF-8 are refused. The handler gets `encode_json` of the parsed value, so a
`\\u0041KIA...` escape reaches it as the `AKIA...` the scrubber saw and replaced.
"""

import json
from typing import Any

UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

SEND_UTF8 = "send the JSON body encoded as UTF-8"


class BodyRefused(Exception):
    """A body the server will not pass on, with the status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def decode_json(raw: bytes) -> Any:
    """The JSON value of a UTF-8 body; BodyRefused (400) for any other encoding or bad JSON."""
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    # JSON text starts with ASCII, so UTF-16 and UTF-32 put a NUL byte among its first four.
    if raw.startswith(_UTF16_BOMS) or b"\x00" in raw[:4]:
        raise BodyRefused(400, f"the body is UTF-16 or UTF-32 encoded: {SEND_UTF8}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyRefused(
            400, f"the body is not valid UTF-8 (at byte {error.start}): {SEND_UTF8}"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BodyRefused(
            400, "the body's JSON is nested too deeply: send the flat objects the API documents"
        ) from None
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's guard against slow int parsing
            raise BodyRefused(
                400,
                "a number in the body has more than 4300 digits: send the numbers the API documents",
            ) from None
        raise BodyRefused(400, f"the body is not valid JSON ({error})") from None


def encode_json(value: Any) -> bytes:
    """The body the handler reads. A lone surrogate (`"\\ud800"` parses, but is no character)
    cannot be encoded: refused with 400."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BodyRefused(
            400,
            "a string in the body holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff "
            "not part of a pair): send valid Unicode text",
        ) from None
