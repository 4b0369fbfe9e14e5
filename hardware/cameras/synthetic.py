"""Feeds a SoftwareSource at a fixed rate with generated frames: the emulated robot's cameras, tests, benches.

Frames are cheap to make (a precomputed gradient rolled by the frame number, plus the number stamped in the
corner so a reader can check which frame it got). Drops and a vanishing camera can be injected.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from hardware.cameras.sources import SoftwareSource


def pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)),
                     np.full_like(x, (seed * 53) % 256)], axis=-1)
    return base.astype(np.uint8)


def frame_number_in(image: np.ndarray) -> int:
    """The frame number stamped by `SyntheticFeeder` (first 4 pixels of row 0, red channel, little endian)."""
    return int(sum(int(image[0, i, 0]) << (8 * i) for i in range(4)))


class SyntheticFeeder:
    def __init__(self, source: SoftwareSource, fps: float | None = None, seed: int = 0):
        self.source = source
        self.fps = float(fps or source.fps)
        self.base = pattern(source.height, source.width, seed)
        self.drop_numbers: set[int] = set()  # frame numbers never delivered
        self.pushed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._number = 0

    def make(self, number: int) -> np.ndarray:
        image = np.roll(self.base, number % self.source.width, axis=1)
        image[0, :4, 0] = [(number >> (8 * i)) & 0xFF for i in range(4)]
        return image

    def start(self) -> "SyntheticFeeder":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"feeder-{self.source.description}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_time = time.monotonic()
        while not self._stop.is_set():
            number = self._number
            self._number += 1
            if number not in self.drop_numbers:
                self.source.push(self.make(number), number=number, timestamp_ms=time.monotonic() * 1000.0)
                self.pushed += 1
            next_time += period
            delay = next_time - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_time = time.monotonic()

    def vanish(self) -> None:
        """Stop feeding and mark the device gone, like a camera whose cable was pulled."""
        self.stop()
        self.source.vanish()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
