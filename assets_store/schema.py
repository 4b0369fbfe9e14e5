"""The episode schema (DESIGN.md, "Episode"): array names, dtypes and the group attributes."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assets_store.errors import EpisodeError, StoreError
from assets_store.names import validate_name

EPISODE_SCHEMA = "aloha-episode"
EPISODE_SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)

# Array names follow the original ALOHA HDF5 layout.
QPOS = "observations/qpos"
QVEL = "observations/qvel"
EFFORT = "observations/effort"
ACTION = "action"
TIMESTAMPS = "timestamps"
IMAGES_GROUP = "observations/images"

# Upper bounds on what an episode may declare, so a damaged or hostile header cannot make a reader allocate without
# limit: 1M steps is 5.5 h at 50 Hz (ALOHA episodes are minutes); 4096 px per side covers 4K cameras.
MAX_STEPS = 1_000_000
MAX_FRAME_SIDE = 4096


def image_array(camera: str) -> str:
    return f"{IMAGES_GROUP}/{camera}"


def frame_info_array(camera: str) -> str:
    return f"{IMAGES_GROUP}/{camera}_frame_info"


@dataclass(frozen=True)
class CameraSpec:
    name: str
    height: int
    width: int
    serial: str = ""

    def __post_init__(self):
        validate_name(self.name, "camera name")
        if not (0 < self.height <= MAX_FRAME_SIDE and 0 < self.width <= MAX_FRAME_SIDE):
            raise ValueError(
                f"camera {self.name!r}: expected a resolution of 1..{MAX_FRAME_SIDE} pixels per side, "
                f"got {self.height}x{self.width}"
            )


DEFAULT_CAMERA = "top"  # the original ALOHA's overhead camera: the one camera the simulator, tests and ACT default to


def parse_hxw(text: str) -> tuple[int, int]:
    """'480x640' -> (480, 640): height first, as in the image arrays. ValueError names the text."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected HxW such as 480x640, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"expected a positive resolution, got {text!r}")
    if h > MAX_FRAME_SIDE or w > MAX_FRAME_SIDE:
        raise ValueError(f"expected at most {MAX_FRAME_SIDE} pixels per side, got {text!r}")
    return h, w


@dataclass
class EpisodeInfo:
    """What the recorder knows about an episode before its first step."""

    robot: str
    joint_names: list[str]
    fps: float
    cameras: list[CameraSpec] = field(default_factory=list)
    action_names: list[str] | None = None  # default: joint_names (A = J); Mobile ALOHA adds base velocities
    task: str = ""
    session: str = ""
    operator: str = ""
    start_time: float = field(default_factory=time.time)
    software_version: str = ""
    calibration_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.action_names is None:
            self.action_names = list(self.joint_names)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names or [])

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def to_attrs(self) -> dict[str, Any]:
        attrs = dataclasses.asdict(self)
        attrs["cameras"] = [dataclasses.asdict(c) for c in self.cameras]
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> "EpisodeInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in attrs.items() if k in known}
        kwargs["cameras"] = [c if isinstance(c, CameraSpec) else CameraSpec(**c) for c in attrs.get("cameras", [])]
        return cls(**kwargs)


# ---------------------------------------------------------------------------------------------- reading the header
def check_schema(path: Path, attrs: dict) -> None:
    if attrs.get("schema") != EPISODE_SCHEMA:
        raise EpisodeError(path, "attrs.schema", f"expected {EPISODE_SCHEMA!r}, got {attrs.get('schema')!r}")
    version = attrs.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise EpisodeError(
            path, "attrs.schema_version",
            f"unknown schema version {version!r}; this software reads versions {list(SUPPORTED_SCHEMA_VERSIONS)} "
            "(upgrade the software, or re-export the episode)",
        )


