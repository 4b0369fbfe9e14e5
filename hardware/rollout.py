"""The one closed-loop rollout loop: a policy (or any Teleoperator) drives a robot in the same 50 Hz control loop.

    policy = Policy.from_bundle(bundle_dir, temporal_ensemble_k=0.01)
    robot = make_robot_for_policy("sim-transfer-cube", policy)
    report = run_rollouts(robot, policy, seeds=[1_000_000, 1_000_001], num_steps=400)
    report.summary.rate, report.latency_ms.p99

`aloha rollout`, the pipeline's `policy_evaluation` and the simulator's scripted-demo checks all run here, and
`success_summary` is the one place a success rate is computed. `async_inference=AsyncInference(...)` runs the
policy beside the loop instead of inside it (`hardware.async_policy`): the loop then runs in real time, since on a
virtual clock inference would take no loop time at all. Before the first step a policy is checked against
the robot (`check_compatible`): a policy trained on other cameras or other joints is refused, never driven.

`record=` stores every rollout as an episode (`hardware.rollout_recording`: a sink per episode sees every step and
the finished episode); `takeover=` lets a person take the robot over mid-rollout (`hardware.takeover`, HG-DAgger).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from hardware.async_policy import AsyncInference, AsyncPolicyTeleoperator
from hardware.interfaces import Observation, Robot, Teleoperator
from hardware.loop import EpisodeRun, FixedRateLoop, Percentiles, StepRecord, VirtualClock, run_episode
from hardware.registry import RobotOptions, make_robot
from hardware.takeover import HumanControl, SharedControl
from hardware.visualize import side_by_side, write_mp4


class IncompatiblePolicy(ValueError):
    """The bundle was trained for other cameras or other joints than this robot has."""


class PolicyTeleoperator(Teleoperator):
    """Actions from a `model.policy.Policy` (anything with `reset()` and `act(qpos, images)`)."""

    def __init__(self, policy: Any):
        self.policy = policy

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        self.policy.reset()  # forget the previous episode's action chunks

    def next_action(self, observation: Observation) -> np.ndarray:
        return np.asarray(self.policy.act(observation.qpos, observation.images), dtype=np.float32)


class _Timed(Teleoperator):
    """Measures every `next_action` call of the teleoperator it wraps (a policy: its inference latency)."""

    def __init__(self, inner: Teleoperator):
        self.inner = inner
        self.latencies_s: list[float] = []

    def connect(self) -> None:
        self.inner.connect()

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        self.inner.start_episode(robot, seed)

    def next_action(self, observation: Observation) -> np.ndarray:
        start = time.perf_counter()
        action = self.inner.next_action(observation)
        self.latencies_s.append(time.perf_counter() - start)
        return action

    def disconnect(self) -> None:
        self.inner.disconnect()


@dataclass
class RolloutEpisode:
    seed: int | None
    success: bool | None  # None where the robot cannot judge success
    max_reward: float | None
    steps: int
    seconds: float
    late_steps: int
    video: str | None = None
    fallback_steps: int = 0  # asynchronous inference: steps no chunk covered (the fallback was taken)
    takeover_spans: list[list[int]] = field(default_factory=list)  # [start, stop) steps a person drove
    label: str | None = None  # recorded rollouts: "success" | "failure" | None (unlabelled)
    stored: str | None = None  # recorded rollouts: the episode's path; None when not stored (discarded)


@dataclass(frozen=True)
class SuccessSummary:
    episodes: int
    judged: int  # episodes whose success the robot could judge
    successes: int
    rate: float | None  # successes / judged; None where nothing could be judged (a real robot)
    mean_max_reward: float  # over every episode, a missing reward counting as 0


def success_summary(episodes: Sequence[RolloutEpisode]) -> SuccessSummary:
    """The one success rate: ACT's, the maximum reward reached within the episode, over the judged episodes."""
    judged = [bool(e.success) for e in episodes if e.success is not None]
    rewards = [float(e.max_reward or 0.0) for e in episodes]
    return SuccessSummary(
        episodes=len(episodes),
        judged=len(judged),
        successes=int(sum(judged)),
        rate=float(np.mean(judged)) if judged else None,
        mean_max_reward=float(np.mean(rewards)) if rewards else 0.0,
    )


