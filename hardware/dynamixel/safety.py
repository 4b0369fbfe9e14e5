"""Torque is released on normal exit, on Ctrl-C and on SIGTERM.

Ctrl-C raises KeyboardInterrupt and SIGTERM is turned into SystemExit, so the `finally:` / `__exit__` that
disconnects the robot runs in both cases; an atexit hook covers anything left connected.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from typing import Callable, Iterator


def _raise_exit(signum, frame):  # noqa: ARG001
    raise SystemExit(128 + signum)


class ExitGuard:
    """Runs `release` once: explicitly, at interpreter exit, or when SIGTERM unwinds the main thread."""

    def __init__(self, release: Callable[[], object]):
        self._release = release
        self._done = False
        self._previous: dict[int, object] = {}

    def install(self) -> "ExitGuard":
        atexit.register(self.release)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (kill, systemd) and SIGHUP (the SSH session or terminal went away) unwind like Ctrl-C does
            for signum in (signal.SIGTERM, signal.SIGHUP):
                current = signal.getsignal(signum)
                if current in (signal.SIG_DFL, None):  # respect a handler the application set up itself
                    self._previous[signum] = signal.signal(signum, _raise_exit)
        return self

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._release()
        finally:
            self.uninstall()

    def uninstall(self) -> None:
        atexit.unregister(self.release)
        if self._previous and threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                signal.signal(signum, previous or signal.SIG_DFL)
            self._previous = {}


@contextlib.contextmanager
def release_on_exit(release: Callable[[], object]) -> Iterator[ExitGuard]:
    """Run `release` when the block ends for any reason, including SIGTERM and interpreter exit."""
    guard = ExitGuard(release).install()
    try:
        yield guard
    finally:
        guard.release()