@dataclass(frozen=True)
class EpisodeHeader:
    """An episode's group attributes, type-checked: what every reader and check computes with."""

    info: EpisodeInfo
    num_steps: int
    status: str  # "ok", or "failed" for an episode cut short by a robot fault
    counters: dict[str, Any]  # the recorder's own; those in COUNTED are whole numbers

    def count(self, name: str) -> int:
        return int(self.counters.get(name) or 0)

    def declared_arrays(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The shape and dtype of every array the header declares; optional ones (qvel, effort) included."""
        T, J = self.num_steps, self.info.num_joints
        out = {
            QPOS: ((T, J), np.dtype(np.float32)),
            ACTION: ((T, self.info.action_dim), np.dtype(np.float32)),
            TIMESTAMPS: ((T,), np.dtype(np.float64)),
            QVEL: ((T, J), np.dtype(np.float32)),
            EFFORT: ((T, J), np.dtype(np.float32)),
        }
        for cam in self.info.cameras:
            out[image_array(cam.name)] = ((T, cam.height, cam.width, 3), np.dtype(np.uint8))
            out[frame_info_array(cam.name)] = ((T, 2), np.dtype(np.float64))
        return out


# The recorder's counters that readers compute with (the others are informational).
COUNTED = ("dropped_frames", "late_steps")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def parse_header(path: Path, attrs: Any) -> EpisodeHeader:
    """The header of the episode at `path`; EpisodeError names the first attribute that is not what the schema says."""

    def bad(name: str, expected: str, value: Any) -> EpisodeError:
        return EpisodeError(path, f"attrs.{name}", f"expected {expected}, got {value!r:.80}")

    if not isinstance(attrs, dict):
        raise EpisodeError(path, "attrs", f"expected a JSON object of attributes, got {type(attrs).__name__}")
    check_schema(path, attrs)
    steps = attrs.get("num_steps")
    if not _whole(steps) or not 1 <= steps <= MAX_STEPS:
        raise bad("num_steps", f"a whole number of steps in 1..{MAX_STEPS}", steps)
    fps = attrs.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        raise bad("fps", "a positive number of steps per second", fps)
    if not _strings(attrs.get("joint_names")):
        raise bad("joint_names", "a list of strings", attrs.get("joint_names"))
    if attrs.get("action_names") is not None and not _strings(attrs["action_names"]):
        raise bad("action_names", "a list of strings", attrs["action_names"])
    for name in ("extra", "counters"):
        if attrs.get(name) is not None and not isinstance(attrs[name], dict):
            raise bad(name, "an object", attrs[name])
    counters = dict(attrs.get("counters") or {})
    for name in COUNTED:
        if counters.get(name) is not None and not (_whole(counters[name]) and counters[name] >= 0):
            raise bad(f"counters.{name}", "a whole number >= 0", counters[name])
    status = attrs.get("status", "ok")
    if not isinstance(status, str):
        raise bad("status", "a string", status)
    for name in ("robot", "task", "session", "operator", "software_version", "calibration_hash"):
        if attrs.get(name) is not None and not isinstance(attrs[name], str):
            raise bad(name, "a string", attrs[name])
    if not isinstance(attrs.get("robot"), str):
        raise bad("robot", "a string", attrs.get("robot"))
    for name in ("start_time", "episode_index"):
        value = attrs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise bad(name, "a number", value)
    cameras = attrs.get("cameras", [])
    if not isinstance(cameras, list):
        raise bad("cameras", "a list of cameras", cameras)
    specs = []
    for i, cam in enumerate(cameras):
        if not isinstance(cam, dict) or not all(_whole(cam.get(k)) for k in ("height", "width")):
            raise bad(f"cameras[{i}]", "{name, height, width, serial} with whole-number height and width", cam)
        try:
            specs.append(CameraSpec(**cam))
        except (TypeError, ValueError, StoreError) as exc:
            raise EpisodeError(path, f"attrs.cameras[{i}]", str(exc)) from None
    try:
        info = EpisodeInfo.from_attrs({**attrs, "cameras": specs})
    except (TypeError, ValueError) as exc:
        raise EpisodeError(path, "attrs", str(exc)) from None
    return EpisodeHeader(info=info, num_steps=steps, status=status, counters=counters)
