"""The recorder with a pure-Python robot: commanded actions as labels, counters, controls, resume, finalize."""

from __future__ import annotations

import json
import os
import pty

import numpy as np
import pytest

from assets_store import EpisodeReader, SessionIndex, is_session_finalized
from assets_store.checks import dropped_frame_count
from assets_store.episode_reader import EpisodeArrays
from assets_store.errors import StoreError
from assets_store.schema import CameraSpec
from hardware.interfaces import Observation, Robot, Teleoperator
from hardware.keyboard import Command, TerminalCommands
from hardware.loop import VirtualClock
from hardware.recorder import EpisodeFailed, RecordConfig, Recorder, record_session
from hardware.sim.placements import HELDOUT_SEED_BASE

J = 3


class FakeClock(VirtualClock):
    """A virtual clock the robot can push forward to simulate slow steps."""

    def advance(self, seconds: float) -> None:
        self.t += seconds


class LaggyRobot(Robot):
    """Follower lags the command (so qpos != action); two cameras; drops frames on request; can be slow."""

    name = "laggy"
    fps = 50.0

    def __init__(self, clock: FakeClock | None = None, slow_steps=(), drop_every: int = 0):
        self.clock, self.slow_steps, self.drop_every = clock, set(slow_steps), drop_every
        self.q = np.zeros(J, np.float32)
        self.frame = 0
        self.steps = 0
        self.connected = False

    @property
    def joint_names(self):
        return [f"j{i}" for i in range(J)]

    @property
    def cameras(self):
        return [CameraSpec("top", 8, 12), CameraSpec("wrist", 6, 8)]

    def connect(self):
        self.connected = True

    def disconnect(self):
        self.connected = False

    def reset(self, seed=None):
        self.q[:] = 0 if seed is None else seed
        self.steps = 0
        return self.observe()

    def observe(self):
        dropped = 0
        self.frame += 1
        if self.drop_every and self.steps and self.steps % self.drop_every == 0:
            self.frame += 1  # the camera skipped one
            dropped = 1
        img = np.full((8, 12, 3), self.frame % 256, np.uint8)
        return Observation(
            qpos=self.q.copy(), qvel=self.q * 0.1,
            images={"top": img, "wrist": np.zeros((6, 8, 3), np.uint8)},
            frame_info={"top": (self.frame, self.frame / 50.0), "wrist": (self.frame, self.frame / 50.0)},
            dropped_frames=dropped,
        )

    def act(self, action):
        if self.clock is not None and self.steps in self.slow_steps:
            self.clock.advance(0.035)  # this step overruns its 20 ms period
        self.q = 0.5 * self.q + 0.5 * np.asarray(action, np.float32)
        self.steps += 1

    def episode_attrs(self):
        return {"task": "wave", "calibration_hash": "abc123", "arm_serials": ["x", "y"]}


class Sine(Teleoperator):
    """Deterministic commands; remembers what it sent per episode."""

    def __init__(self):
        self.sent: list[list[np.ndarray]] = []

    def start_episode(self, robot, seed=None):
        self.sent.append([])
        self.seed = seed or 0

    def next_action(self, observation):
        k = len(self.sent[-1])
        a = np.sin(np.arange(J) + 0.1 * k + self.seed).astype(np.float32)
        self.sent[-1].append(a)
        return a


class Script:
    """Command source that fires commands at given poll counts (polled once per step and while resetting)."""

    def __init__(self, plan: dict[int, Command]):
        self.plan, self.polls = plan, 0

    def poll(self):
        self.polls += 1
        return self.plan.get(self.polls)


