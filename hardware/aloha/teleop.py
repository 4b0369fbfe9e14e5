"""LeaderArms: the operator's leader arms as a `Teleoperator`, with the press-both-grippers-to-start gesture.

Each step reads every leader (one Sync Read each) and returns the follower targets: leader joint angles, leader
gripper openings (normalized, so leader and follower ranges may differ). Mobile ALOHA appends the base velocity
the operator pushes the base at, measured by the configured source (Tracer feedback or wheel encoders): the base
itself is never commanded while teleoperating.
"""

from __future__ import annotations

import time

import numpy as np

from hardware.aloha.rig import AlohaRig, connect_arms, release_arms
from hardware.dynamixel.arm import Arm
from hardware.dynamixel.errors import DynamixelError
from hardware.dynamixel.safety import ExitGuard
from hardware.interfaces import Observation, Robot, Teleoperator


class GestureTimeout(TimeoutError):
    pass


class LeaderArms(Teleoperator):
    def __init__(self, rig: AlohaRig, *, gesture: bool | None = None):
        self.rig = rig
        self.config = rig.config
        self.gesture = self.config.start_gesture.model_copy(
            update={} if gesture is None else {"enabled": bool(gesture)})
        self.arms: list[Arm] = []
        self._guard: ExitGuard | None = None
        self._acquired = False

    def connect(self) -> None:
        if self.arms:
            return
        self.rig.acquire()
        self._acquired = True
        self._guard = ExitGuard(self.disconnect).install()
        try:
            connect_arms(self.rig, [cfg.name for cfg in self.config.leaders()], self.arms)
        except BaseException:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        arms, self.arms = self.arms, []
        release_arms(arms)
        if self._guard is not None:
            guard, self._guard = self._guard, None
            guard.uninstall()
        if self._acquired:
            self._acquired = False
            self.rig.release()

    def read(self, deadline: float | None = None) -> np.ndarray:
        if not self.arms:
            raise DynamixelError("leader arms are not connected")
        joints = [arm.read(deadline).positions for arm in self.arms]
        action = np.concatenate(joints)
        if self.config.base is not None:
            action = np.concatenate([action, self.rig.base_velocity()])
        return action

    def grippers(self) -> list[float]:
        out = []
        for arm in self.arms:
            state = arm.read()
            out += [float(state.positions[k]) for k, j in enumerate(arm.spec.joints) if j.gripper]
        return out

    def wait_for_start_gesture(self, on_wait=None) -> float:
        """Block until every leader gripper is squeezed shut for `hold_s`; returns the seconds waited."""
        g = self.gesture
        start = time.monotonic()
        if self.rig.emulated:
            self.rig.press_grippers()
        closed_since = None
        period = 1.0 / self.config.fps
        while True:
            now = time.monotonic()
            if all(v <= g.close_threshold for v in self.grippers()):
                closed_since = closed_since if closed_since is not None else now
                if now - closed_since >= g.hold_s:
                    return now - start
            else:
                closed_since = None
            if g.timeout_s is not None and now - start > g.timeout_s:
                raise GestureTimeout(f"no start gesture within {g.timeout_s:.0f} s: squeeze both leader grippers")
            if on_wait is not None:
                on_wait()
            time.sleep(period)

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        if not self.arms:
            self.connect()
        passive_base = getattr(robot, "passive_base", None)
        if passive_base is not None:  # Mobile ALOHA: pushed by the operator, recorded, never commanded
            passive_base()
        if self.gesture.enabled:
            self.wait_for_start_gesture()
        move_to = getattr(robot, "move_to", None)
        if move_to is not None and self.config.start_ramp_s > 0:
            move_to(self.read(), self.config.start_ramp_s)  # slowly to the leaders' pose, never one jump

    def next_action(self, observation: Observation) -> np.ndarray:
        return self.read(time.monotonic() + 1.0 / self.config.fps)
