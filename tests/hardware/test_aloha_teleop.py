"""The ALOHA robot over emulated servos with the real SDK: config, 50 Hz teleop of two pairs, faults, torque release,
and `aloha record --robot emulated` into the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hardware.aloha.config import AlohaConfig, default_config_path
from hardware.aloha.emulated import emulated_calibration, servo_setups
from hardware.aloha.rig import emulated_rig
from hardware.aloha.robot import AlohaRobot
from hardware.aloha.teleop import LeaderArms
from hardware.dynamixel import CalibrationError, ServoHardwareError
from hardware.dynamixel.emulator import ServoEmulator
from hardware.loop import FixedRateLoop
from proc_kit import default_signals, signal_and_collect

REPO = Path(__file__).resolve().parents[2]
FOLLOWERS = ("left_follower", "right_follower")


def torque_of(emulator, bus) -> list[bool]:
    return [s["torque"] for s in emulator.state(bus).values()]


@pytest.fixture
def rig(layout):
    """An emulated rig whose emulator outlives robot.disconnect(), so tests can inspect torque afterwards."""
    r = emulated_rig(None, layout)
    r.acquire()
    yield r
    r.release()
    assert not r.emulator.running


def test_example_configs_validate():
    aloha = AlohaConfig.load(default_config_path("aloha"))
    assert len(aloha.joint_names) == 14 and aloha.joint_names[0] == "left_waist"
    assert [c.name for c in aloha.cameras] == ["cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"]
    assert {a.arm for a in aloha.leaders()} == {"wx250s"} and {a.arm for a in aloha.followers()} == {"vx300s"}
    assert sum(len(j.ids) for j in aloha.followers()[0].joint_specs()) == 9  # shadows included
    mobile = AlohaConfig.load(default_config_path("mobile_aloha"))
    assert len(mobile.action_names) == 16 and mobile.action_names[-2:] == ["base_linear_vel", "base_angular_vel"]
    data = yaml.safe_load(default_config_path("aloha").read_text())
    data["pairs"][0]["leader"] = "left_follower"
    with pytest.raises(ValueError, match="is a follower, used as leader"):
        AlohaConfig.model_validate(data)
    data = yaml.safe_load(default_config_path("aloha").read_text())
    data["arms"][1]["port"] = data["arms"][0]["port"]
    with pytest.raises(ValueError, match="share a port"):
        AlohaConfig.model_validate(data)


def test_teleop_two_pairs_at_50hz_followers_track_leaders(rig):
    robot, leaders = AlohaRobot(rig, cameras=[]), LeaderArms(rig)
    robot.connect()
    leaders.connect()
    try:
        waited = leaders.wait_for_start_gesture()  # the emulated operator squeezes both grippers
        assert waited < 5.0
        actions, errors = [], []

        def step(index, t):
            obs = robot.observe()
            if actions:
                errors.append(np.abs(obs.qpos - actions[-1]))
            action = leaders.next_action(obs)
            robot.act(action)
            actions.append(action)

        report = FixedRateLoop(50).run(step, max_steps=150)
        # rate: robust to a loaded 2-core machine; precise numbers live in bench/bench_hardware.py
        assert report.steps == 150
        assert report.achieved_hz > 25.0, report.summary()
        assert report.period_ms.p50 < 30.0, report.summary()
        # tracking: followers stay within a few steps of lag of the leaders (which keep moving)
        tracking = np.mean(errors[len(errors) // 3 :], axis=0)
        assert tracking.max() < 0.12, tracking
        assert np.ptp(np.array(actions)[:, 0]) > 0.05  # leaders really moved
    finally:
        leaders.disconnect()
        robot.disconnect()
    for bus in (*FOLLOWERS, "left_leader", "right_leader"):
        assert not any(torque_of(rig.emulator, bus)), bus


def test_followers_ramp_to_the_leaders_pose_before_teleop(rig):
    """After the start gesture the followers approach the leaders' pose in small even steps, never in one jump."""
    robot, leaders = AlohaRobot(rig, cameras=[]), LeaderArms(rig)
    robot.connect()
    leaders.connect()
    try:
        start = robot.observe().qpos.astype(np.float64)
        sent, targets = [], []
        act, read = robot.act, leaders.read
        robot.act = lambda a: (sent.append(np.array(a)), act(a))  # observe the commands, still drive the arms
        leaders.read = lambda *a: targets.append(read(*a)) or targets[-1]
        leaders.start_episode(robot)
        robot.act, leaders.read = act, read
    finally:
        leaders.disconnect()
        robot.disconnect()
    n = len(start)
    steps = int(round(rig.config.start_ramp_s * rig.config.fps))
    commands = np.array([c[:n] for c in sent])
    target = targets[-1][:n]
    assert len(commands) == steps
    assert np.abs(target - start).max() > 0.3  # the arms really were apart
    np.testing.assert_allclose(commands[-1], target, atol=1e-9)  # ends exactly at the leaders' pose
    increments = np.diff(np.vstack([start, commands]), axis=0)
    np.testing.assert_allclose(increments, np.broadcast_to(increments[0], increments.shape), atol=1e-9)
    assert np.abs(increments).max() <= np.abs(target - start).max() / steps + 1e-9


