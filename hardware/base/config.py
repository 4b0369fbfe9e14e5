"""The `base:` section of a Mobile ALOHA robot configuration (hardware/aloha/configs/mobile_aloha.yaml).

Facts from the Tracer manual and the Mobile ALOHA code (see docs in the YAML file); the ones we could not confirm
(which byte holds the error code, the full-size Tracer's command range, the meaning of the Dynamixel wheel port) are
fields here rather than constants, so a user can set them from their own base without a code change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TracerFrameIds(_Strict):
    """CAN IDs of protocol V2 (Tracer manual v1.2, ugv_sdk agilex_protocol_v2.h)."""

    control_mode: int = 0x421
    motion_command: int = 0x111
    motion_feedback: int = 0x221
    system_status: int = 0x211
    odometry: int = 0x311
    # Byte offset of the error code in 0x211: the manual says b4 (1 byte), ugv_sdk reads b4-5 as a u16,
    # pyagxrobots b5. Unconfirmed: b4-5 big-endian by default; 1 byte at `error_byte` when error_bytes == 1.
    error_byte: int = Field(4, ge=2, le=6)
    error_bytes: Literal[1, 2] = 2


class WheelEncoderConfig(_Strict):
    """Mobile ALOHA's recorded base velocity: two Dynamixels on the wheels (record_episodes.py, get_base_vel).
    What exactly that hardware is could not be confirmed; these are its code's numbers."""

    port: str = "/dev/ttyDXL_wheels"
    baudrate: int = 1_000_000
    left_id: int = 1
    right_id: int = 2
    wheel_radius_m: float = Field(0.0505, gt=0)
    base_radius_m: float = Field(0.622, gt=0)  # the code's name; used as the track width in w = (r - l) * R / b
    right_negated: bool = True  # the right wheel servo is mounted mirrored
    rpm_per_unit: float = Field(0.229, gt=0)  # Dynamixel X-series Present Velocity unit
    reply_timeout_ms: float = Field(2.0, ge=0.0)  # wait beyond 2x latency timer before a reply is late


class BaseConfig(_Strict):
    kind: Literal["tracer"] = "tracer"
    interface: str = "socketcan"  # python-can interface: socketcan (CAN-USB via gs_usb), virtual, udp_multicast, ...
    channel: str = "can0"
    bitrate: int = 500_000
    # Command limits. Tracer: paper 1.6 m/s, manual <= 2.3 m/s no-load; full-size command range unconfirmed.
    max_linear_vel: float = Field(0.7, gt=0)  # m/s
    max_angular_vel: float = Field(1.0, gt=0)  # rad/s
    max_linear_acc: float = Field(1.0, gt=0)  # m/s^2: change of the command per second
    max_angular_acc: float = Field(2.0, gt=0)  # rad/s^2
    # Safety: feedback older than this many control periods, or no command from the loop for this many periods
    # while driving, stops the base (the Tracer's own receive timeout is 500 ms; what it does then is unconfirmed).
    feedback_timeout_periods: int = Field(10, ge=2)
    command_timeout_periods: int = Field(10, ge=2)
    # What is recorded as the base velocity while teleoperating: the Tracer's motion feedback (0x221) or two
    # Dynamixel wheel encoders, as Mobile ALOHA does.
    velocity_source: Literal["tracer", "wheel_encoders"] = "tracer"
    wheel_encoders: WheelEncoderConfig = Field(default_factory=WheelEncoderConfig)
    frames: TracerFrameIds = Field(default_factory=TracerFrameIds)
    # The recipe (act-plus-plus): base actions play this many steps later in a chunk than arm actions at rollout
    # (BASE_DELAY = 13). Smoothing recorded velocities is a training setting (TrainConfig.base_smoothing_window).
    rollout_delay_steps: int = Field(13, ge=0)

    @property
    def limits(self) -> tuple[float, float]:
        return self.max_linear_vel, self.max_angular_vel
