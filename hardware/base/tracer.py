"""The AgileX Tracer over CAN through python-can: command mode, limited motion commands, decoded feedback, safety.

    base = TracerBase(config, fps=50)       # config: hardware.base.config.BaseConfig
    base.connect()                          # opens the bus, waits for the first motion feedback
    base.enable_commands()                  # 0x421 = CAN command mode
    base.command(0.3, 0.1)                  # every control step: limited in speed and acceleration, sent as 0x111
    base.velocity()                         # last 0x221 feedback (m/s, rad/s)
    base.check()                            # raises BaseFault once anything went wrong (and the base is stopped)
    base.disconnect()                       # zero velocity, bus closed; safe to call twice

A watcher thread reads every frame. It stops the base (zero velocity) and records the fault when feedback is
older than `feedback_timeout_periods`, when the control loop has not commanded for `command_timeout_periods` while
driving, on a CAN error frame or bus error, when the base reports an error flag, and when it leaves CAN command
mode while driving (an RC transmitter switched on takes priority); `check()` (called by the robot
every step) then raises `BaseFault` naming the bus and the fault, and the robot stops its arms.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from hardware.base import frames as F
from hardware.base.config import BaseConfig
from hardware.interfaces import RobotError

log = logging.getLogger(__name__)

FIRST_FEEDBACK_TIMEOUT_S = 1.0
STOP_FRAMES = 3  # zero-velocity frames sent on stop: one lost frame must not leave the base moving


class BaseFault(RobotError):
    """The base stopped (zero velocity sent) because of the named fault."""


@dataclass
class BaseState:
    linear: float = 0.0  # m/s, from 0x221
    angular: float = 0.0  # rad/s
    odometry: tuple[float, float] = (0.0, 0.0)  # left, right wheel travel in m (0x311)
    status: F.SystemStatus | None = None
    feedback_at: float | None = None  # monotonic time of the last 0x221
    feedback_frames: int = 0


def limit_command(target: np.ndarray, previous: np.ndarray, config: BaseConfig, dt: float) -> np.ndarray:
    """Clip to the speed limits, then move from `previous` by at most the acceleration limit times `dt`."""
    speed = np.array([config.max_linear_vel, config.max_angular_vel])
    step = np.array([config.max_linear_acc, config.max_angular_acc]) * dt
    clipped = np.clip(np.asarray(target, dtype=np.float64), -speed, speed)
    return previous + np.clip(clipped - previous, -step, step)


class TracerBase:
    def __init__(self, config: BaseConfig, fps: float = 50.0, *, bus_options: dict | None = None):
        self.config = config
        self.period = 1.0 / float(fps)
        self.device = f"base on {config.interface}:{config.channel}"
        self.state = BaseState()
        self.fault: str | None = None
        self.driving = False  # in CAN command mode, commanded by the loop every step
        self.sent = np.zeros(2)  # last command sent (after limits)
        self.commands_sent = 0
        self._bus_options = bus_options or {}
        self._bus = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_command_at = 0.0
        self._enabled_at = 0.0
        self._feedback = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return self._bus is not None

    def connect(self) -> None:
        if self._bus is not None:
            return
        import can

        try:
            self._bus = can.Bus(interface=self.config.interface, channel=self.config.channel,
                                bitrate=self.config.bitrate, **self._bus_options)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise BaseFault(f"{self.device}: cannot open the CAN bus ({exc}); is the adapter up "
                            f"(ip link set {self.config.channel} up type can bitrate {self.config.bitrate})?") from exc
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="tracer-watch", daemon=True)
        self._thread.start()
        if not self._feedback.wait(max(FIRST_FEEDBACK_TIMEOUT_S, self._feedback_timeout())):
            self.disconnect()
            raise BaseFault(f"{self.device}: no motion feedback (0x{self.config.frames.motion_feedback:03x}) within "
                            f"{max(FIRST_FEEDBACK_TIMEOUT_S, self._feedback_timeout()):.1f} s; is the base on?")

    def enable_commands(self) -> None:
        """Switch the base to CAN command mode (the RC transmitter, when on, still has priority)."""
        self.check()
        self._send(self.config.frames.control_mode, F.encode_mode(F.MODE_CAN))
        self.sent = np.zeros(2)
        self._last_command_at = self._enabled_at = time.monotonic()
        self.driving = True

    def disconnect(self) -> None:
        """Leave the base stopped and close the bus. Safe to call twice."""
        if self._bus is None:
            return
        self.stop()
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._thread = None
        bus, self._bus = self._bus, None
        try:
            bus.shutdown()
        except Exception as exc:  # noqa: BLE001 - closing must never hide the stop that already happened
            log.error("%s: closing the bus failed: %s", self.device, exc)

    # ------------------------------------------------------------------ control step
    def command(self, linear: float, angular: float) -> np.ndarray:
        """Send one motion command within the limits; returns what was sent (m/s, rad/s)."""
        self.check()
        if not self.driving:
            self.enable_commands()
        sent = limit_command(np.array([linear, angular]), self.sent, self.config, self.period)
        self._send(self.config.frames.motion_command, F.encode_motion(*sent))
        self.sent = sent
        self.commands_sent += 1
        self._last_command_at = time.monotonic()
        return sent

    def velocity(self) -> np.ndarray:
        with self._lock:
            return np.array([self.state.linear, self.state.angular])

    def check(self) -> None:
        """Raise BaseFault when a fault has stopped the base (the message names the bus and the fault)."""
        if self.fault is None:
            self._check_feedback_age(time.monotonic())
        if self.fault is not None:
            raise BaseFault(f"{self.device}: {self.fault}; base stopped")

    def stop(self) -> None:
        """Zero velocity (sent a few times); the base stays in command mode, so it holds still."""
        self.sent = np.zeros(2)
        if self._bus is None or not self.driving:
            return
        for _ in range(STOP_FRAMES):
            try:
                self._send(self.config.frames.motion_command, F.encode_motion(0.0, 0.0))
            except BaseFault as exc:  # the bus is gone: the Tracer's own receive timeout stops it
                log.error("%s", exc)
                return

    def idle(self) -> None:
        """The loop is done commanding on purpose (an episode ended): zero velocity, and no command timeout until
        the next `command`."""
        self.stop()
        self.driving = False

    # ------------------------------------------------------------------ internals
    def _feedback_timeout(self) -> float:
        return self.config.feedback_timeout_periods * self.period

    def _send(self, arbitration_id: int, data: bytes) -> None:
        import can

        bus = self._bus
        if bus is None:
            raise BaseFault(f"{self.device}: not connected")
        try:
            with self._send_lock:
                bus.send(can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=False),
                         timeout=self.period)
        except can.CanError as exc:
            self._set_fault(f"bus error on send ({exc})", stop=False)
            raise BaseFault(f"{self.device}: bus error on send ({exc}); base stopped") from exc

    def _set_fault(self, reason: str, stop: bool = True) -> None:
        if self.fault is None:
            self.fault = reason
            log.error("%s: %s; stopping the base", self.device, reason)
        if stop and self.driving:
            try:
                self.stop()
            except Exception as exc:  # noqa: BLE001
                log.error("%s: stop after fault failed: %s", self.device, exc)

    def _check_feedback_age(self, now: float) -> None:
        at = self.state.feedback_at
        if at is not None and now - at > self._feedback_timeout():
            self._set_fault(f"no motion feedback for {(now - at) * 1e3:.0f} ms "
                            f"(limit {self._feedback_timeout() * 1e3:.0f} ms)")

    def _watch(self) -> None:
        import can

        ids = self.config.frames
        command_timeout = self.config.command_timeout_periods * self.period
        while not self._stop.is_set():
            bus = self._bus
            if bus is None:
                return
            try:
                msg = bus.recv(timeout=self.period)
            except (can.CanError, OSError) as exc:
                if not self._stop.is_set():
                    self._set_fault(f"bus error on receive ({exc})")
                return
            now = time.monotonic()
            if msg is not None:
                self._handle(msg, ids, now)
            self._check_feedback_age(now)
            if self.driving and self.fault is None and now - self._last_command_at > command_timeout:
                self._set_fault(f"control loop stopped: no command for {(now - self._last_command_at) * 1e3:.0f} ms")

    def _handle(self, msg, ids, now: float) -> None:
        if msg.is_error_frame:
            kind = "bus-off" if msg.arbitration_id & F.CAN_ERR_BUSOFF else f"error frame 0x{msg.arbitration_id:x}"
            self._set_fault(f"CAN {kind}")
            return
        if msg.arbitration_id == ids.motion_feedback:
            lin, ang = F.decode_motion(msg.data)
            with self._lock:
                self.state.linear, self.state.angular, self.state.feedback_at = lin, ang, now
                self.state.feedback_frames += 1
            self._feedback.set()
        elif msg.arbitration_id == ids.odometry:
            with self._lock:
                self.state.odometry = F.decode_odometry(msg.data)
        elif msg.arbitration_id == ids.system_status:
            status = F.decode_status(msg.data, ids)
            with self._lock:
                self.state.status = status
            if status.fault is not None:
                self._set_fault(f"base reports {status.fault}")
            elif self.driving and status.mode != F.MODE_CAN and now - self._enabled_at > self._feedback_timeout():
                # e.g. the RC transmitter was switched on: it has priority and our commands are ignored
                self._set_fault(f"base left CAN command mode (mode {status.mode}; RC transmitter on or SWB not up?)")
