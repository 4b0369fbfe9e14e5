"""An arm = the servos on one bus, seen as joints.

Joint <-> servo mapping includes shadow servos (a second servo on the shoulder and elbow, driven with the same
goal). Each step is one Sync Read (effort, velocity, position of every servo) and one Sync Write (goal positions).
Joints are radians from the calibrated zero; grippers are normalized to [0, 1] (closed .. open).

A fault (silent servo, corrupt replies, hardware-error status, reading outside the calibrated range) stops the arm
safely - followers hold their last position or drop torque, as configured - and raises a `ServoFault`; later
commands raise `ArmStopped`. `release()` drops torque on every servo and is safe to call twice.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from hardware.dynamixel.bus import DynamixelBus
from hardware.dynamixel.calibration_data import ArmCalibration
from hardware.dynamixel.control_table import ModelSpec, OperatingMode, decode, model
from hardware.dynamixel.errors import (
    ArmStopped,
    CalibrationError,
    DynamixelError,
    ServoFault,
    ServoModelMismatch,
    ServoRangeError,
)
from hardware.dynamixel.port import USB_SERIAL_SYSFS

log = logging.getLogger(__name__)

# One read per step covers effort (126, 2 bytes), velocity (128, 4) and position (132, 4) on every X-series model.
READ_ADDRESS, READ_LENGTH = 126, 10
TORQUE_ENABLE, GOAL_POSITION = 64, 116
TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class JointSpec:
    name: str
    ids: tuple[int, ...]  # primary servo first, then its shadows
    model: str
    direction: int = 1  # +1 / -1: joint angle sign relative to servo ticks
    gripper: bool = False
    mode: int | None = None  # operating mode override (default: position; follower grippers current-based)


@dataclass
class ArmSpec:
    name: str
    port: str
    joints: list[JointSpec]
    role: Literal["leader", "follower"] = "follower"
    baudrate: int = 1_000_000
    on_fault: Literal["hold", "torque_off"] = "hold"
    retries: int = 2
    min_retries: int = 1  # retries granted even past the control period's deadline
    latency_ms: float = 1.0
    timeout_margin_ms: float = 2.0
    profile_velocity: int = 0  # 0 = as fast as possible (0.229 rpm units)
    profile_acceleration: int = 0  # (214.577 rev/min^2 units)
    gripper_current: int = 300  # follower gripper current limit in current-based position mode (raw units)
    range_margin: int = 80  # ticks a reading may stray beyond the calibrated range before it is a fault
    sysfs_root: Path = field(default=USB_SERIAL_SYSFS, repr=False)

    @property
    def ids(self) -> list[int]:
        return [i for j in self.joints for i in j.ids]

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]


@dataclass
class ArmState:
    positions: np.ndarray  # (J,) rad; grippers in [0, 1]
    velocities: np.ndarray  # (J,) rad/s; grippers in range/s
    efforts: np.ndarray  # (J,) mA where the model has current, else load in %
    time: float


class Arm:
    def __init__(self, spec: ArmSpec, calibration: ArmCalibration | None = None, *, bus: DynamixelBus | None = None):
        self.spec = spec
        self.calibration = calibration
        self.bus = bus or DynamixelBus(spec.port, spec.baudrate, retries=spec.retries, min_retries=spec.min_retries,
                                       latency_ms=spec.latency_ms,
                                       timeout_margin_ms=spec.timeout_margin_ms, sysfs_root=spec.sysfs_root)
        self.models: dict[int, ModelSpec] = {i: model(j.model) for j in spec.joints for i in j.ids}
        self._joint_of = {i: j.name for j in spec.joints for i in j.ids}
        self.last_raw: dict[int, int] = {}
        self.faulted: ServoFault | None = None
        self.connected = False
        self.torque_on = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def joint_names(self) -> list[str]:
        return self.spec.joint_names

    # ------------------------------------------------------------------ lifecycle
    def connect(self, *, require_calibration: bool = True, configure: bool = True) -> None:
        if require_calibration:
            self._check_calibration()
        self.bus.open()
        try:
            for servo_id in self.spec.ids:
                try:
                    number = self.bus.ping(servo_id)
                except ServoFault as fault:
                    raise fault.with_context(self.name, self._joint_of[servo_id]) from None
                expected = self.models[servo_id]
                if number != expected.model_number:
                    raise ServoModelMismatch(self.spec.port, servo_id,
                                             f"model number {number}, expected {expected.name} ({expected.model_number})",
                                             arm=self.name, joint=self._joint_of[servo_id])
            self.connected = True
            if configure:
                self.configure()
        except BaseException:
            self.release()
            raise

    def _check_calibration(self) -> None:
        if self.calibration is None:
            raise CalibrationError(f"arm {self.name!r} is not calibrated: run `aloha calibrate --arm {self.name}`")
        calib = self.calibration.joints
        for joint in self.spec.joints:
            if joint.name not in calib:
                raise CalibrationError(f"arm {self.name!r}: calibration has no joint {joint.name!r}; recalibrate")
            if list(calib[joint.name].ids) != list(joint.ids):
                raise CalibrationError(f"arm {self.name!r}, joint {joint.name!r}: calibrated for servo IDs "
                                       f"{calib[joint.name].ids}, configured {list(joint.ids)}; recalibrate")
            if joint.gripper != calib[joint.name].is_gripper:
                raise CalibrationError(f"arm {self.name!r}, joint {joint.name!r}: gripper flag differs from calibration")

    def _mode(self, joint: JointSpec) -> int:
        if joint.mode is not None:
            return joint.mode
        if joint.gripper and self.spec.role == "follower" and model(joint.model).has("goal_current"):
            return OperatingMode.CURRENT_BASED_POSITION
        return OperatingMode.POSITION

    def configure(self) -> None:
        """Torque off, operating modes and profiles (EEPROM needs torque off), then followers hold where they are."""
        self.bus.broadcast_write(TORQUE_ENABLE, 1, 0)
        self.torque_on = False
        for joint in self.spec.joints:
            mode = self._mode(joint)
            for servo_id in joint.ids:
                spec = self.models[servo_id]
                self._write(servo_id, "operating_mode", mode)
                if self.spec.role == "follower":
                    self._write(servo_id, "profile_velocity", self.spec.profile_velocity)
                    self._write(servo_id, "profile_acceleration", self.spec.profile_acceleration)
                    if mode == OperatingMode.CURRENT_BASED_POSITION and spec.has("goal_current"):
                        self._write(servo_id, "goal_current", self.spec.gripper_current)
        self.read()  # refuses to go on if any reading is outside the calibrated range
        if self.spec.role == "follower":
            self.set_torque(True)

    def _write(self, servo_id: int, field_name: str, value: int) -> None:
        f = self.models[servo_id].field(field_name)
        try:
            self.bus.write(servo_id, f.address, f.size, value)
        except ServoFault as fault:
            raise fault.with_context(self.name, self._joint_of[servo_id]) from None

    def set_torque(self, enable: bool) -> None:
        if enable:
            # goal = present first, so switching torque on never jumps
            self.bus.sync_write(GOAL_POSITION, 4, dict(self.last_raw))
        for servo_id in self.spec.ids:
            self._write(servo_id, "torque_enable", int(enable))
        self.torque_on = enable

    def release(self) -> bool:
        """Torque off on every servo (broadcast, reaches silent ones too), verify where possible, close the port."""
        if self.bus.port is None:
            return True
        verified = False
        try:
            for _ in range(2):  # no replies to a broadcast: send it twice
                self.bus.broadcast_write(TORQUE_ENABLE, 1, 0)
            verified = all(v[0] == 0 for v in self.bus.sync_read(self.spec.ids, TORQUE_ENABLE, 1).values())
        except (DynamixelError, OSError) as exc:
            log.warning("arm %s: could not verify torque off: %s", self.name, exc)
        finally:
            self.torque_on = False
            self.connected = False
            self.bus.close()
        return verified

    # ------------------------------------------------------------------ faults
    def _fail(self, fault: ServoFault) -> None:
        fault = fault.with_context(self.name, self._joint_of.get(fault.servo_id)) if fault.arm is None else fault
        self.faulted = fault
        try:
            self.stop_safely()
        finally:
            raise fault

    def stop_safely(self) -> None:
        """Followers hold their last known position or drop torque (spec.on_fault); best effort, never raises."""
        try:
            if self.spec.role == "follower" and self.spec.on_fault == "hold" and self.last_raw:
                self.bus.sync_write(GOAL_POSITION, 4, dict(self.last_raw))
            else:
                for _ in range(2):
                    self.bus.broadcast_write(TORQUE_ENABLE, 1, 0)
                self.torque_on = False
        except (DynamixelError, OSError) as exc:
            log.error("arm %s: safe stop failed: %s", self.name, exc)

    def _check_usable(self) -> None:
        if self.faulted is not None:
            raise ArmStopped(f"arm {self.name!r} is stopped after a fault: {self.faulted}")
        if not self.connected:
            raise DynamixelError(f"arm {self.name!r} is not connected")

    # ------------------------------------------------------------------ raw access (calibration)
    def read_raw(self) -> dict[str, int]:
        """Signed present position of each joint's primary servo, no calibration applied."""
        data = self.bus.sync_read(self.spec.ids, READ_ADDRESS, READ_LENGTH)
        self.last_raw = {i: decode(d[6:10], 4, signed=True) for i, d in data.items()}
        return {j.name: self.last_raw[j.ids[0]] for j in self.spec.joints}

    # ------------------------------------------------------------------ control step
    def read(self, deadline: float | None = None) -> ArmState:
        self._check_usable()  # calibration was checked at connect() and cannot change afterwards
        try:
            data = self.bus.sync_read(self.spec.ids, READ_ADDRESS, READ_LENGTH, deadline)
        except ServoFault as fault:
            self._fail(fault)
        n = len(self.spec.joints)
        pos, vel, eff = np.empty(n), np.empty(n), np.empty(n)
        raw = {i: decode(d[6:10], 4, signed=True) for i, d in data.items()}
        for k, joint in enumerate(self.spec.joints):
            cal = self.calibration.joints[joint.name]
            for servo_id in joint.ids:  # shadows too: a shadow off its range is as dangerous
                u = cal.unwrap(raw[servo_id])
                if not cal.min - self.spec.range_margin <= u <= cal.max + self.spec.range_margin:
                    self.last_raw.update({i: r for i, r in raw.items() if i != servo_id})
                    self._fail(ServoRangeError(self.spec.port, servo_id,
                                               f"reading {u} ticks outside calibrated range [{cal.min}, {cal.max}]"))
            d = data[joint.ids[0]]
            u = cal.unwrap(raw[joint.ids[0]])
            spec = self.models[joint.ids[0]]
            ticks_per_s = decode(d[2:6], 4, signed=True) * spec.velocity_unit_rpm / 60.0 * spec.resolution
            effort = decode(d[0:2], 2, signed=True)
            eff[k] = effort * spec.current_unit_ma if spec.current_unit_ma else effort * 0.1
            if joint.gripper:
                span = cal.open - cal.closed
                pos[k] = min(1.0, max(0.0, (u - cal.closed) / span))
                vel[k] = ticks_per_s / span
            else:
                pos[k] = (u - cal.zero) * joint.direction * TWO_PI / spec.resolution
                vel[k] = ticks_per_s * joint.direction * TWO_PI / spec.resolution
        self.last_raw = raw
        return ArmState(pos, vel, eff, time.monotonic())

    def goal_ticks(self, targets: np.ndarray) -> dict[int, int]:
        """Joint targets -> raw goal per servo, clipped to the calibrated range, in each servo's own frame."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != (len(self.spec.joints),):
            raise ValueError(f"arm {self.name!r}: expected {len(self.spec.joints)} joint targets, got {targets.shape}")
        if not np.all(np.isfinite(targets)):
            raise ValueError(f"arm {self.name!r}: non-finite joint target {targets.tolist()}")
        goals = {}
        for k, joint in enumerate(self.spec.joints):
            cal = self.calibration.joints[joint.name]
            spec = self.models[joint.ids[0]]
            if joint.gripper:
                u = cal.closed + float(np.clip(targets[k], 0.0, 1.0)) * (cal.open - cal.closed)
            else:
                u = cal.zero + targets[k] * joint.direction * spec.resolution / TWO_PI
            u = int(round(min(max(u, cal.min), cal.max)))
            mode = self._mode(joint)
            for servo_id in joint.ids:
                present = self.last_raw.get(servo_id, u)
                goal = present + (u - cal.unwrap(present))  # same displacement, expressed in the servo's frame
                goals[servo_id] = goal % spec.resolution if mode == OperatingMode.POSITION else goal
        return goals

    def write(self, targets: np.ndarray) -> None:
        self._check_usable()
        if self.spec.role != "follower":
            raise DynamixelError(f"arm {self.name!r} is a leader: it is read, not driven")
        goals = self.goal_ticks(targets)
        try:
            self.bus.sync_write(GOAL_POSITION, 4, goals)
        except ServoFault as fault:
            self._fail(fault)