def test_servo_fault_stops_every_follower_and_names_it(rig):
    robot = AlohaRobot(rig, cameras=[])
    robot.connect()
    try:
        robot.act(robot.observe().qpos)
        rig.emulator.inject("right_follower", "hardware_error", ids=[4], bits=0x20)
        with pytest.raises(ServoHardwareError) as err:
            robot.observe()
        msg = str(err.value)
        assert "right_follower" in msg and rig.specs["right_follower"].port in msg
        assert "servo ID 4 (elbow)" in msg and "overload" in msg
        left = rig.emulator.state("left_follower")
        assert all(s["torque"] for s in left.values())  # on_fault: hold
        assert all(abs(s["goal_position"] - s["present_position"]) < 30 for s in left.values())
        assert robot.episode_attrs()["faults"] == [msg]
    finally:
        robot.disconnect()
    for bus in FOLLOWERS:
        assert not any(torque_of(rig.emulator, bus))


def test_servo_fault_while_recording_marks_the_episode_failed(rig, layout):
    """A hardware error mid-episode: followers stop safely, the partial episode is kept marked failed, and the
    message names the port, the servo ID and the fault."""
    from assets_store import EpisodeReader, SessionIndex, is_session_finalized
    from hardware.recorder import EpisodeFailed, RecordConfig, record_session

    class FaultyOperator(LeaderArms):
        steps = 0

        def next_action(self, observation):
            self.steps += 1
            if self.steps == 10:  # overload on the right elbow, reported with the next status packet
                rig.emulator.inject("right_follower", "hardware_error", ids=[4], bits=0x20)
            return super().next_action(observation)

    rig.config.start_ramp_s = 0.0
    robot, leaders = AlohaRobot(rig, cameras=[]), FaultyOperator(rig, gesture=False)
    cfg = RecordConfig(session="faulty", episodes=2, episode_len=100, realtime=True)
    with pytest.raises(EpisodeFailed) as err:
        record_session(robot, leaders, layout, cfg)
    msg = str(err.value)
    assert rig.specs["right_follower"].port in msg and "servo ID 4" in msg and "overload" in msg
    reader = EpisodeReader(err.value.path)
    assert reader.attrs["status"] == "failed" and "overload" in reader.attrs["failure"]
    assert 10 <= len(reader) < 100
    assert not is_session_finalized(layout.session_dir("faulty"))
    assert [e.attrs["status"] for e in SessionIndex(layout, "faulty").episodes()] == ["failed"]
    for bus in FOLLOWERS:
        assert not any(torque_of(rig.emulator, bus))  # released on disconnect


def test_mobile_aloha_takes_16d_actions(layout):
    rig = emulated_rig(default_config_path("mobile_aloha"), layout, resolution=(24, 32))
    robot = AlohaRobot(rig)
    robot.connect()
    try:
        obs = robot.observe()
        assert obs.qpos.shape == (14,) and set(obs.images) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}
        robot.act(np.concatenate([obs.qpos, [5.0, -0.5]]))
        assert robot.base_command.tolist() == [0.7, -0.5]  # clipped to the configured limits
        with pytest.raises(ValueError, match=r"shape \(16,\)"):
            robot.act(obs.qpos)
    finally:
        robot.disconnect()


