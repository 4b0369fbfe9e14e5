"""Errors of the Dynamixel stack. Every servo fault names the port, the servo ID and the fault."""

from __future__ import annotations

from hardware.interfaces import RobotError


class DynamixelError(RobotError):
    pass


class PortError(DynamixelError):
    """The serial port cannot be opened or configured."""


class CalibrationError(DynamixelError):
    """An arm is uncalibrated, or its calibration does not match its servos."""


class ServoFault(DynamixelError):
    """A servo misbehaved; the arm that saw it has been stopped safely."""

    kind = "fault"

    def __init__(self, port: str, servo_id: int | None, fault: str, *, arm: str | None = None, joint: str | None = None):
        self.port = port
        self.servo_id = servo_id
        self.fault = fault
        self.arm = arm
        self.joint = joint
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"arm {self.arm!r} on {self.port}" if self.arm else f"port {self.port}"
        servo = "bus" if self.servo_id is None else f"servo ID {self.servo_id}"
        if self.joint:
            servo += f" ({self.joint})"
        return f"{where}, {servo}: {self.fault}"

    def with_context(self, arm: str, joint: str | None) -> "ServoFault":
        """The same fault, re-labelled with the arm (and joint) it belongs to."""
        return type(self)(self.port, self.servo_id, self.fault, arm=arm, joint=joint)


class ServoSilent(ServoFault):
    kind = "no_reply"


class ServoCorrupt(ServoFault):
    kind = "bad_crc"


class ServoHardwareError(ServoFault):
    kind = "hardware_error"


class ServoRangeError(ServoFault):
    kind = "out_of_range"


class ServoCommandError(ServoFault):
    kind = "command_error"


class ServoModelMismatch(ServoFault):
    kind = "model_mismatch"


class ArmStopped(DynamixelError):
    """The arm was stopped after an earlier fault and refuses further commands."""