@dataclass
class RolloutReport:
    robot: str
    episodes: list[RolloutEpisode] = field(default_factory=list)
    latency_ms: Percentiles = field(default_factory=Percentiles)  # inference (synchronous: the whole policy call)
    max_reward: float | None = None
    inference: str = "sync"  # or "async"
    period_ms: Percentiles = field(default_factory=Percentiles)  # loop start-to-start periods, every episode
    chunk_age_steps: Percentiles = field(default_factory=Percentiles)  # async: steps from observation to use
    realtime: bool = False  # the loop ran on the wall clock; False: a simulator's virtual clock (periods are nominal)

    @property
    def late_steps(self) -> int:
        return sum(e.late_steps for e in self.episodes)

    @property
    def fallback_steps(self) -> int:
        return sum(e.fallback_steps for e in self.episodes)

    @property
    def summary(self) -> SuccessSummary:
        return success_summary(self.episodes)

    @property
    def success_rate(self) -> float | None:
        return self.summary.rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "robot": self.robot,
            "success_rate": self.success_rate,
            "max_reward": self.max_reward,
            "latency_ms": self.latency_ms.__dict__,
            "inference": self.inference,
            "realtime": self.realtime,
            "period_ms": self.period_ms.__dict__,
            "late_steps": self.late_steps,
            "fallback_steps": self.fallback_steps,
            "chunk_age_steps": self.chunk_age_steps.__dict__,
            "episodes": [e.__dict__ for e in self.episodes],
        }


class EpisodeSink(Protocol):
    """Where one rollout goes besides the report (`hardware.rollout_recording`: an episode of the store)."""

    def add(self, record: StepRecord) -> None: ...

    def close(self, episode: RolloutEpisode, run: EpisodeRun) -> None:
        """The rollout ended: keep it (filling `episode.label` / `episode.stored`) or drop it."""
        ...

    def abort(self) -> None:
        """The rollout stopped on an error: nothing of it is kept."""
        ...


# (index in this run, seed) -> the sink of that episode
RecordEpisode = Callable[[int, "int | None"], EpisodeSink]


def check_compatible(policy: Any, robot: Robot) -> None:
    """The policy's own check (`Policy.check_compatible`) against this robot's cameras and joints."""
    try:
        policy.check_compatible([c.name for c in robot.cameras], list(robot.joint_names))
    except ValueError as exc:
        raise IncompatiblePolicy(f"robot {robot.name!r}: {exc}") from exc


def apply_base_delay(policy: Any, robot: Robot) -> None:
    """Mobile ALOHA: the policy serves base actions the robot's configured number of steps later in each chunk than
    arm actions (`base.rollout_delay_steps`, the recipe's 13); robots without a base say nothing and get 0."""
    set_delay = getattr(policy, "set_base_delay", None)
    if set_delay is None:
        return
    try:
        set_delay(int(getattr(robot, "base_delay_steps", 0)))
    except ValueError as exc:
        raise IncompatiblePolicy(f"robot {robot.name!r}: {exc}; set base.rollout_delay_steps in its configuration") from exc


def make_robot_for_policy(robot_name: str, policy: Any, resolution: tuple[int, int] | None = None, **options: Any) -> Robot:
    """The named robot with the policy's cameras; a robot without one of them refuses here, before connecting."""
    try:
        return make_robot(robot_name, RobotOptions(cameras=list(policy.camera_names), resolution=resolution, **options))
    except ValueError as exc:  # unknown robot, or a camera the robot does not have: the message names it
        raise IncompatiblePolicy(f"robot {robot_name!r} cannot provide cameras {list(policy.camera_names)}: {exc}") from exc


def video_path(video_dir: Path, index: int, seed: int | None) -> Path:
    """Where `run_rollouts(video_dir=...)` writes episode `index`'s MP4."""
    return Path(video_dir) / f"episode_{index:03d}_seed_{seed}.mp4"


