"""The interactive calibration procedure, as steps a CLI (or a test) drives.

1. zero pose: the operator puts the arm in its reference pose -> each joint's zero;
2. range sweep: the operator moves every joint through its full range while we sample -> min / max;
3. gripper: the operator closes the gripper fully -> closed (open = the far end of its range).
Torque stays off throughout; samples are unwrapped against the previous sample, so a sweep across the
4095 -> 0 boundary (or an extended-position overflow) is continuous.
"""

from __future__ import annotations

from hardware.dynamixel.arm import Arm
from hardware.dynamixel.calibration_data import TICKS_PER_TURN, ArmCalibration, JointCalibration, unwrap_near
from hardware.dynamixel.errors import CalibrationError


class Calibrator:
    def __init__(self, arm: Arm):
        self.arm = arm
        self.zero: dict[str, int] | None = None
        self._last: dict[str, int] = {}
        self.min: dict[str, int] = {}
        self.max: dict[str, int] = {}
        self.closed: dict[str, int] = {}

    def start(self) -> None:
        """Connect without calibration, torque off."""
        self.arm.connect(require_calibration=False, configure=False)
        self.arm.bus.broadcast_write(64, 1, 0)

    def _read(self) -> dict[str, int]:
        raw = self.arm.read_raw()
        if not self._last:
            self._last = dict(raw)
        # continuity: each sample is taken as the value nearest the previous one
        cont = {name: unwrap_near(value, self._last[name]) for name, value in raw.items()}
        self._last = cont
        return cont

    def capture_zero(self) -> dict[str, int]:
        self._last = {}
        self.zero = self._read()
        self.min = dict(self.zero)
        self.max = dict(self.zero)
        return dict(self.zero)

    def sample(self) -> dict[str, int]:
        if self.zero is None:
            raise CalibrationError("capture the zero pose first")
        values = self._read()
        for name, v in values.items():
            self.min[name] = min(self.min[name], v)
            self.max[name] = max(self.max[name], v)
        return values

    def capture_gripper_closed(self) -> dict[str, int]:
        values = self.sample()
        self.closed = {j.name: values[j.name] for j in self.arm.spec.joints if j.gripper}
        return dict(self.closed)

    def result(self) -> ArmCalibration:
        if self.zero is None:
            raise CalibrationError("capture the zero pose first")
        joints = {}
        for joint in self.arm.spec.joints:
            name = joint.name
            lo, hi = self.min[name], self.max[name]
            if hi - lo >= TICKS_PER_TURN:
                raise CalibrationError(f"joint {name!r}: swept more than one turn ({hi - lo} ticks)")
            # store in the frame the servo reports now: shift by whole turns so zero reads as it is
            if joint.gripper:
                if name not in self.closed:
                    raise CalibrationError(f"gripper {name!r}: closed position not captured")
                closed = self.closed[name]
                open_ = hi if abs(hi - closed) >= abs(lo - closed) else lo
                joints[name] = JointCalibration(list(joint.ids), zero=closed, min=lo, max=hi, closed=closed, open=open_)
            else:
                joints[name] = JointCalibration(list(joint.ids), zero=self.zero[name], min=lo, max=hi)
        calib = ArmCalibration(arm=self.arm.name, joints=joints)
        calib.validate()
        return calib

    def finish(self) -> ArmCalibration:
        try:
            return self.result()
        finally:
            self.arm.release()