def _real_config(tmp_path: Path, emulator: ServoEmulator, calibrate: bool) -> Path:
    """The real-robot configuration pointed at emulator ptys (what a user's U2D2 ports would be)."""
    data = yaml.safe_load(default_config_path("aloha").read_text())
    data["cameras"] = []
    data["calibration_dir"] = str(tmp_path / "calibration")
    for arm in data["arms"]:
        arm["port"] = emulator.port(arm["name"])
        arm["reply_timeout_ms"] = 50.0
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    config = AlohaConfig.load(path)
    if calibrate:
        for arm in config.arms:
            emulated_calibration(arm.spec()).save(tmp_path / "calibration" / f"{arm.name}.json")
    return path


@pytest.fixture
def bare_emulator():
    config = AlohaConfig.load(default_config_path("aloha"))
    with ServoEmulator({a.name: servo_setups(a.spec()) for a in config.arms}) as emu:
        yield emu


def test_real_robot_refuses_uncalibrated_arms(tmp_path, bare_emulator, layout):
    from hardware.registry import RobotOptions, make_robot

    robot = make_robot("aloha", RobotOptions(config=_real_config(tmp_path, bare_emulator, calibrate=False),
                                             layout=layout))
    with pytest.raises(CalibrationError, match="aloha calibrate --arm left_follower"):
        robot.connect()
    robot.disconnect()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])  # SIGHUP: SSH dropped
def test_torque_released_on_signal(tmp_path, bare_emulator, signum):
    """`aloha teleop --robot aloha` (real code path, ports = emulator ptys) killed mid-run leaves no torque on."""
    config = _real_config(tmp_path, bare_emulator, calibrate=True)
    env = dict(os.environ, ALOHA_STORE=str(tmp_path / "store"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.app", "teleop", "--robot", "aloha", "--config", str(config),
         "--no-gesture"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=default_signals,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(torque_of(bare_emulator, "right_follower")):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        assert all(torque_of(bare_emulator, "left_follower")) and all(torque_of(bare_emulator, "right_follower"))
        time.sleep(0.3)  # a few teleop steps
    except BaseException:
        proc.kill()
        raise
    out = signal_and_collect(proc, signum)
    for bus in FOLLOWERS:
        assert not any(torque_of(bare_emulator, bus)), (bus, out)
    if signum == signal.SIGINT:
        assert "torque released" in out and proc.returncode == 0, out
    else:
        assert proc.returncode == 128 + signum, out


def test_record_emulated_produces_valid_episodes(layout):
    from typer.testing import CliRunner

    from assets_store import EpisodeReader
    from pipeline.cli.app import build_app

    result = CliRunner().invoke(build_app(), [
        "record", "--robot", "emulated", "--session", "dry_run", "--episodes", "2", "--episode-len", "30",
        "--resolution", "48x64", "--reset-time", "0", "--store", str(layout.root),
    ])
    assert result.exit_code == 0, result.output
    episodes = sorted(layout.session_dir("dry_run").glob("episode_*.zarr"))
    assert len(episodes) == 2
    reader = EpisodeReader(episodes[0])
    info = reader.info
    assert info.robot == "emulated" and len(info.joint_names) == 14 and info.fps == 50
    assert [c.name for c in info.cameras] == ["cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"]
    assert info.calibration_hash
    qpos, action = reader.qpos, reader.action
    assert qpos.shape == (30, 14) and action.shape == (30, 14)
    assert np.all((qpos[:, 6] >= 0) & (qpos[:, 6] <= 1))  # gripper normalized
    frames = reader.frames("cam_high")
    frame_info = reader.frame_info("cam_high")
    assert frames.shape == (30, 48, 64, 3) and frame_info.shape == (30, 2)
    assert np.all(np.diff(frame_info[:, 0]) >= 0)  # device frame numbers never go backwards
