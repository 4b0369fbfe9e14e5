"""AlohaRobot: follower arms + cameras behind the `Robot` interface (the real robot and the emulated one).

observe(): one Sync Read per follower (bounded by the control period), latest camera frames matched by
timestamp, dropped frames counted. act(): one Sync Write per follower; Mobile ALOHA's last two action entries
are base velocities, sent to the base (hardware/base) unless the base is passive (teleoperation: the operator
pushes it and its measured velocity is recorded). A servo fault on any follower, or a base fault (no feedback, bus
error, error flag, stopped loop), stops every follower safely and the base at zero velocity, and propagates (the
recorder discards the episode); torque is released and the base left stopped on disconnect, Ctrl-C, SIGTERM,
SIGHUP and interpreter exit.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np

from assets_store.schema import CameraSpec
from hardware.aloha.config import BASE_ACTIONS
from hardware.aloha.rig import AlohaRig, CameraHandle, connect_arms, release_arms
from hardware.base.tracer import BaseFault
from hardware.cameras import match_by_timestamp
from hardware.dynamixel.arm import Arm
from hardware.dynamixel.errors import DynamixelError, ServoFault
from hardware.dynamixel.safety import ExitGuard
from hardware.interfaces import Observation, Robot

log = logging.getLogger(__name__)


class AlohaRobot(Robot):
    def __init__(self, rig: AlohaRig, cameras: list[str] | None = None, name: str | None = None):
        self.rig = rig
        self.config = rig.config
        self.name = name or ("emulated" if rig.emulated else self.config.name)
        self.fps = float(self.config.fps)
        names = [c.name for c in self.config.cameras]
        if cameras is not None and cameras != ["all"]:  # [] = no cameras
            unknown = sorted(set(cameras) - set(names))
            if unknown:
                raise ValueError(f"unknown camera(s) {unknown}; this robot has {names}")
            names = [n for n in names if n in cameras]
        self._camera_configs = [c for c in self.config.cameras if c.name in names]
        self.arms: list[Arm] = []
        self.camera_handles: list[CameraHandle] = []
        self.base_command = np.zeros(2)  # the base columns of the last action, within the speed limits
        self.base_driven = True  # False while the operator pushes the base (`passive_base`)
        self.faults: list[str] = []
        self._guard: ExitGuard | None = None
        self._acquired = False

    # ------------------------------------------------------------------ description
    @property
    def joint_names(self) -> list[str]:
        return self.config.joint_names

    @property
    def action_names(self) -> list[str]:
        return self.config.action_names

    @property
    def cameras(self) -> list[CameraSpec]:
        return [CameraSpec(c.name, c.height, c.width, serial=c.serial or f"software:{c.name}")
                for c in self._camera_configs]

    @property
    def base_delay_steps(self) -> int:
        """Steps by which a policy's base actions lag its arm actions at rollout (configuration, recipe default 13)."""
        return self.config.base.rollout_delay_steps if self.config.base is not None else 0

    def episode_attrs(self) -> dict[str, Any]:
        digests = {}
        for arm in self.config.followers() + self.config.leaders():
            calib = self.rig.calibration(arm.name)
            digests[arm.name] = calib.digest() if calib else ""
        combined = hashlib.sha256(repr(sorted(digests.items())).encode()).hexdigest()[:16]
        return {
            "calibration_hash": combined,
            "calibration_digests": digests,
            "emulated": self.rig.emulated,
            "arms": {a.name: {"role": a.role, "arm": a.arm, "port": self.rig.specs[a.name].port,
                              "on_fault": a.on_fault} for a in self.config.arms},
            "camera_serials": {c.name: c.serial for c in self._camera_configs},
            "faults": list(self.faults),
            **self._base_attrs(),
        }

    def _base_attrs(self) -> dict[str, Any]:
        base = self.config.base
        if base is None:
            return {}
        return {
            "base": {"kind": base.kind, "interface": base.interface, "channel": base.channel,
                     "velocity_source": base.velocity_source, "driven": self.base_driven,
                     "rollout_delay_steps": base.rollout_delay_steps},
            "base_limits": [base.max_linear_vel, base.max_angular_vel],  # validation checks recordings against these
        }

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        if self.arms:
            return
        self.rig.acquire()
        self._acquired = True
        self._guard = ExitGuard(self.disconnect).install()
        try:
            connect_arms(self.rig, [cfg.name for cfg in self.config.followers()], self.arms)
            if self.rig.base is not None:
                self.rig.base.connect()
            if self.rig.wheels is not None:
                self.rig.wheels.connect()
            for cam_cfg in self._camera_configs:
                handle = self.rig.make_camera(cam_cfg)
                self.camera_handles.append(handle)
                handle.start()
        except BaseException:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        """Base stopped, torque off on every follower, cameras stopped. Safe to call twice."""
        for part in (self.rig.base, self.rig.wheels):
            if part is not None:
                try:
                    part.disconnect()  # the base: zero velocity first
                except Exception as exc:
                    log.error("%s: disconnect failed: %s", getattr(part, "device", "wheel encoders"), exc)
        arms, self.arms = self.arms, []
        release_arms(arms)
        handles, self.camera_handles = self.camera_handles, []
        for handle in handles:
            try:
                handle.stop()
            except Exception as exc:
                log.error("camera %s: stop failed: %s", handle.camera.name, exc)
        if self._guard is not None:
            guard, self._guard = self._guard, None
            guard.uninstall()
        if self._acquired:
            self._acquired = False
            self.rig.release()

    # ------------------------------------------------------------------ control step
    def passive_base(self) -> None:
        """Teleoperation: the operator pushes the base; it is never commanded, only measured."""
        self.base_driven = False

    def stop_base(self) -> None:
        """The episode is over: the base to zero velocity, not expecting commands until the next one."""
        if self.rig.base is not None and self.rig.base.connected:
            self.rig.base.idle()

    def _stop_all(self, fault: BaseException) -> None:
        self.faults.append(str(fault))
        if self.rig.base is not None:
            self.rig.base.stop()
        for arm in self.arms:
            if arm.faulted is None:
                arm.stop_safely()

    def observe(self) -> Observation:
        if not self.arms:
            raise DynamixelError(f"robot {self.name!r} is not connected")
        deadline = time.monotonic() + 1.0 / self.fps
        try:
            states = [arm.read(deadline) for arm in self.arms]
            if self.rig.base is not None:
                self.rig.base.check()
        except (ServoFault, DynamixelError, BaseFault) as exc:
            self._stop_all(exc)
            raise
        obs = Observation(
            qpos=np.concatenate([s.positions for s in states]).astype(np.float32),
            qvel=np.concatenate([s.velocities for s in states]).astype(np.float32),
            effort=np.concatenate([s.efforts for s in states]).astype(np.float32),
        )
        if self.camera_handles:
            try:
                frames, dropped = match_by_timestamp([h.camera for h in self.camera_handles])
            except Exception as exc:
                self._stop_all(exc)
                raise
            obs.images = {name: f.image for name, f in frames.items()}
            obs.frame_info = {name: (float(f.number), float(f.timestamp_ms)) for name, f in frames.items()}
            obs.dropped_frames = dropped
        return obs

    def act(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (len(self.action_names),):
            raise ValueError(f"robot {self.name!r}: expected an action of shape ({len(self.action_names)},), "
                             f"got {action.shape}")
        start = 0
        try:
            for arm in self.arms:
                n = len(arm.joint_names)
                arm.write(action[start : start + n])
                start += n
            if self.config.base is not None:
                self.base_command = self._base_velocity(action[start : start + len(BASE_ACTIONS)])
                if self.base_driven and self.rig.base is not None and self.rig.base.connected:
                    self.rig.base.command(*self.base_command)
        except (ServoFault, DynamixelError, BaseFault) as exc:
            self._stop_all(exc)
            raise

    def move_to(self, target: np.ndarray, duration_s: float) -> int:
        """Move the followers from where they are to `target` (an action vector) along a straight line in joint
        space, one command per control step, over `duration_s`. The base (Mobile ALOHA) stays still.
        Returns the number of commands sent."""
        target = np.asarray(target, dtype=np.float64)
        n_joints = len(self.joint_names)
        start = self.observe().qpos.astype(np.float64)
        steps = max(1, int(round(duration_s * self.fps)))
        period = 1.0 / self.fps
        next_time = time.monotonic()
        for k in range(1, steps + 1):
            command = np.zeros(len(self.action_names))
            command[:n_joints] = start + (target[:n_joints] - start) * (k / steps)
            self.act(command)
            next_time += period
            delay = next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return steps

    def _base_velocity(self, velocity: np.ndarray) -> np.ndarray:
        limits = np.array(self.config.base.limits)
        return np.clip(velocity, -limits, limits)
