"""Where camera frames come from: the seam between pyrealsense2 and the `Camera` class.

`RealSenseSource` (a device by serial number, through rs.pipeline), `PlaybackSource` (a recorded file), and
`SoftwareSource` (an rs.software_device whose colour sensor is fed frames by the program: tests, the emulated
robot). A software device is invisible to rs.pipeline, hence this seam; every source hands out librealsense
frames converted the same way, with the device's frame number and timestamp.
"""

from __future__ import annotations

from hardware.interfaces import RobotError

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyrealsense2 as rs


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB, owned by us (copied out of librealsense)
    number: int  # device frame counter: gaps are dropped frames
    timestamp_ms: float  # device timestamp
    host_time: float  # time.monotonic() when we received it


class SourceError(RobotError):
    pass


class FrameSource(Protocol):
    description: str

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> Frame | None:
        """The next frame, or None when none came within `timeout_s`. Raises SourceError when the source is gone."""

    def stop(self) -> None: ...


def _to_frame(frame) -> Frame:
    video = frame.as_video_frame()
    image = np.asanyarray(video.get_data())
    if image.ndim != 3 or image.shape[2] != 3:
        raise SourceError(f"expected an RGB8 colour frame, got data of shape {image.shape}")
    return Frame(np.array(image, copy=True), int(frame.get_frame_number()), float(frame.get_timestamp()),
                 time.monotonic())


class _PipelineSource:
    """rs.pipeline with a colour stream (a device or a recorded file)."""

    def __init__(self, description: str, width: int, height: int, fps: int):
        self.description = description
        self.width, self.height, self.fps = width, height, fps
        self.pipeline = None

    def _config(self) -> "rs.config":
        raise NotImplementedError

    def start(self) -> None:
        pipeline = rs.pipeline()
        try:
            pipeline.start(self._config())
        except RuntimeError as exc:
            raise SourceError(f"{self.description}: cannot start: {exc}") from exc
        self.pipeline = pipeline

    def read(self, timeout_s: float) -> Frame | None:
        if self.pipeline is None:
            raise SourceError(f"{self.description}: not started")
        try:
            ok, frames = self.pipeline.try_wait_for_frames(int(timeout_s * 1000))
        except RuntimeError as exc:  # device unplugged, file ended
            raise SourceError(f"{self.description}: {exc}") from exc
        if not ok:
            return None
        color = frames.get_color_frame()
        return _to_frame(color) if color else None

    def stop(self) -> None:
        if self.pipeline is not None:
            try:
                self.pipeline.stop()
            except RuntimeError:
                pass
            self.pipeline = None


class RealSenseSource(_PipelineSource):
    def __init__(self, serial: str, width: int = 640, height: int = 480, fps: int = 30):
        super().__init__(f"RealSense {serial}", width, height, fps)
        self.serial = serial

    def _config(self) -> "rs.config":
        config = rs.config()
        config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        return config


class PlaybackSource(_PipelineSource):
    """A recording made with rs.recorder (.bag / .db3), played back through the same pipeline."""

    def __init__(self, path: Path, width: int = 640, height: int = 480, fps: int = 30, repeat: bool = False):
        super().__init__(f"playback {path}", width, height, fps)
        self.path = Path(path)
        self.repeat = repeat

    def _config(self) -> "rs.config":
        if not self.path.exists():
            raise SourceError(f"{self.description}: no such file")
        config = rs.config()
        config.enable_device_from_file(str(self.path), repeat_playback=self.repeat)
        config.enable_stream(rs.stream.color)
        return config


class SoftwareSource:
    """An rs.software_device with one colour sensor; `push()` injects a frame with its number and timestamp."""

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30, name: str = "software"):
        self.description = f"software camera {name}"
        self.width, self.height, self.fps = width, height, fps
        self.device = rs.software_device()
        # identity, so rs.recorder can wrap this device and the recording plays back as a camera
        self.device.register_info(rs.camera_info.name, f"Software {name}")
        self.device.register_info(rs.camera_info.serial_number, f"sw-{name}")
        self.device.register_info(rs.camera_info.product_line, "D400")
        self.sensor = self.device.add_sensor("color")
        intrinsics = rs.intrinsics()
        intrinsics.width, intrinsics.height = width, height
        intrinsics.fx = intrinsics.fy = float(width)
        intrinsics.ppx, intrinsics.ppy = width / 2, height / 2
        intrinsics.model = rs.distortion.none
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid = rs.stream.color, 0, 0
        stream.width, stream.height, stream.fps, stream.bpp = width, height, fps, 3
        stream.fmt = rs.format.rgb8
        stream.intrinsics = intrinsics
        self.profile = self.sensor.add_video_stream(stream).as_video_stream_profile()
        self.queue = rs.frame_queue(8, keep_frames=True)
        self._next_number = 0
        self._keep = collections.deque(maxlen=16)  # pixel buffers stay alive while librealsense may read them
        self._lock = threading.Lock()
        self.started = False
        self.gone = False

    def start(self) -> None:
        self.sensor.open(self.profile)
        self.sensor.start(self.queue)
        self.started = True

    def push(self, image: np.ndarray, number: int | None = None, timestamp_ms: float | None = None) -> int:
        """Feed one frame; returns its frame number. A skipped number is a dropped frame downstream."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.shape != (self.height, self.width, 3):
            raise ValueError(f"{self.description}: expected ({self.height}, {self.width}, 3), got {image.shape}")
        with self._lock:
            number = self._next_number if number is None else int(number)
            self._next_number = number + 1
            frame = rs.software_video_frame()
            frame.pixels = image
            frame.bpp = 3
            frame.stride = self.width * 3
            frame.timestamp = time.monotonic() * 1000.0 if timestamp_ms is None else float(timestamp_ms)
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.frame_number = number
            frame.profile = self.profile
            self._keep.append(image)
            self.sensor.on_video_frame(frame)
        return number

    def vanish(self) -> None:
        """Simulate an unplugged camera: reads fail from now on."""
        self.gone = True

    def read(self, timeout_s: float) -> Frame | None:
        if self.gone:
            raise SourceError(f"{self.description}: device disconnected")
        ok, frame = self.queue.try_wait_for_frame(int(timeout_s * 1000))
        return _to_frame(frame) if ok else None

    def stop(self) -> None:
        if self.started:
            self.started = False
            try:
                self.sensor.stop()
                self.sensor.close()
            except RuntimeError:
                pass
