"""The one fixed-rate control loop (50 Hz by default), and `run_episode`, which drives a Robot from a Teleoperator.

The loop measures itself: every step's scheduled start, actual start and end are kept, and `LoopReport` turns them
into late steps, start-to-start periods, jitter and work-time percentiles. A step that overruns its deadline is
counted as late and the next step starts at once, on a schedule re-anchored to "now": the loop never bursts extra
steps to catch up, and never hides an overrun.

    loop = FixedRateLoop(fps=50)
    report = loop.run(lambda index, t: do_step(index, t), max_steps=400)   # step returns False to stop early
    print(report.summary())

    run = run_episode(robot, teleoperator, num_steps=400, seed=7)           # observe -> next_action -> act
    run.success, run.max_reward, run.report.late_steps

Clocks are injectable (`Clock`): `MonotonicClock` in real time, `VirtualClock` for as-fast-as-possible simulation
(each step takes zero virtual time and timestamps advance exactly one period), or a fake clock in tests.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Protocol

import numpy as np

from hardware.interfaces import Observation, Robot, Teleoperator


# --------------------------------------------------------------------------- clocks
class Clock(Protocol):
    def now(self) -> float: ...

    def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    """Wall time from the monotonic clock; sleeps with the OS timer (no busy-wait: cores are shared)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


class VirtualClock:
    """Simulated time: work takes no time and sleeping jumps ahead. For running a simulator faster than real time."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)


# --------------------------------------------------------------------------- timing report
@dataclass
class StepTiming:
    index: int
    scheduled: float  # when the step was due to start
    start: float  # when it started
    end: float  # when its work finished

    @property
    def work(self) -> float:
        return self.end - self.start


@dataclass
class Percentiles:
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, values_ms: np.ndarray) -> "Percentiles":
        if len(values_ms) == 0:
            return cls()
        p50, p90, p99 = np.percentile(values_ms, [50, 90, 99])
        return cls(float(np.mean(values_ms)), float(p50), float(p90), float(p99), float(np.max(values_ms)))


@dataclass
class LoopReport:
    fps: float
    steps: int = 0
    late_steps: int = 0  # steps whose work ended after their deadline (scheduled start + one period)
    missed_periods: int = 0  # whole periods lost to overruns; the schedule was re-anchored, not caught up
    duration_s: float = 0.0  # first start to last end
    achieved_hz: float = 0.0  # steps per second, start to start
    period_ms: Percentiles = field(default_factory=Percentiles)  # start-to-start intervals
    jitter_ms: Percentiles = field(default_factory=Percentiles)  # |interval - nominal period|
    start_delay_ms: Percentiles = field(default_factory=Percentiles)  # actual start - scheduled start
    work_ms: Percentiles = field(default_factory=Percentiles)  # time spent inside the step function

    @classmethod
    def from_timings(cls, timings: list[StepTiming], fps: float) -> "LoopReport":
        period = 1.0 / fps
        report = cls(fps=fps, steps=len(timings))
        if not timings:
            return report
        starts = np.array([s.start for s in timings])
        ends = np.array([s.end for s in timings])
        scheduled = np.array([s.scheduled for s in timings])
        # A tiny tolerance keeps float rounding of exact-period fake clocks from counting as late.
        late = ends > scheduled + period + 1e-9
        report.late_steps = int(late.sum())
        overrun = np.maximum(ends - (scheduled + period), 0.0)
        report.missed_periods = int(np.floor(overrun / period + 1e-9).sum())
        report.duration_s = float(ends[-1] - starts[0])
        intervals = np.diff(starts)
        if len(intervals) and starts[-1] > starts[0]:
            report.achieved_hz = float(len(intervals) / (starts[-1] - starts[0]))
        report.period_ms = Percentiles.of(intervals * 1e3)
        report.jitter_ms = Percentiles.of(np.abs(intervals - period) * 1e3)
        report.start_delay_ms = Percentiles.of((starts - scheduled) * 1e3)
        report.work_ms = Percentiles.of((ends - starts) * 1e3)
        return report

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.steps} steps at {self.achieved_hz:.1f}/{self.fps:g} Hz, {self.late_steps} late, "
            f"jitter p50/p99/max {self.jitter_ms.p50:.2f}/{self.jitter_ms.p99:.2f}/{self.jitter_ms.max:.2f} ms, "
            f"work p50/p99 {self.work_ms.p50:.2f}/{self.work_ms.p99:.2f} ms"
        )


# --------------------------------------------------------------------------- the loop
StepFn = Callable[[int, float], "bool | None"]


class FixedRateLoop:
    """Calls `step(index, t)` once per period; `t` is the step's actual start time (use it as its timestamp)."""

    def __init__(self, fps: float = 50.0, clock: Clock | None = None):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self.clock: Clock = clock or MonotonicClock()
        self.timings: list[StepTiming] = []

    def run(self, step: StepFn, max_steps: int | None = None) -> LoopReport:
        """Run until `step` returns False or `max_steps` steps ran. Exceptions from `step` propagate."""
        self.timings = []
        clock, period = self.clock, self.period
        scheduled = clock.now()
        index = 0
        while max_steps is None or index < max_steps:
            now = clock.now()
            if now < scheduled:
                clock.sleep_until(scheduled)
                now = clock.now()
            elif now - scheduled >= period:
                # The previous step overran into this slot: start now and re-anchor, never burst to catch up.
                scheduled = now
            keep_going = step(index, now)
            end = clock.now()
            self.timings.append(StepTiming(index, scheduled, now, end))
            index += 1
            scheduled += period
            if keep_going is False:
                break
        return self.report()

    def report(self) -> LoopReport:
        return LoopReport.from_timings(self.timings, self.fps)

    def recent_rate(self, window: int = 50) -> float:
        """Start-to-start rate over the last `window` steps, for live progress displays."""
        ts = self.timings[-window:]
        if len(ts) < 2 or ts[-1].start <= ts[0].start:
            return 0.0
        return (len(ts) - 1) / (ts[-1].start - ts[0].start)


