"""Run a trained policy on a robot: the policy is just another Teleoperator inside the same 50 Hz control loop.

    policy = Policy.from_bundle(bundle_dir, temporal_ensemble_k=0.01)
    report = run_rollouts("sim-transfer-cube", policy, seeds=[1_000_000, 1_000_001], num_steps=400)
    report.success_rate, report.latency_ms.p99

Before the first step the bundle is checked against the robot: a policy trained on other cameras or other joints
is refused, never driven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hardware.control_loop import Percentiles, StepRecord, run_episode
from hardware.robot import Observation, Robot, Teleoperator


class IncompatiblePolicy(ValueError):
    """The bundle was trained for other cameras or other joints than this robot has."""


class PolicyTeleoperator(Teleoperator):
    """Actions from a `model.policy.Policy`; measures the time of every inference call."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.latencies_s: list[float] = []

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        self.policy.reset()  # forget the previous episode's action chunks

    def next_action(self, observation: Observation) -> np.ndarray:
        start = time.perf_counter()
        action = self.policy.act(observation.qpos, observation.images)
        self.latencies_s.append(time.perf_counter() - start)
        return np.asarray(action, dtype=np.float32)


@dataclass
class RolloutEpisode:
    seed: int | None
    success: bool | None
    max_reward: float | None
    steps: int
    seconds: float
    late_steps: int
    video: str | None = None


@dataclass
class RolloutReport:
    robot: str
    episodes: list[RolloutEpisode] = field(default_factory=list)
    latency_ms: Percentiles = field(default_factory=Percentiles)
    max_reward: float | None = None

    @property
    def success_rate(self) -> float | None:
        judged = [e.success for e in self.episodes if e.success is not None]
        return float(np.mean(judged)) if judged else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "robot": self.robot,
            "success_rate": self.success_rate,
            "max_reward": self.max_reward,
            "latency_ms": self.latency_ms.__dict__,
            "episodes": [e.__dict__ for e in self.episodes],
        }


def check_compatible(policy: Any, robot: Robot) -> None:
    """Refuse a bundle whose cameras or joints differ from the robot's (the message names both sides)."""
    cams = [c.name for c in robot.cameras]
    missing = [c for c in policy.camera_names if c not in cams]
    if missing:
        raise IncompatiblePolicy(f"the policy needs cameras {policy.camera_names}; robot {robot.name!r} has {cams}")
    if list(policy.joint_names) != list(robot.joint_names):
        raise IncompatiblePolicy(
            f"the policy was trained on joints {list(policy.joint_names)}; robot {robot.name!r} has {robot.joint_names}"
        )
    try:
        policy.check_compatible(cams, list(robot.joint_names))
    except (ValueError, KeyError) as exc:
        raise IncompatiblePolicy(str(exc)) from exc


def make_robot_for_policy(robot_name: str, policy: Any, resolution: tuple[int, int] | None = None, **options: Any) -> Robot:
    """The named robot with the policy's cameras; a camera the robot does not have is a refusal, not a crash."""
    from hardware.robots import RobotOptions, make_robot

    try:
        robot = make_robot(robot_name, RobotOptions(cameras=list(policy.camera_names), resolution=resolution, **options))
    except (KeyError, ValueError) as exc:
        raise IncompatiblePolicy(f"robot {robot_name!r} cannot provide cameras {list(policy.camera_names)}: {exc}") from exc
    scene = getattr(robot, "scene_cameras", None)
    if callable(scene):  # a simulator accepts any name until it renders: check against the scene now
        missing = [c for c in policy.camera_names if c not in scene()]
        if missing:
            raise IncompatiblePolicy(f"the policy needs cameras {missing}; scene of {robot_name!r} has {scene()}")
    return robot


def run_rollouts(
    robot: Robot,
    policy: Any,
    seeds: list[int | None],
    *,
    num_steps: int = 400,
    realtime: bool | None = None,
    stop_on_success: bool = True,
    video_dir: Path | None = None,
    on_episode: Callable[[RolloutEpisode], None] | None = None,
) -> RolloutReport:
    """One episode per seed. Simulators run on a virtual 50 Hz clock unless `realtime`; real robots always in real time."""
    simulated = bool(getattr(robot, "simulated", False))
    realtime = (not simulated) if realtime is None else (realtime or not simulated)
    teleop = PolicyTeleoperator(policy)
    report = RolloutReport(robot=robot.name)
    check_compatible(policy, robot)  # before connecting: a mismatched policy never gets near the motors
    robot.connect()
    try:
        target = robot.max_reward()
        report.max_reward = target
        teleop.connect()
        for i, seed in enumerate(seeds):
            frames: list[np.ndarray] = []

            def on_step(rec: StepRecord) -> None:
                if video_dir is not None and rec.observation.images:
                    frames.append(np.concatenate(list(rec.observation.images.values()), axis=1))

            start = time.perf_counter()
            run = run_episode(
                robot, teleop, num_steps=num_steps, seed=seed, realtime=realtime, on_step=on_step,
                stop_on_success=stop_on_success,  # ACT's success: max reward reached; later steps change nothing
            )
            episode = RolloutEpisode(
                seed=seed,
                success=run.success,
                max_reward=run.max_reward,
                steps=run.steps,
                seconds=time.perf_counter() - start,
                late_steps=run.report.late_steps,
            )
            if video_dir is not None and frames:
                episode.video = str(_write_video(Path(video_dir), f"episode_{i:03d}_seed_{seed}", frames, robot.fps))
            report.episodes.append(episode)
            if on_episode is not None:
                on_episode(episode)
    finally:
        teleop.disconnect()
        robot.disconnect()
    report.latency_ms = Percentiles.of(np.asarray(teleop.latencies_s) * 1e3)
    return report


def _write_video(video_dir: Path, name: str, frames: list[np.ndarray], fps: float) -> Path:
    import imageio.v2 as imageio

    video_dir.mkdir(parents=True, exist_ok=True)
    path = video_dir / f"{name}.mp4"
    h, w = frames[0].shape[:2]
    # H.264 wants even sizes; crop one pixel where needed rather than resample.
    frames = [f[: h - h % 2, : w - w % 2] for f in frames]
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1) as writer:
        for f in frames:
            writer.append_data(f)
    return path
