"""`python -m tests.support.faulty_service serve ...`: the real server, with a test-only way to kill its
engine thread. Nothing of it is in the `service` package, so no production path carries a hook.

SIGUSR1 makes the engine thread's next look at its command queue raise: the thread dies outside
a model step, as a bug in its own loop (not in a step, where errors are caught) would kill it.
"""

import signal
import threading

from service import __main__ as cli
from service.engine.async_engine import AsyncEngine

KILL_ENGINE_SIGNAL = signal.SIGUSR1

kill_requested = threading.Event()
drain_commands = AsyncEngine._drain_commands


def drain_commands_or_die(self: AsyncEngine, block: bool) -> None:
    if kill_requested.is_set():
        raise RuntimeError("engine thread killed by the test (SIGUSR1)")
    drain_commands(self, block)


if __name__ == "__main__":
    AsyncEngine._drain_commands = drain_commands_or_die
    signal.signal(KILL_ENGINE_SIGNAL, lambda signum, frame: kill_requested.set())
    cli.main()