def test_records_commanded_actions_timestamps_and_counters(layout):
    clock = FakeClock(1000.0)
    robot, teleop = LaggyRobot(clock, slow_steps={3}, drop_every=4), Sine()
    progress = []
    cfg = RecordConfig(session="s1", episodes=2, episode_len=20, seed=10, realtime=False)
    result = record_session(robot, teleop, layout, cfg, clock=clock, on_progress=progress.append)
    assert not robot.connected  # record_session disconnects
    assert [e.index for e in result.episodes] == [0, 1]
    assert result.marker is not None and is_session_finalized(layout.session_dir("s1"))

    r = EpisodeReader(layout.episode_path("s1", 0))
    assert r.action.shape == (20, J) and r.qpos.shape == (20, J)
    np.testing.assert_array_equal(r.action, np.stack(teleop.sent[0]))  # the label is the command ...
    assert not np.allclose(r.action, r.qpos)  # ... not the lagging follower
    assert np.all(np.diff(r.timestamps) > 0) and r.fps == 50.0
    assert r.frames("top").shape == (20, 8, 12, 3)
    assert r.frame_info("top").shape == (20, 2)
    counters = r.attrs["counters"]
    assert counters["late_steps"] == 1  # step 3 took 35 ms of a 20 ms period
    # steps 4, 8, 12, 16 skip a frame number on both cameras: counted as validation counts them from the frame info
    assert counters["dropped_frames"] == 8 == dropped_frame_count(EpisodeArrays(r.path))
    assert counters["camera_dropped_frames"] == 4  # what the robot's cameras reported lost
    assert r.attrs["loop_timing"]["late_steps"] == 1
    assert r.attrs["extra"]["seed"] == 10 and r.attrs["extra"]["arm_serials"] == ["x", "y"]
    assert r.info.task == "wave" and r.info.calibration_hash == "abc123"
    assert EpisodeReader(layout.episode_path("s1", 1)).attrs["extra"]["seed"] == 11  # seed + index
    phases = {p.phase for p in progress}
    assert {"episode", "saved", "done"} <= phases
    assert max(p.step for p in progress if p.phase == "episode") == 20


def test_first_step_observes_after_the_teleoperator_started_the_episode(layout):
    """The start gesture and the ramp to the leaders' pose take seconds: step 0 must not record the observation
    taken before them (it did, and the frame-number jump failed the dropped-frame check)."""

    class SlowStart(Sine):
        def start_episode(self, robot, seed=None):
            super().start_episode(robot, seed)
            for _ in range(110):  # 2.2 s of ramp at 50 Hz, each command observed by the robot's cameras
                robot.observe()
                robot.act(np.full(J, 4.0, np.float32))
            robot.steps = 0

    robot = LaggyRobot()
    cfg = RecordConfig(session="slow", episodes=1, episode_len=10, realtime=False, seed=1)
    result = record_session(robot, SlowStart(), layout, cfg)
    r = EpisodeReader(result.episodes[0].path)
    np.testing.assert_allclose(r.qpos[0], 4.0, atol=1e-3)  # where the ramp left the follower, not the reset pose
    assert np.all(np.diff(r.frame_info("top")[:, 0]) == 1)  # step 0's frame is the one just before step 1's
    assert r.attrs["counters"]["dropped_frames"] == 0 == dropped_frame_count(EpisodeArrays(r.path))


def test_next_rerecord_and_quit_controls(layout):
    # polls: one per step. Episode 0: 'r' at its 5th step -> discarded, re-recorded as index 0;
    # the re-recording ends early with 'n' at its 7th step; episode 1 is stopped by 'q' at its 3rd step.
    script = Script({5: Command.RERECORD, 12: Command.NEXT, 15: Command.QUIT})
    robot, teleop = LaggyRobot(), Sine()
    cfg = RecordConfig(session="s2", episodes=5, episode_len=30, realtime=False)
    result = Recorder(robot, teleop, layout, cfg, commands=script).run()
    assert result.discarded == 1 and result.stopped_early
    assert [(e.index, e.steps) for e in result.episodes] == [(0, 7), (1, 3)]
    eps = SessionIndex(layout, "s2").episodes()
    assert [(e.index, e.num_steps) for e in eps] == [(0, 7), (1, 3)]
    assert result.marker is not None
    assert json.loads(result.marker.read_text())["stopped_early"] is True
    assert not any(p.name.startswith(".") for p in layout.session_dir("s2").iterdir() if p.is_dir())


def test_rerecord_during_reset_replaces_the_last_saved_episode(layout):
    # episode 0 runs 10 steps (10 polls), then the reset period polls: 'r' on its first poll
    script = Script({11: Command.RERECORD})
    cfg = RecordConfig(session="s3", episodes=2, episode_len=10, reset_seconds=1.0, realtime=False)
    result = Recorder(LaggyRobot(), Sine(), layout, cfg, commands=script).run()
    assert result.discarded == 1
    assert [e.index for e in result.episodes] == [0, 1]
    assert [e.index for e in SessionIndex(layout, "s3").episodes()] == [0, 1]


