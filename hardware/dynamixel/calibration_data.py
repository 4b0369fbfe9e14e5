"""Per-arm calibration: where each joint's zero is, how far it may go, and the gripper's closed/open ends.

Stored as one human-readable JSON file per arm. Positions are raw ticks in the servo's frame, "unwrapped":
a reading is mapped to the value nearest the middle of the calibrated range, so the single-turn wrap
(4095 -> 0) and extended-position overflow or lost turns after a power cycle never look like a jump.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assets_store.hashing import atomic_path
from hardware.dynamixel.errors import CalibrationError

TICKS_PER_TURN = 4096
CALIBRATION_VERSION = 1


def unwrap_near(raw: int, reference: float, turn: int = TICKS_PER_TURN) -> int:
    """The value congruent to `raw` (mod one turn) that lies nearest `reference`."""
    return int(round(reference + ((raw - reference + turn / 2) % turn) - turn / 2))


@dataclass
class JointCalibration:
    ids: list[int]
    zero: int  # ticks at the joint's zero pose (gripper: closed)
    min: int
    max: int
    closed: int | None = None  # grippers only
    open: int | None = None

    @property
    def is_gripper(self) -> bool:
        return self.closed is not None

    @property
    def middle(self) -> float:
        return (self.min + self.max) / 2.0

    @property
    def wraps(self) -> bool:
        """Range below one turn: readings can be unwrapped around its middle."""
        return self.max - self.min < TICKS_PER_TURN

    def unwrap(self, raw: int) -> int:
        return unwrap_near(raw, self.middle) if self.wraps else raw

    def validate(self, name: str) -> None:
        if self.max <= self.min:
            raise CalibrationError(f"joint {name!r}: empty range [{self.min}, {self.max}]; move it through its range")
        if not self.min <= self.zero <= self.max:
            raise CalibrationError(f"joint {name!r}: zero {self.zero} outside its range [{self.min}, {self.max}]")
        if self.is_gripper:
            if self.open is None or abs(self.open - self.closed) < 20:
                raise CalibrationError(f"gripper {name!r}: open and closed positions are the same; open it fully")


@dataclass
class ArmCalibration:
    arm: str
    joints: dict[str, JointCalibration]
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    version: int = CALIBRATION_VERSION
    notes: str = "positions in raw servo ticks (4096 per turn); grippers normalize closed=0, open=1"

    def validate(self) -> None:
        for name, joint in self.joints.items():
            joint.validate(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> Path:
        """Write atomically: `path` is the old file or the new one, never half of one (see `keep_previous`)."""
        self.validate()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> "ArmCalibration":
        path = Path(path)
        if not path.exists():
            raise CalibrationError(f"no calibration file at {path}")
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != CALIBRATION_VERSION:
                raise CalibrationError(f"{path}: calibration version {raw.get('version')!r}, expected {CALIBRATION_VERSION}")
            joints = {name: JointCalibration(**j) for name, j in raw.pop("joints").items()}
            calib = cls(joints=joints, **raw)
        except CalibrationError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise CalibrationError(f"{path}: unreadable calibration file: {exc}") from exc
        calib.validate()
        return calib

    def digest(self) -> str:
        body = json.dumps({n: asdict(j) for n, j in sorted(self.joints.items())}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def keep_previous(path: Path) -> Path | None:
    """Keep the file at `path` (an earlier calibration, which recorded episodes' calibration hashes refer to) as
    `<name>.<its mtime>.bak` beside it before it is replaced; None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.{stamp}-{n}.bak")
    try:
        os.link(path, backup)  # same bytes, no copy; the atomic save then replaces only the name `path`
    except OSError:  # a filesystem without hard links
        with atomic_path(backup) as tmp:
            shutil.copy2(path, tmp)
    return backup


def calibration_file(directory: Path, arm: str) -> Path:
    return Path(directory) / f"{arm}.json"
