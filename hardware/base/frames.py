"""The Tracer's CAN frames (protocol V2): CAN 2.0B at 500 kbit/s, big-endian fields, DLC 8.

    0x421 control mode     b0: 0x00 RC, 0x01 CAN command, 0x02 UART
    0x111 motion command   b0-1 int16 linear mm/s, b2-3 int16 angular 0.001 rad/s (+ = counter-clockwise)
    0x221 motion feedback  same layout and units, every 20 ms
    0x211 system status    b0 state (0 normal, 1 e-stop, 2 exception), b1 mode, b2-3 battery 0.1 V,
                           error code (position configurable, see TracerFrameIds), b7 counter
    0x311 odometry         b0-3 int32 left wheel mm, b4-7 int32 right wheel mm

Both the driver and the emulator encode and decode through this module only, so they cannot disagree silently.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from hardware.base.config import TracerFrameIds

MODE_RC, MODE_CAN, MODE_UART = 0x00, 0x01, 0x02
STATE_NORMAL, STATE_ESTOP, STATE_EXCEPTION = 0, 1, 2
STATE_NAMES = {STATE_NORMAL: "normal", STATE_ESTOP: "emergency stop", STATE_EXCEPTION: "exception"}
# socketcan error frames: CAN_ERR_BUSOFF in the error class (can_id) of an error frame
CAN_ERR_BUSOFF = 0x40
INT16 = (-32768, 32767)


def _clip16(x: float) -> int:
    return int(np.clip(round(x), *INT16))


def encode_motion(linear: float, angular: float) -> bytes:
    """(m/s, rad/s) -> 0x111 / 0x221 payload (mm/s, mrad/s), saturating at the int16 range."""
    return struct.pack(">hhhh", _clip16(linear * 1000.0), _clip16(angular * 1000.0), 0, 0)


def decode_motion(data: bytes) -> tuple[float, float]:
    lin, ang = struct.unpack_from(">hh", bytes(data))
    return lin / 1000.0, ang / 1000.0


def encode_mode(mode: int) -> bytes:
    return bytes([mode]) + bytes(7)


def encode_odometry(left_m: float, right_m: float) -> bytes:
    return struct.pack(">ii", int(round(left_m * 1000.0)), int(round(right_m * 1000.0)))


def decode_odometry(data: bytes) -> tuple[float, float]:
    left, right = struct.unpack_from(">ii", bytes(data))
    return left / 1000.0, right / 1000.0


@dataclass(frozen=True)
class SystemStatus:
    state: int
    mode: int
    battery_v: float
    error_code: int
    counter: int

    @property
    def fault(self) -> str | None:
        """What is wrong, in words, or None when the base reports normal with no error bit set."""
        if self.state == STATE_NORMAL and self.error_code == 0:
            return None
        state = STATE_NAMES.get(self.state, f"state {self.state}")
        return f"system status {state}, error code 0x{self.error_code:04x}"


def encode_status(status: SystemStatus, ids: TracerFrameIds) -> bytes:
    buf = bytearray(8)
    buf[0], buf[1] = status.state, status.mode
    struct.pack_into(">H", buf, 2, int(round(status.battery_v * 10)))
    if ids.error_bytes == 2:
        struct.pack_into(">H", buf, ids.error_byte, status.error_code & 0xFFFF)
    else:
        buf[ids.error_byte] = status.error_code & 0xFF
    buf[7] = status.counter & 0xFF
    return bytes(buf)


def decode_status(data: bytes, ids: TracerFrameIds) -> SystemStatus:
    data = bytes(data)
    if ids.error_bytes == 2:
        (error,) = struct.unpack_from(">H", data, ids.error_byte)
    else:
        error = data[ids.error_byte]
    (battery,) = struct.unpack_from(">H", data, 2)
    return SystemStatus(data[0], data[1], battery / 10.0, error, data[7])
