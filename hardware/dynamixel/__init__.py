"""Dynamixel X-series servos over Protocol 2.0 with the unmodified dynamixel_sdk; a pty emulator for tests."""

from hardware.dynamixel.arm import Arm, ArmSpec, ArmState, JointSpec
from hardware.dynamixel.bus import DynamixelBus
from hardware.dynamixel.calibration_data import ArmCalibration, JointCalibration, calibration_file
from hardware.dynamixel.control_table import MODELS, OperatingMode, describe_hardware_error
from hardware.dynamixel.errors import (
    ArmStopped,
    CalibrationError,
    DynamixelError,
    PortError,
    ServoCommandError,
    ServoCorrupt,
    ServoFault,
    ServoHardwareError,
    ServoModelMismatch,
    ServoRangeError,
    ServoSilent,
)
from hardware.dynamixel.safety import ExitGuard, release_on_exit

__all__ = [
    "Arm", "ArmSpec", "ArmState", "JointSpec", "DynamixelBus", "ArmCalibration", "JointCalibration",
    "calibration_file", "MODELS", "OperatingMode", "describe_hardware_error", "ArmStopped", "CalibrationError",
    "DynamixelError", "PortError", "ServoCommandError", "ServoCorrupt", "ServoFault", "ServoHardwareError",
    "ServoModelMismatch", "ServoRangeError", "ServoSilent", "ExitGuard", "release_on_exit",
]
