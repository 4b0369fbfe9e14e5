"""An emulated AgileX Tracer on a python-can bus: the real frame layouts (hardware.base.frames), a lagged velocity
response, wheel odometry, and injectable faults. The real driver (`TracerBase`) is the code under test.

    emulator = TracerEmulator(channel="tracer-test").start()      # python-can `virtual` bus by default
    base = TracerBase(BaseConfig(interface="virtual", channel="tracer-test"))
    emulator.inject("silent" | "bus_off" | "error_flag")

python-can's `virtual` interface connects buses of one process only (its channels are a dict in the module; checked:
a frame sent in one process never reaches another), so tests run the emulator in the driver's process. Across
processes python-can offers `udp_multicast` (no kernel module), which needs `msgpack`, not installed here.

Behaviour: in CAN command mode the velocity follows the last 0x111 command with a first-order lag (`lag_s`); a
command older than the Tracer's 500 ms receive timeout counts as zero. Outside command mode a stand-in operator may
push the base (`push`: a function of time giving (m/s, rad/s)), as Mobile ALOHA's operator does while recording.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hardware.base import frames as F
from hardware.base.config import TracerFrameIds

RECEIVE_TIMEOUT_S = 0.5  # Tracer manual: motion command receive timeout
TRACK_M = 0.498  # wheel separation (agilexrobotics Gazebo Tracer plugin) for the emulated odometry
FAULTS = ("silent", "bus_off", "error_flag", "rc_override")


def sway_push(amplitude: tuple[float, float] = (0.3, 0.4), period_s: float = 3.0) -> Callable[[float], tuple[float, float]]:
    """An operator pushing the base back and forth while turning (never zero for long)."""
    def push(t: float) -> tuple[float, float]:
        phase = 2 * math.pi * t / period_s
        return amplitude[0] * math.sin(phase), amplitude[1] * math.cos(phase)

    return push


@dataclass
class EmulatorLog:
    commands: list[tuple[float, float]] = field(default_factory=list)  # decoded 0x111 commands, in order
    raw_commands: list[bytes] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)  # control modes requested (0x421)
    feedback: list[tuple[float, float, float]] = field(default_factory=list)  # (monotonic time, m/s, rad/s) sent


class TracerEmulator:
    def __init__(self, channel: str = "tracer", *, interface: str = "virtual", period_s: float = 0.02,
                 lag_s: float = 0.1, ids: TracerFrameIds | None = None,
                 push: Callable[[float], tuple[float, float]] | None = None):
        self.channel, self.interface = channel, interface
        self.period_s, self.lag_s = period_s, lag_s
        self.ids = ids or TracerFrameIds()
        self.push = push
        self.mode = F.MODE_RC
        self.velocity = np.zeros(2)
        self.odometry = np.zeros(2)  # left, right wheel travel (m)
        self.error_code = 0
        self.state = F.STATE_NORMAL
        self.log = EmulatorLog()
        self.fault: str | None = None
        self._target = np.zeros(2)
        self._target_at = -math.inf
        self._bus = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> "TracerEmulator":
        import can

        if self._thread is not None:
            return self
        self._bus = can.Bus(interface=self.interface, channel=self.channel)
        self._stop.clear()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tracer-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._thread = None
        if self._bus is not None:
            self._receive(time.monotonic())  # what was sent before the stop still counts (the last zero command)
            self._bus.shutdown()
            self._bus = None

    def inject(self, fault: str) -> None:
        """silent: stop sending anything; bus_off: one CAN bus-off error frame; error_flag: status exception;
        rc_override: the RC transmitter takes over (mode RC; CAN commands ignored)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        with self._lock:
            self.fault = fault
            if fault == "error_flag":
                self.state, self.error_code = F.STATE_EXCEPTION, 0x0200
            elif fault == "rc_override":
                self.mode = F.MODE_RC

    def clear_faults(self) -> None:
        with self._lock:
            self.fault, self.state, self.error_code = None, F.STATE_NORMAL, 0

    # ------------------------------------------------------------------ the base
    def _receive(self, now: float) -> None:
        while (msg := self._bus.recv(timeout=0)) is not None:
            if msg.arbitration_id == self.ids.control_mode:
                if self.fault != "rc_override":  # the transmitter has priority
                    self.mode = msg.data[0]
                self.log.modes.append(msg.data[0])  # what was asked
            elif msg.arbitration_id == self.ids.motion_command:
                command = F.decode_motion(msg.data)
                self.log.commands.append(command)
                self.log.raw_commands.append(bytes(msg.data))
                if self.mode == F.MODE_CAN:
                    self._target, self._target_at = np.array(command), now

    def _target_now(self, now: float) -> np.ndarray:
        if self.mode == F.MODE_CAN:
            return self._target if now - self._target_at <= RECEIVE_TIMEOUT_S else np.zeros(2)
        if self.push is not None:
            return np.array(self.push(now - self._started), dtype=np.float64)
        return np.zeros(2)

    def _step(self, now: float, dt: float) -> None:
        alpha = 1.0 - math.exp(-dt / self.lag_s) if self.lag_s > 0 else 1.0
        self.velocity = self.velocity + alpha * (self._target_now(now) - self.velocity)
        v, w = self.velocity
        self.odometry += np.array([v - w * TRACK_M / 2, v + w * TRACK_M / 2]) * dt

    def _send(self, arbitration_id: int, data: bytes, error: bool = False) -> None:
        import can

        self._bus.send(can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=False,
                                   is_error_frame=error))

    def _run(self) -> None:
        counter = 0
        last = time.monotonic()
        next_tick = last
        while not self._stop.is_set():
            now = time.monotonic()
            self._receive(now)
            self._step(now, now - last)
            last = now
            with self._lock:
                fault, state, error = self.fault, self.state, self.error_code
            if fault == "bus_off":
                self._send(F.CAN_ERR_BUSOFF, bytes(8), error=True)
                with self._lock:
                    self.fault = "silent"  # a bus-off controller sends nothing more
            elif fault != "silent":
                self._send(self.ids.motion_feedback, F.encode_motion(*self.velocity))
                self.log.feedback.append((now, *F.decode_motion(F.encode_motion(*self.velocity))))
                status = F.SystemStatus(state, self.mode, 26.0, error, counter)
                self._send(self.ids.system_status, F.encode_status(status, self.ids))
                self._send(self.ids.odometry, F.encode_odometry(*self.odometry))
                counter += 1
            next_tick += self.period_s
            self._stop.wait(max(0.0, next_tick - time.monotonic()))
            if time.monotonic() - next_tick > 5 * self.period_s:
                next_tick = time.monotonic()  # overloaded machine: no burst of catch-up frames
