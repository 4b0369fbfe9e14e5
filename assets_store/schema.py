"""The episode schema (DESIGN.md, "Episode"): array names, dtypes and the group attributes."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

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
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"camera {self.name!r}: resolution must be positive, got {self.height}x{self.width}")


DEFAULT_CAMERA = "top"  # the original ALOHA's overhead camera: the one camera the simulator, tests and ACT default to


def parse_hxw(text: str) -> tuple[int, int]:
    """'480x640' -> (480, 640): height first, as in the image arrays. ValueError names the text."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected HxW such as 480x640, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"expected a positive resolution, got {text!r}")
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
        kwargs["cameras"] = [CameraSpec(**c) for c in attrs.get("cameras", [])]
        return cls(**kwargs)