def test_resume_continues_numbering_and_finalized_session_is_immutable(layout):
    cfg = RecordConfig(session="s4", episodes=2, episode_len=5, realtime=False, finalize=False)
    first = record_session(LaggyRobot(), Sine(), layout, cfg)
    assert first.marker is None and [e.index for e in first.episodes] == [0, 1]
    cfg2 = RecordConfig(session="s4", episodes=1, episode_len=5, realtime=False, seed=100)
    second = record_session(LaggyRobot(), Sine(), layout, cfg2)
    assert [e.index for e in second.episodes] == [2] and second.episodes[0].seed == 102
    assert second.marker is not None
    with pytest.raises(StoreError, match="finalized"):
        Recorder(LaggyRobot(), Sine(), layout, cfg2).run()


def test_explicit_seeds_replace_seed_plus_index_and_must_cover_every_episode(layout):
    cfg = RecordConfig(session="s5", episodes=2, episode_len=5, realtime=False, seed=100, seeds=[17, 3, 99])
    result = record_session(LaggyRobot(), Sine(), layout, cfg)
    assert [e.seed for e in result.episodes] == [17, 3]
    assert [EpisodeReader(layout.episode_path("s5", i)).attrs["extra"]["seed"] for i in (0, 1)] == [17, 3]
    with pytest.raises(ValueError, match="RecordConfig.seeds: 1 seed"):
        Recorder(LaggyRobot(), Sine(), layout, RecordConfig(session="s6", episodes=2, seeds=[1]))


def test_fault_mid_episode_keeps_the_partial_episode_marked_failed(layout):
    class Broken(Sine):
        def next_action(self, observation):
            if len(self.sent[-1]) == 4:
                raise RuntimeError("leader arm unplugged")
            return super().next_action(observation)

    cfg = RecordConfig(session="s5", episodes=2, episode_len=10, realtime=False)
    with pytest.raises(EpisodeFailed, match="unplugged") as err:
        record_session(LaggyRobot(), Broken(), layout, cfg)
    r = EpisodeReader(err.value.path)
    assert len(r) == 4  # the steps before the fault
    assert r.attrs["status"] == "failed" and r.attrs["failure"] == "RuntimeError: leader arm unplugged"
    assert not is_session_finalized(layout.session_dir("s5"))  # the session stays open for a retry
    assert [e.attrs["status"] for e in SessionIndex(layout, "s5").episodes()] == ["failed"]


def test_fault_on_the_first_step_leaves_nothing(layout):
    class Dead(Sine):
        def next_action(self, observation):
            raise RuntimeError("leader arm silent")

    cfg = RecordConfig(session="s6", episodes=1, episode_len=10, realtime=False)
    with pytest.raises(RuntimeError, match="silent"):
        record_session(LaggyRobot(), Dead(), layout, cfg)
    assert list(layout.session_dir("s6").iterdir()) == []


def test_terminal_commands_read_keys_from_a_pty_and_are_off_without_a_tty(tmp_path):
    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as stream, TerminalCommands(stream) as keys:
        assert keys.enabled
        assert keys.poll() is None
        os.write(master, b"xn")
        assert keys.poll() is Command.NEXT
        os.write(master, b"R")
        assert keys.poll() is Command.RERECORD
    os.close(master)
    with open(tmp_path / "f", "w+") as not_a_tty, TerminalCommands(not_a_tty) as keys:
        assert not keys.enabled and keys.poll() is None


def test_random_seed_is_drawn_and_stored_for_replay(layout):
    cfg = RecordConfig(session="s6", episodes=1, episode_len=3, realtime=False, seed=None)
    result = record_session(LaggyRobot(), Sine(), layout, cfg)
    seed = result.episodes[0].seed
    assert isinstance(seed, int) and 0 <= seed < HELDOUT_SEED_BASE  # never a scene evaluation holds out
    assert EpisodeReader(result.episodes[0].path).attrs["extra"]["seed"] == seed
