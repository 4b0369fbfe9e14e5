"""The two interfaces the control loop knows: a Robot (observe/act) and a Teleoperator (the source of actions).

A real ALOHA (Dynamixel followers + RealSense cameras), the emulated ALOHA and the MuJoCo simulator all implement
`Robot`; leader arms, scripted demonstrators and trained policies all implement `Teleoperator`. The loop, the
recorder and the rollout only ever see these two.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assets_store.schema import CameraSpec


class RobotError(RuntimeError):
    """A robot could not do what was asked (servo fault, camera gone, not calibrated). The message names the
    device (port, servo ID, camera) and the fault; the robot has already stopped safely when this is raised."""


@dataclass
class Observation:
    qpos: np.ndarray  # (J,) float32, follower joints, grippers normalized to [0, 1]
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W, 3) uint8 RGB
    qvel: np.ndarray | None = None
    effort: np.ndarray | None = None
    # camera name -> (device frame number, device timestamp); lets the store detect drops later
    frame_info: dict[str, tuple[float, float]] = field(default_factory=dict)
    dropped_frames: int = 0  # frames the cameras skipped since the previous observation
    reward: float | None = None  # task reward where the robot knows it (simulator)


class Robot(abc.ABC):
    """A robot at the interface of the 50 Hz loop."""

    name: str
    fps: float = 50.0
    # Simulators may run on a virtual clock, faster than real time (`aloha record --fast`); hardware never does.
    simulated: bool = False

    @property
    @abc.abstractmethod
    def joint_names(self) -> list[str]: ...

    @property
    def action_names(self) -> list[str]:
        """Names of the commanded action dimensions (joint targets; Mobile ALOHA adds base velocities)."""
        return self.joint_names

    @property
    @abc.abstractmethod
    def cameras(self) -> list[CameraSpec]: ...

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def observe(self) -> Observation: ...

    @abc.abstractmethod
    def act(self, action: np.ndarray) -> None:
        """Send one commanded action (joint targets) for this control step."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Release the robot (torque off on hardware). Must be safe to call twice."""

    def reset(self, seed: int | None = None) -> Observation:
        """Prepare a new episode (sim: new object placement from `seed`) and return an observation of it. The control
        loop observes again at step 0 itself: frames taken here predate the start gesture and ramp."""
        return self.observe()

    def max_reward(self) -> float | None:
        """Reward that counts as success, where the robot can judge it (simulator); None otherwise."""
        return None

    def episode_attrs(self) -> dict[str, Any]:
        """Extra attributes for the recorded episode (calibration hash, camera serials, task, ...)."""
        return {}

    def __enter__(self) -> "Robot":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


class Teleoperator(abc.ABC):
    """Where actions come from: leader arms, a scripted demonstrator or a policy."""

    def connect(self) -> None:
        pass

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        """Called after robot.reset(seed) and before the first step of an episode."""

    @abc.abstractmethod
    def next_action(self, observation: Observation) -> np.ndarray:
        """The commanded action for this step, given the latest observation."""

    def disconnect(self) -> None:
        pass
