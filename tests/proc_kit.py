"""Helpers for tests that start and signal real child processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_signals() -> None:
    """Popen preexec_fn: a child gets SIGINT/SIGHUP/SIGTERM at their defaults even when the test run itself ignores
    them (a shell's `&` ignores SIGINT in background jobs, `nohup` ignores SIGHUP, and children inherit both)."""
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
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


def start_server(bundle: Path, *extra: str, lines: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """`aloha serve-policy --port 0` as a child process; returns it and the HOST:PORT it printed (`lines`: what it
    printed up to there)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.app", "serve-policy", "--policy", str(bundle), "--port", "0", *extra],
        cwd=REPO, env=dict(os.environ, COLUMNS="250"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_signals)
    lines = [] if lines is None else lines
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"serving policy .* on (127\.0\.0\.1:\d+|\[::1\]:\d+)", line)
        if found:
            return proc, found.group(1)
    proc.wait()
    raise AssertionError("server did not start:\n" + "".join(lines))