def run_rollouts(
    robot: Robot,
    driver: Any,
    seeds: Sequence[int | None],
    *,
    num_steps: int = 400,
    realtime: bool | None = None,
    stop_on_success: bool = True,
    video_dir: Path | None = None,
    on_episode: Callable[[RolloutEpisode], None] | None = None,
    async_inference: AsyncInference | None = None,
    on_step: Callable[[int], None] | None = None,
    record: RecordEpisode | None = None,
    takeover: HumanControl | None = None,
    keys: Callable[[], str] | None = None,
    videos: int | None = None,
) -> RolloutReport:
    """One episode per seed, driven by a policy (checked against the robot first) or by any Teleoperator.

    Simulators run on a virtual 50 Hz clock unless `realtime`; real robots always in real time. `stop_on_success`
    ends an episode once the maximum reward is reached (ACT's success: later steps change nothing). `record` gives
    each episode a sink (stored rollouts); `takeover` is a person's device that may take over (`keys`: typed keys,
    `t` takes over too). `on_step` hears the steps done in the current episode after each step (progress bars,
    step rates). With `video_dir`, the first `videos` episodes are filmed (None: every one).
    """
    if takeover is not None and async_inference is not None:
        raise ValueError("a takeover needs synchronous inference (the policy restarts when it gets control back)")
    teleop: _Timed | AsyncPolicyTeleoperator
    if isinstance(driver, Teleoperator):
        if async_inference is not None:
            raise ValueError("asynchronous inference needs a policy, not a teleoperator")
        teleop = _Timed(driver)
    else:
        check_compatible(driver, robot)  # before connecting: a mismatched policy never gets near the motors
        apply_base_delay(driver, robot)
        teleop = (_Timed(PolicyTeleoperator(driver)) if async_inference is None
                  else AsyncPolicyTeleoperator(driver, async_inference))
    simulated = bool(getattr(robot, "simulated", False))
    realtime = (not simulated) if realtime is None else (realtime or not simulated)
    realtime = realtime or async_inference is not None
    report = RolloutReport(robot=robot.name, inference="sync" if async_inference is None else "async",
                           realtime=realtime)
    periods: list[np.ndarray] = []
    driving: Teleoperator = teleop if takeover is None else SharedControl(teleop, takeover, keys)
    robot.connect()
    try:
        report.max_reward = robot.max_reward()
        driving.connect()
        for i, seed in enumerate(seeds):
            episode = _run_one(robot, driving, seed, num_steps, realtime, stop_on_success,
                               None if video_dir is None or (videos is not None and i >= videos)
                               else video_path(video_dir, i, seed), periods, on_step,
                               None if record is None else record(i, seed))
            report.episodes.append(episode)
            if on_episode is not None:
                on_episode(episode)
    finally:
        driving.disconnect()
        robot.disconnect()
    report.latency_ms = Percentiles.of(np.asarray(teleop.latencies_s) * 1e3)
    report.period_ms = Percentiles.of(np.concatenate(periods) * 1e3 if periods else np.empty(0))
    if isinstance(teleop, AsyncPolicyTeleoperator):
        report.chunk_age_steps = Percentiles.of(np.asarray(teleop.ages, dtype=np.float64))
    return report


def _run_one(robot: Robot, teleop: Teleoperator, seed: int | None, num_steps: int, realtime: bool,
             stop_on_success: bool, video: Path | None, periods: list[np.ndarray],
             steps_done: Callable[[int], None] | None = None, sink: EpisodeSink | None = None) -> RolloutEpisode:
    frames: list[np.ndarray] = []

    def on_step(rec: StepRecord) -> None:
        if sink is not None:
            sink.add(rec)
        if video is not None and rec.observation.images:
            frames.append(side_by_side(list(rec.observation.images.values())))
        if steps_done is not None:
            steps_done(rec.index + 1)

    start = time.perf_counter()
    # Our own loop, so the periods of every episode can make one distribution.
    loop = FixedRateLoop(robot.fps, None if realtime else VirtualClock(start=time.monotonic()))
    try:
        run = run_episode(robot, teleop, num_steps=num_steps, seed=seed, on_step=on_step, loop=loop,
                          stop_on_success=stop_on_success, should_stop=getattr(teleop, "should_stop", None))
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    periods.append(np.diff([t.start for t in loop.timings]))
    stop_base = getattr(robot, "stop_base", None)  # Mobile ALOHA: no command timeout between episodes
    if stop_base is not None:
        stop_base()
    episode = RolloutEpisode(seed=seed, success=run.success, max_reward=run.max_reward, steps=run.steps,
                             seconds=time.perf_counter() - start, late_steps=run.report.late_steps,
                             fallback_steps=getattr(teleop, "fallback_steps", 0))
    if isinstance(teleop, SharedControl):
        episode.takeover_spans = teleop.spans()
    if sink is not None:
        sink.close(episode, run)
    if video is not None and frames:
        episode.video = str(write_mp4(video, frames, robot.fps))
    return episode
