"""CRLF in, LF for the model, CRLF out: models are trained on LF text."""


def detect_newline(*texts: str) -> str:
    """ "\\r\\n" when the client's text uses CRLF line ends, else "\\n"."""
    return "\r\n" if any("\r\n" in text for text in texts) else "\n"


def to_lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def from_lf(text: str, newline: str) -> str:
    return text if newline == "\n" else text.replace("\n", newline)
