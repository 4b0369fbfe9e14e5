"""The robot configuration file: ports, servo IDs, camera serials and names, calibration files, fps.

YAML or JSON, validated by pydantic. Documented examples: `configs/aloha.yaml` (standard bimanual ALOHA) and
`configs/mobile_aloha.yaml` (16-D action: 14 joints + base linear/angular velocity).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hardware.aloha.servo_layouts import ARM_MODELS, arm_joints
from hardware.base.config import BaseConfig
from hardware.dynamixel.arm import ArmSpec, JointSpec
from hardware.dynamixel.calibration_data import calibration_file
from hardware.dynamixel.control_table import MODELS

CONFIG_DIR = Path(__file__).parent / "configs"
BASE_ACTIONS = ("base_linear_vel", "base_angular_vel")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JointConfig(_Strict):
    name: str
    ids: list[int] = Field(min_length=1)
    servo: str  # Dynamixel model, e.g. XM430-W350
    direction: Literal[1, -1] = 1
    gripper: bool = False

    @field_validator("servo")
    @classmethod
    def _known_servo(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown servo model {v!r}; known: {sorted(MODELS)}")
        return v


class ArmConfig(_Strict):
    name: str
    role: Literal["leader", "follower"]
    port: str  # e.g. /dev/serial/by-id/usb-FTDI_..., or a udev symlink
    arm: str = Field(description="vx300s | wx250s, or 'custom' with `joints`")
    joints: list[JointConfig] | None = None
    baudrate: int = 1_000_000
    calibration: Path | None = None  # default: <store>/calibration/<name>.json
    on_fault: Literal["hold", "torque_off"] = "hold"
    retries: int = Field(2, ge=0, le=5)
    reply_timeout_ms: float = Field(2.0, ge=0.0, description="wait beyond 2x latency timer before a reply is late")
    profile_velocity: int = Field(0, ge=0)
    profile_acceleration: int = Field(0, ge=0)
    gripper_current: int = Field(300, ge=0)

    @model_validator(mode="after")
    def _layout(self) -> "ArmConfig":
        if self.arm == "custom" and not self.joints:
            raise ValueError(f"arm {self.name!r}: 'custom' needs a joints list")
        if self.arm != "custom" and self.arm not in ARM_MODELS:
            raise ValueError(f"arm {self.name!r}: unknown arm {self.arm!r}; expected one of {ARM_MODELS} or custom")
        ids = [i for j in self.joint_specs() for i in j.ids]
        if len(set(ids)) != len(ids):
            raise ValueError(f"arm {self.name!r}: servo IDs repeat: {ids}")
        return self

    def joint_specs(self) -> list[JointSpec]:
        if self.joints:
            return [JointSpec(j.name, tuple(j.ids), j.servo, j.direction, j.gripper) for j in self.joints]
        return arm_joints(self.arm)

    def spec(self) -> ArmSpec:
        return ArmSpec(self.name, self.port, self.joint_specs(), role=self.role, baudrate=self.baudrate,
                       on_fault=self.on_fault, retries=self.retries, timeout_margin_ms=self.reply_timeout_ms,
                       profile_velocity=self.profile_velocity,
                       profile_acceleration=self.profile_acceleration, gripper_current=self.gripper_current)

    def calibration_path(self, calibration_dir: Path) -> Path:
        return self.calibration or calibration_file(calibration_dir, self.name)


class CameraConfig(_Strict):
    name: str
    serial: str = ""
    width: int = Field(640, gt=0)
    height: int = Field(480, gt=0)
    fps: int = Field(30, gt=0)
    playback: Path | None = None  # play a recorded file instead of opening the device


class PairConfig(_Strict):
    name: str  # prefix of the joint names: left -> left_waist, ...
    leader: str
    follower: str


class GestureConfig(_Strict):
    enabled: bool = True
    close_threshold: float = Field(0.15, ge=0.0, le=1.0)  # both leader grippers below this (normalized) ...
    hold_s: float = Field(0.2, ge=0.0)  # ... for this long starts teleop
    timeout_s: float | None = None


class TakeoverConfig(_Strict):
    """Human takeover during `aloha rollout --record` (hardware/aloha/takeover.py): both leader grippers squeezed
    shut for `hold_s` hands the followers to the leader arms, the same again hands them back."""

    close_threshold: float = Field(0.15, ge=0.0, le=1.0)  # both leader grippers below this (normalized) ...
    # ... for this long: longer than a casual squeeze or the emulated stand-in's gripper sway (~0.7 s shut per cycle)
    hold_s: float = Field(1.0, gt=0.0)
    ramp_s: float = Field(0.5, ge=0.0)  # followers blend from the policy's last action to the leaders' pose


class AlohaConfig(_Strict):
    name: str = "aloha"
    fps: float = Field(50.0, gt=0)
    arms: list[ArmConfig]
    pairs: list[PairConfig] = Field(min_length=1)
    cameras: list[CameraConfig] = Field(default_factory=list)
    base: BaseConfig | None = None  # Mobile ALOHA: the AgileX Tracer (hardware/base); None = a stationary ALOHA
    start_gesture: GestureConfig = Field(default_factory=GestureConfig)
    takeover: TakeoverConfig = Field(default_factory=TakeoverConfig)
    # After the start gesture the followers move to the leaders' pose over this many seconds instead of jumping
    # there in one control step (a jump at full speed can hurt the robot or a person next to it).
    start_ramp_s: float = Field(2.0, ge=0.0)
    calibration_dir: Path | None = None  # default: <store>/calibration

    @model_validator(mode="before")
    @classmethod
    def _old_base_key(cls, data):
        # Files written before the base driver existed called the section `mobile_base` (limits only).
        if isinstance(data, dict) and "mobile_base" in data:
            data = dict(data)
            old = data.pop("mobile_base")
            if "base" in data:
                raise ValueError("both 'base' and its old name 'mobile_base' are given; keep 'base'")
            data["base"] = old
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "AlohaConfig":
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        ports = [a.port for a in self.arms]
        if len(set(ports)) != len(ports):
            raise ValueError(f"two arms share a port: {ports}")
        arms = {a.name: a for a in self.arms}
        for pair in self.pairs:
            for role in ("leader", "follower"):
                arm = arms.get(getattr(pair, role))
                if arm is None:
                    raise ValueError(f"pair {pair.name!r}: no arm named {getattr(pair, role)!r}")
                if arm.role != role:
                    raise ValueError(f"pair {pair.name!r}: arm {arm.name!r} is a {arm.role}, used as {role}")
            if len(arms[pair.leader].joint_specs()) != len(arms[pair.follower].joint_specs()):
                raise ValueError(f"pair {pair.name!r}: leader and follower have different joint counts")
        cams = [c.name for c in self.cameras]
        if len(set(cams)) != len(cams):
            raise ValueError(f"camera names repeat: {cams}")
        return self

    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"no arm named {name!r}; arms: {[a.name for a in self.arms]}")

    def leaders(self) -> list[ArmConfig]:
        return [self.arm(p.leader) for p in self.pairs]

    def followers(self) -> list[ArmConfig]:
        return [self.arm(p.follower) for p in self.pairs]

    @property
    def joint_names(self) -> list[str]:
        return [f"{p.name}_{j.name}" for p in self.pairs for j in self.arm(p.follower).joint_specs()]

    @property
    def action_names(self) -> list[str]:
        return self.joint_names + (list(BASE_ACTIONS) if self.base else [])

    @classmethod
    def load(cls, path: Path | str) -> "AlohaConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        try:
            return cls.model_validate(data)
        except Exception as exc:
            raise ValueError(f"{path}: invalid robot configuration:\n{exc}") from exc


def default_config_path(name: str = "aloha") -> Path:
    return CONFIG_DIR / f"{name}.yaml"
