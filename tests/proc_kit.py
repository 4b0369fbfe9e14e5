"""Helpers for tests that start and signal real child processes."""

from __future__ import annotations


def default_signals() -> None:
    """Popen preexec_fn: a child gets SIGINT/SIGHUP at their defaults even when the test run itself ignores them
    (a shell's `&` ignores SIGINT in background jobs, `nohup` ignores SIGHUP, and children inherit both)."""
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def signal_and_collect(proc, signum: int, timeout: float = 20) -> str:
    """Send `signum` to a running child and return everything it printed; a child that outlives `timeout` is killed
    (and the test fails on its output, not by hanging)."""
    try:
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out
