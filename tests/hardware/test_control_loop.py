"""The fixed-rate loop's timing report, checked against a fake clock (no real sleeping anywhere)."""

from __future__ import annotations

import numpy as np
import pytest

from assets_store.schema import CameraSpec
from hardware.interfaces import Observation, Robot, Teleoperator
from hardware.loop import FixedRateLoop, LoopReport, Percentiles, StepTiming, VirtualClock, run_episode


class FakeClock:
    """Time moves only when the loop sleeps or a step 'works' (advance)."""

    def __init__(self):
        self.t = 100.0
        self.sleeps: list[tuple[float, float]] = []  # (now, deadline) of every sleep

    def now(self) -> float:
        return self.t

    def sleep_until(self, deadline: float) -> None:
        self.sleeps.append((self.t, deadline))
        self.t = max(self.t, deadline)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def run_with_work(work_ms: list[float], fps: float = 50.0):
    clock = FakeClock()
    loop = FixedRateLoop(fps, clock)
    starts = []

    def step(i, t):
        starts.append(round((t - 100.0) * 1e3, 6))
        clock.advance(work_ms[i] / 1e3)

    report = loop.run(step, max_steps=len(work_ms))
    return report, starts, clock, loop


def test_on_time_loop_has_no_late_steps_and_zero_jitter():
    report, starts, clock, _ = run_with_work([5.0] * 10)
    assert starts == [20.0 * k for k in range(10)]
    assert report.steps == 10 and report.late_steps == 0 and report.missed_periods == 0
    assert report.achieved_hz == pytest.approx(50.0)
    assert report.jitter_ms.max == pytest.approx(0.0, abs=1e-6)
    assert report.work_ms.p50 == pytest.approx(5.0)
    assert report.period_ms.mean == pytest.approx(20.0)
    assert all(deadline > now for now, deadline in clock.sleeps)  # only ever sleeps towards a future deadline


def test_overrun_within_a_period_is_late_and_the_next_step_starts_at_once():
    report, starts, clock, _ = run_with_work([5, 5, 30, 5, 5])
    # step 2 (due 40 ms) works 30 ms -> ends at 70 > deadline 60: late; step 3 (due 60) starts at 70 without sleeping
    assert starts == [0, 20, 40, 70, 80]
    assert report.late_steps == 1
    assert report.missed_periods == 0
    assert report.jitter_ms.max == pytest.approx(10.0)
    assert report.jitter_ms.p50 == pytest.approx(5.0)  # |20-20|, |20-20|, |30-20|, |10-20|
    assert report.start_delay_ms.max == pytest.approx(10.0)
    assert report.achieved_hz == pytest.approx(4 / 0.080)
    assert all(deadline > now for now, deadline in clock.sleeps)


def test_long_overrun_reanchors_instead_of_bursting_to_catch_up():
    report, starts, _, loop = run_with_work([5, 50, 5, 5, 5])
    # step 1 ends at 70 ms: the slots due at 40 and 60 are gone; the schedule restarts at 70, then every 20 ms
    assert starts == [0, 20, 70, 90, 110]
    assert report.late_steps == 1
    assert report.missed_periods == 1
    assert min(np.diff(starts)) == pytest.approx(20.0)  # never two steps closer than a period
    assert loop.timings[2].scheduled == pytest.approx(loop.timings[2].start)


def test_step_returning_false_stops_the_loop():
    clock = FakeClock()
    seen = []
    report = FixedRateLoop(50, clock).run(lambda i, t: seen.append(i) or i < 3, max_steps=100)
    assert seen == [0, 1, 2, 3] and report.steps == 4


def test_percentiles_and_empty_report():
    p = Percentiles.of(np.arange(1, 101, dtype=float))
    assert (p.p50, p.max, p.mean) == (pytest.approx(50.5), 100.0, pytest.approx(50.5))
    empty = LoopReport.from_timings([], 50.0)
    assert empty.steps == 0 and empty.late_steps == 0
    one = LoopReport.from_timings([StepTiming(0, 0.0, 0.0, 0.001)], 50.0)
    assert one.steps == 1 and one.achieved_hz == 0.0 and one.work_ms.max == pytest.approx(1.0)


def test_virtual_clock_spaces_timestamps_exactly_one_period():
    stamps = []
    report = FixedRateLoop(50, VirtualClock(10.0)).run(lambda i, t: stamps.append(t), max_steps=5)
    assert np.allclose(np.diff(stamps), 0.02) and stamps[0] == 10.0
    assert report.late_steps == 0


class CounterRobot(Robot):
    """Pure-Python robot: qpos follows the command with a lag; reward 1 once joint 0 passes 0.5."""

    name = "counter"

    def __init__(self):
        self.q = np.zeros(2, np.float32)
        self.log: list[str] = []

    @property
    def joint_names(self):
        return ["a", "b"]

    @property
    def cameras(self):
        return [CameraSpec("cam", 4, 4)]

    def connect(self):
        pass

    def reset(self, seed=None):
        self.q[:] = 0
        self.log.append(f"reset {seed}")
        return self.observe()

    def observe(self):
        self.log.append("observe")
        return Observation(qpos=self.q.copy(), images={"cam": np.zeros((4, 4, 3), np.uint8)},
                           reward=float(self.q[0] > 0.5))

    def act(self, action):
        self.log.append("act")
        self.q = 0.5 * self.q + 0.5 * np.asarray(action, np.float32)

    def disconnect(self):
        pass

    def max_reward(self):
        return 1.0


class Ramp(Teleoperator):
    def start_episode(self, robot, seed=None):
        self.k = 0
        robot.log.append("start_episode")

    def next_action(self, observation):
        self.k += 1
        return np.array([0.1 * self.k, -0.1 * self.k], np.float32)


def test_run_episode_order_actions_and_success():
    robot, teleop, records = CounterRobot(), Ramp(), []
    run = run_episode(robot, teleop, num_steps=6, seed=3, clock=FakeClock(), on_step=records.append)
    assert robot.log[:3] == ["reset 3", "observe", "start_episode"]
    # step 0 observes anew: start_episode may take seconds (start gesture, ramp), so the reset observation is stale
    assert robot.log[3:7] == ["observe", "act", "observe", "act"]
    assert [r.index for r in records] == list(range(6))
    assert np.allclose(records[2].action, [0.3, -0.3])  # the commanded action, not the measured qpos
    assert run.steps == 6 and run.success is True and run.max_reward == 1.0 and not run.stopped_early
    assert run.final_observation is not None and len(run.rewards) == 7


def test_run_episode_stops_early():
    stops = iter([False, False, True])
    run = run_episode(CounterRobot(), Ramp(), num_steps=10, clock=FakeClock(), should_stop=lambda: next(stops))
    assert run.steps == 3 and run.stopped_early


def test_real_clock_loop_never_runs_ahead_of_its_schedule():
    stamps = []
    report = FixedRateLoop(100.0).run(lambda i, t: stamps.append(t), max_steps=6)  # MonotonicClock, 50 ms
    assert report.steps == 6
    assert stamps[-1] - stamps[0] >= 5 * 0.01 - 1e-9  # each start waits for its slot; no bursts
    assert report.achieved_hz <= 100.0 + 1e-6