# --------------------------------------------------------------------------- one episode
class FrameGaps:
    """Camera frames missing between consecutive steps, counted per camera from the frame numbers the steps hold.

    The same count validation makes from a stored episode's `<cam>_frame_info` (`assets_store.episode_reader.
    frame_number_gaps`), kept as the episode runs, so what the recorder reports is what the pipeline will find: frames
    the device never delivered and frames the loop was too slow to take alike.
    """

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.total = 0

    def add(self, frame_info: Mapping[str, tuple[float, float]]) -> int:
        """Count one step's frames; returns the frames missing since the previous step."""
        new = 0
        for cam, (number, _) in frame_info.items():
            if not math.isfinite(number):
                continue
            previous = self.last.get(cam)
            if previous is not None and number > previous + 1:
                new += int(number - previous - 1)
            self.last[cam] = number
        self.total += new
        return new


@dataclass
class StepRecord:
    index: int
    timestamp: float  # loop time at the start of the step (monotonic or virtual seconds)
    observation: Observation  # what the teleoperator saw
    action: np.ndarray  # what it commanded (the label to record)
    dropped_frames: int = 0  # camera frames missing between the previous step's frames and this step's


@dataclass
class EpisodeRun:
    steps: int
    report: LoopReport
    rewards: list[float]  # reward of each observation, then of the final one (where the robot knows rewards)
    max_reward: float | None
    success: bool | None  # None where the robot cannot judge success
    dropped_frames: int  # frame-number gaps between consecutive steps, all cameras (`FrameGaps`)
    final_observation: Observation | None
    stopped_early: bool
    camera_dropped_frames: int = 0  # frames the cameras themselves reported lost (device, USB)


def run_episode(
    robot: Robot,
    teleoperator: Teleoperator,
    *,
    num_steps: int,
    seed: int | None = None,
    fps: float | None = None,
    clock: Clock | None = None,
    realtime: bool = True,
    on_step: Callable[[StepRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loop: FixedRateLoop | None = None,
    stop_on_success: bool = False,
) -> EpisodeRun:
    """reset(seed) -> start_episode -> num_steps x (observe, next_action, act) at a fixed rate.

    `stop_on_success` (evaluation) ends the episode once the robot reports its maximum reward: success within the
    episode length is then decided, and the remaining steps would only cost time.

    `realtime=False` runs on a `VirtualClock` (simulators only: as fast as the machine allows, timestamps spaced
    exactly one period). `on_step` sees every (observation, commanded action) pair, e.g. to record it;
    `should_stop()` returning True ends the episode after the current step.

    Every step observes at its own start, the first one included: `start_episode` may take seconds (the start
    gesture, the ramp to the leader arms' pose), and the observation `reset` returned is that old by then.
    """
    fps = fps or robot.fps
    if loop is None:
        if clock is None and not realtime:
            clock = VirtualClock(start=time.monotonic())
        loop = FixedRateLoop(fps, clock)
    robot.reset(seed)
    teleoperator.start_episode(robot, seed)
    rewards: list[float] = []
    gaps = FrameGaps()
    camera_dropped = 0
    stopped = False
    target = robot.max_reward() if stop_on_success else None

    def step(index: int, t: float) -> bool:
        nonlocal camera_dropped, stopped
        observation = robot.observe()
        action = np.asarray(teleoperator.next_action(observation))
        robot.act(action)
        missing = gaps.add(observation.frame_info)
        if index > 0:  # the first step's report covers the time before the episode
            camera_dropped += int(observation.dropped_frames)
        if observation.reward is not None:
            rewards.append(float(observation.reward))
        if on_step is not None:
            on_step(StepRecord(index, t, observation, action, missing))
        if should_stop is not None and should_stop():
            stopped = index + 1 < num_steps
            return False
        if target is not None and rewards and rewards[-1] >= target:
            stopped = index + 1 < num_steps
            return False
        return True

    report = loop.run(step, max_steps=num_steps)
    final = robot.observe()  # the state the last action led to (its reward counts, as in ACT)
    if final.reward is not None:
        rewards.append(float(final.reward))
    target = robot.max_reward()
    max_reward = max(rewards) if rewards else None
    success = None if target is None or max_reward is None else max_reward >= target
    return EpisodeRun(
        steps=report.steps,
        report=report,
        rewards=rewards,
        max_reward=max_reward,
        success=success,
        dropped_frames=gaps.total,
        final_observation=final,
        stopped_early=stopped,
        camera_dropped_frames=camera_dropped,
    )
