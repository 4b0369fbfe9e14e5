"""Helpers for tests that start and signal real child processes."""

from __future__ import annotations


def default_signals() -> None:
    """Popen preexec_fn: a child gets SIGINT/SIGHUP at their defaults even when the test run itself ignores them
    (a shell's `&` ignores SIGINT in background jobs, `nohup` ignores SIGHUP, and children inherit both)."""
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
