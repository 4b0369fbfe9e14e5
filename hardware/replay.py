"""Replay a recorded episode's commanded actions on a robot (the simulator, or a real arm) through the same loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assets_store import EpisodeReader
from hardware.interfaces import Observation, Robot, Teleoperator
from hardware.loop import EpisodeRun, run_episode


class ActionReplay(Teleoperator):
    """A Teleoperator that sends a fixed action sequence, then holds the last action."""

    def __init__(self, actions: np.ndarray):
        self.actions = np.asarray(actions, dtype=np.float32)
        if self.actions.ndim != 2 or len(self.actions) == 0:
            raise ValueError(f"expected a non-empty (T, A) action array, got shape {self.actions.shape}")
        self._t = 0
        self.qpos: list[np.ndarray] = []  # what the robot reported while replaying

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        self._t = 0
        self.qpos = []

    def next_action(self, observation: Observation) -> np.ndarray:
        self.qpos.append(np.asarray(observation.qpos, dtype=np.float32))
        a = self.actions[min(self._t, len(self.actions) - 1)]
        self._t += 1
        return a


@dataclass
class ReplayResult:
    run: EpisodeRun
    seed: int | None
    recorded_success: bool | None  # what the recording itself achieved, where known
    max_qpos_deviation: float  # max |replayed qpos - recorded qpos| over all steps and joints


def episode_seed(reader: EpisodeReader) -> int | None:
    seed = (reader.attrs.get("extra") or {}).get("seed")
    return None if seed is None else int(seed)


def replay_episode(reader: EpisodeReader, robot: Robot, *, realtime: bool | None = None) -> ReplayResult:
    """Reset `robot` with the episode's seed and send its recorded actions at the recorded fps."""
    if list(robot.action_names) != list(reader.info.action_names or []):
        raise ValueError(
            f"robot {robot.name!r} takes actions {robot.action_names}, the episode has {reader.info.action_names}"
        )
    if realtime is None:
        realtime = not robot.simulated
    seed = episode_seed(reader)
    teleop = ActionReplay(reader.action)
    run = run_episode(robot, teleop, num_steps=len(reader.action), seed=seed, fps=reader.fps, realtime=realtime)
    replayed = np.stack(teleop.qpos)
    n = min(len(replayed), len(reader.qpos))
    deviation = float(np.max(np.abs(replayed[:n] - reader.qpos[:n]))) if n else 0.0
    recorded = (reader.attrs.get("outcome") or {}).get("success")
    return ReplayResult(run=run, seed=seed, recorded_success=recorded, max_qpos_deviation=deviation)
