"""The ALOHA leader arms as the human side of a rollout takeover (`hardware.takeover.SharedControl`).

The gesture: both leader grippers squeezed shut (below `takeover.close_threshold`) for `takeover.hold_s` (1 s by
default) switches who drives; the same gesture again switches back. It fires once per squeeze: it re-arms only after
a gripper has opened again, so holding the grippers shut never toggles twice. While the policy drives nobody handles
the leaders, and a deliberate full squeeze of both handles for a second is not part of guiding the arms (a bimanual
grasp during a takeover shuts the grippers only briefly, or not fully around an object).

Mobile ALOHA: during a takeover the base is stopped (its action columns are zero); the leaders drive the arms only.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from hardware.aloha.config import BASE_ACTIONS, TakeoverConfig
from hardware.aloha.rig import AlohaRig
from hardware.aloha.teleop import LeaderArms


class GripperGesture:
    """Counts control steps with every gripper shut; True once when they reach `hold_steps`."""

    def __init__(self, close_threshold: float, hold_steps: int):
        self.close_threshold = float(close_threshold)
        self.hold_steps = max(1, int(hold_steps))
        self.closed_steps = 0
        self.armed = True

    def update(self, grippers: Sequence[float]) -> bool:
        shut = bool(len(grippers)) and all(g <= self.close_threshold for g in grippers)
        if not shut:
            self.closed_steps, self.armed = 0, True
            return False
        self.closed_steps += 1
        if self.armed and self.closed_steps >= self.hold_steps:
            self.armed = False
            return True
        return False


class LeaderTakeover:
    """`HumanControl` from the leader arms: one read of every leader per step, the gripper gesture, their pose."""

    def __init__(self, rig: AlohaRig, config: TakeoverConfig | None = None):
        self.config = config or rig.config.takeover
        self.fps = float(rig.config.fps)
        self.leaders = LeaderArms(rig, gesture=False)
        self.gesture = GripperGesture(self.config.close_threshold, round(self.config.hold_s * self.fps))
        self.ramp_steps = int(round(self.config.ramp_s * self.fps))
        self.base_columns = len(BASE_ACTIONS) if rig.config.base is not None else 0
        self.reading: np.ndarray | None = None
        self._grippers: list[int] = []

    def connect(self) -> None:
        self.leaders.connect()
        offset, self._grippers = 0, []
        for arm in self.leaders.arms:  # indices of the grippers in `LeaderArms.read()`'s vector
            self._grippers += [offset + k for k, j in enumerate(arm.spec.joints) if j.gripper]
            offset += len(arm.spec.joints)

    def disconnect(self) -> None:
        self.leaders.disconnect()

    def sense(self) -> bool:
        self.reading = self.leaders.read(time.monotonic() + 1.0 / self.fps)
        return self.gesture.update([float(self.reading[i]) for i in self._grippers])

    def action(self) -> np.ndarray:
        if self.reading is None:
            raise RuntimeError("LeaderTakeover.action() before sense()")
        action = np.array(self.reading, dtype=np.float64)
        if self.base_columns:
            action[-self.base_columns:] = 0.0  # the base stops while a person drives the arms
        return action
