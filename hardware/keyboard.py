"""Single-key recorder controls that work in a plain terminal (also over SSH): n = next, r = re-record, q = quit.

No X server, no root, no global hooks: stdin is put in cbreak mode while recording and polled with select().
When stdin is not a terminal (CI, pipes, nohup) the controls are off and `poll()` always returns None.
"""

from __future__ import annotations

import os
import select
import sys
from enum import Enum
from typing import Protocol


class Command(str, Enum):
    NEXT = "n"  # end the current episode early and keep it / skip the rest of the reset period
    RERECORD = "r"  # discard the current (or, during the reset period, the last saved) episode and record it again
    QUIT = "q"  # keep the current episode and stop the session


class CommandSource(Protocol):
    def poll(self) -> Command | None:
        """The most recent command typed since the last poll, without blocking."""
        ...


class NoCommands:
    def poll(self) -> Command | None:
        return None


class TerminalCommands:
    """Context manager: cbreak mode on a tty stdin, restored on exit (also after exceptions)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin
        self.enabled = False
        self._saved = None
        self._fd = -1

    def __enter__(self) -> "TerminalCommands":
        try:
            if self.stream is None or not self.stream.isatty():
                return self
            import termios
            import tty

            self._fd = self.stream.fileno()
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)  # keys arrive one by one, Ctrl-C still works
            self.enabled = True
        except (OSError, ValueError, ImportError):
            self.enabled = False
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self.enabled = False

    def poll(self) -> Command | None:
        command = None
        for ch in self.read():
            if ch in ("n", "r", "q"):
                command = Command(ch)
        return command

    def read(self) -> str:
        """Every key typed since the last read, lower-cased, without blocking ('' when the controls are off).
        Other verbs (`aloha rollout`: labels, takeover) read their own keys here."""
        if not self.enabled:
            return ""
        typed = ""
        while select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, 64)
            if not data:
                break
            typed += data.decode(errors="ignore").lower()
        return typed
