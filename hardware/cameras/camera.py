"""A colour camera read on a background thread into a latest-frame slot.

Each frame keeps its device frame number and timestamp; gaps in frame numbers are dropped frames, counted and
handed to the control loop once per step. No frame for `stale_after_s` (or a source error) means the camera is
gone: the next `read()` raises `CameraDisconnected`, so a step never waits more than that bound.
"""

from __future__ import annotations

from hardware.interfaces import RobotError

import collections
import threading
import time
from dataclasses import dataclass

from hardware.cameras.sources import Frame, FrameSource, SourceError


class CameraDisconnected(RobotError):
    pass


@dataclass
class CameraStats:
    frames: int = 0
    dropped: int = 0  # frames missing from the device's numbering
    reads: int = 0


class Camera:
    def __init__(self, name: str, source: FrameSource, *, stale_after_s: float = 1.0, history: int = 8):
        self.name = name
        self.source = source
        self.stale_after_s = stale_after_s
        self.stats = CameraStats()
        self.history: collections.deque[Frame] = collections.deque(maxlen=history)
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._last_number: int | None = None
        self._unreported_drops = 0
        self._started_at = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self, first_frame_timeout_s: float | None = 5.0) -> None:
        """Start the source and the reader thread; wait for a first frame unless the timeout is None."""
        self.source.start()
        self._stop.clear()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        if first_frame_timeout_s:
            self.wait_for_frame(first_frame_timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.source.stop()

    def __enter__(self) -> "Camera":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ background thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read(0.05)
            except (SourceError, RuntimeError) as exc:
                with self._lock:
                    self._error = exc
                    self._new_frame.notify_all()
                return
            if frame is None:
                continue
            with self._lock:
                if self._last_number is not None and frame.number > self._last_number + 1:
                    gap = frame.number - self._last_number - 1
                    self.stats.dropped += gap
                    self._unreported_drops += gap
                self._last_number = frame.number
                self.stats.frames += 1
                self.history.append(frame)
                self._new_frame.notify_all()

    # ------------------------------------------------------------------ control thread
    def _check_alive(self, now: float) -> None:
        if self._error is not None:
            raise CameraDisconnected(f"camera {self.name!r} ({self.source.description}): {self._error}")
        last = self.history[-1].host_time if self.history else self._started_at
        if now - last > self.stale_after_s:
            raise CameraDisconnected(f"camera {self.name!r} ({self.source.description}): no frame for "
                                     f"{now - last:.2f} s (disconnected?)")

    def wait_for_frame(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not self.history and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraDisconnected(f"camera {self.name!r} ({self.source.description}): no frame "
                                             f"within {timeout_s:.1f} s of starting")
                self._new_frame.wait(remaining)
            self._check_alive(time.monotonic())
            return self.history[-1]

    def read(self) -> tuple[Frame, int]:
        """Latest frame and the frames dropped since the previous read. Never blocks."""
        with self._lock:
            self._check_alive(time.monotonic())
            if not self.history:
                raise CameraDisconnected(f"camera {self.name!r}: no frame yet")
            drops, self._unreported_drops = self._unreported_drops, 0
            self.stats.reads += 1
            return self.history[-1], drops

    def frames(self) -> list[Frame]:
        with self._lock:
            return list(self.history)


def match_by_timestamp(cameras: list[Camera]) -> tuple[dict[str, Frame], int]:
    """One frame per camera, as close in time as their histories allow (colour streams are not hardware-synced).

    The reference is the oldest of the newest frames (the laggard camera); every other camera gives its frame
    nearest that time. Returns the frames and the drops all cameras reported since their previous read.
    """
    latest = {}
    drops = 0
    for cam in cameras:
        frame, dropped = cam.read()
        latest[cam.name] = frame
        drops += dropped
    if len(cameras) < 2:
        return latest, drops
    reference = min(f.timestamp_ms for f in latest.values())
    matched = {}
    for cam in cameras:
        history = cam.frames() or [latest[cam.name]]
        matched[cam.name] = min(history, key=lambda f: abs(f.timestamp_ms - reference))
    return matched, drops
