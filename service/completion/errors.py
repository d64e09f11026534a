"""Why a job ended without a complete answer; the API maps each to a status
(service/api/errors.py), so a cut answer is never passed off as a finished one."""


class CompletionError(Exception):
    pass


class NoOutput(CompletionError):
    """Not a token before the deadline (queued behind others the whole time)."""

    def __init__(self, timeout_s: float):
        super().__init__(f"no output within {timeout_s:g} s")
        self.timeout_s = timeout_s


class Aborted(CompletionError):
    """The engine aborted the job; `cause` is the engine's (superseded, shutdown, ...)."""

    def __init__(self, cause: str | None):
        super().__init__(f"aborted ({cause})")
        self.cause = cause


class Disconnected(CompletionError):
    """The caller went away before the answer was ready."""
