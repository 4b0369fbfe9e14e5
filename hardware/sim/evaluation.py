"""Closed-loop evaluation in simulation: any Teleoperator (a scripted demo or a trained policy) on held-out seeds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from hardware.control_loop import run_episode
from hardware.robot import Teleoperator
from hardware.sim import constants as C
from hardware.sim.robot import SimRobot, make_sim_robot

# Recording uses seeds from 0 upwards (`aloha record --seed`); evaluation draws from a disjoint range.
HELDOUT_SEED_BASE = 1_000_000


def heldout_seeds(n: int, offset: int = 0) -> list[int]:
    """n seeds that recording never uses by default: object placements no training episode has seen."""
    return [HELDOUT_SEED_BASE + offset + i for i in range(n)]


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    max_reward: float
    steps: int
    seconds: float


@dataclass
class EvalResult:
    task: str
    episodes: list[EpisodeOutcome] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return sum(e.success for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_max_reward(self) -> float:
        return sum(e.max_reward for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "n": len(self.episodes),
            "success_rate": self.success_rate,
            "mean_max_reward": self.mean_max_reward,
            "episodes": [e.__dict__ for e in self.episodes],
        }


def evaluate(
    task: str,
    make_teleoperator: Callable[[SimRobot], Teleoperator],
    seeds: list[int],
    *,
    cameras: list[str] | None = None,
    resolution: tuple[int, int] = (480, 640),
    episode_len: int = C.EPISODE_LEN,
    on_episode: Callable[[EpisodeOutcome], None] | None = None,
    robot: SimRobot | None = None,
) -> EvalResult:
    """Roll out `make_teleoperator(robot)` once per seed, as fast as the machine allows (virtual 50 Hz clock).

    Success is ACT's: the task's maximum reward (4) reached within `episode_len` steps.
    """
    robot = robot or make_sim_robot(task, cameras=cameras, resolution=resolution)
    result = EvalResult(task=robot.task.name)
    robot.connect()
    try:
        teleop = make_teleoperator(robot)
        teleop.connect()
        try:
            for seed in seeds:
                start = time.perf_counter()
                run = run_episode(robot, teleop, num_steps=episode_len, seed=seed, realtime=False,
                                  stop_on_success=True)
                outcome = EpisodeOutcome(
                    seed=seed,
                    success=bool(run.success),
                    max_reward=float(run.max_reward or 0.0),
                    steps=run.steps,
                    seconds=time.perf_counter() - start,
                )
                result.episodes.append(outcome)
                if on_episode is not None:
                    on_episode(outcome)
        finally:
            teleop.disconnect()
    finally:
        robot.disconnect()
    return result
