"""Base velocity from two Dynamixel wheel encoders, as Mobile ALOHA records it (record_episodes.py, get_base_vel):
each wheel's Present Velocity (0.229 rpm per unit) -> rad/s, the right wheel negated (mounted mirrored), then
v = (l + r) * R / 2 and w = (r - l) * R / b. What that hardware is exactly is unconfirmed: every number is in
`WheelEncoderConfig`.
"""

from __future__ import annotations

import math

import numpy as np

from hardware.base.config import WheelEncoderConfig
from hardware.dynamixel.bus import DynamixelBus
from hardware.dynamixel.control_table import decode, model

WHEEL_SERVO = "XM430-W350"  # the X-series share the Present Velocity register


def wheel_units_to_rad_s(units: int, cfg: WheelEncoderConfig) -> float:
    return units * cfg.rpm_per_unit * 2 * math.pi / 60.0


def base_velocity(left_rad_s: float, right_rad_s: float, cfg: WheelEncoderConfig) -> np.ndarray:
    """(linear m/s, angular rad/s) from wheel speeds as the servos report them (right one not yet negated)."""
    right = -right_rad_s if cfg.right_negated else right_rad_s
    linear = (left_rad_s + right) * cfg.wheel_radius_m / 2
    angular = (right - left_rad_s) * cfg.wheel_radius_m / cfg.base_radius_m
    return np.array([linear, angular])


class WheelEncoders:
    """Reads both wheels in one Sync Read per control step."""

    def __init__(self, cfg: WheelEncoderConfig):
        self.cfg = cfg
        self.bus = DynamixelBus(cfg.port, cfg.baudrate, timeout_margin_ms=cfg.reply_timeout_ms)

    def connect(self) -> None:
        self.bus.open()

    def disconnect(self) -> None:
        self.bus.close()

    def velocity(self, deadline: float | None = None) -> np.ndarray:
        ids = [self.cfg.left_id, self.cfg.right_id]
        field = model(WHEEL_SERVO).field("present_velocity")
        data = self.bus.sync_read(ids, field.address, field.size, deadline)
        left, right = (decode(data[i], field.size, signed=True) for i in ids)
        return base_velocity(wheel_units_to_rad_s(left, self.cfg), wheel_units_to_rad_s(right, self.cfg), self.cfg)
