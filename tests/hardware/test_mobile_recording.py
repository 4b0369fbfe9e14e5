"""Mobile ALOHA end to end without hardware: `--robot emulated-mobile` (arms on pty servo emulators, 3 software
cameras, the Tracer emulated on a virtual CAN bus and pushed by a stand-in operator) records 16-D episodes whose
base columns are the measured base velocity, and they pass every pipeline check."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader
from assets_store.checks import CHECKS
from hardware.aloha.teleop import LeaderArms
from hardware.base import frames as F
from hardware.recorder import EpisodeFailed, RecordConfig, record_session
from hardware.registry import RobotOptions, make_robot
from pipeline_kit import check_one

STEPS = 150  # 3 s: one full period of the stand-in operator's push


def test_emulated_mobile_recording_has_the_measured_base_velocity_and_passes_every_check(layout):
    robot = make_robot("emulated-mobile", RobotOptions(resolution=(24, 32), layout=layout))
    robot.config.start_ramp_s = 0.0
    emulator = robot.rig.base_emulator
    leaders = LeaderArms(robot.rig)
    result = record_session(robot, leaders, layout, RecordConfig(session="mobile", episodes=1, episode_len=STEPS))
    (episode,) = [e.path for e in result.episodes]

    report = check_one(layout, "mobile", episode)
    assert set(report.checks) == set(CHECKS) and report.passed, report.reasons

    reader = EpisodeReader(episode)
    assert reader.action.shape == (STEPS, 16) and reader.qpos.shape == (STEPS, 14)
    assert reader.info.action_names[-2:] == ["base_linear_vel", "base_angular_vel"]
    assert reader.camera_names == ["cam_high", "cam_left_wrist", "cam_right_wrist"]
    base = reader.action[:, 14:]
    assert np.abs(base[:, 0]).max() > 0.1 and np.abs(base[:, 1]).max() > 0.1  # moving, not zero
    # Every recorded velocity is a feedback frame the base sent around that step (same monotonic clock; the action
    # is read after the step's timestamp), in the order the base sent them.
    fb = np.array(emulator.log.feedback)
    matched = []
    for t, (v, w) in zip(reader.timestamps, base):
        near = np.flatnonzero((np.abs(fb[:, 0] - t) < 0.2) & (np.abs(fb[:, 1] - v) + np.abs(fb[:, 2] - w) < 1e-6))
        assert len(near), (t, v, w)
        matched.append(near[-1])
    assert np.all(np.diff(matched) >= -2)
    # Pushed by the operator, never commanded while teleoperating
    assert emulator.log.commands == [] and F.MODE_CAN not in emulator.log.modes
    extra = reader.attrs["extra"]
    assert extra["base_limits"] == [0.7, 1.0] and extra["base"]["velocity_source"] == "tracer"


def test_a_base_fault_while_recording_fails_the_episode_and_stops_everything(layout):
    robot = make_robot("emulated-mobile", RobotOptions(cameras=[], layout=layout))
    robot.config.start_ramp_s = 0.0
    leaders = LeaderArms(robot.rig, gesture=False)
    emulator = robot.rig.base_emulator

    class Saboteur(LeaderArms):
        steps = 0

        def next_action(self, observation):
            self.steps += 1
            if self.steps == 20:
                emulator.inject("error_flag")
            return super().next_action(observation)

    leaders = Saboteur(robot.rig, gesture=False)
    with pytest.raises(EpisodeFailed) as err:
        record_session(robot, leaders, layout, RecordConfig(session="fault", episodes=1, episode_len=200))
    assert "error code 0x0200" in str(err.value) and "base stopped" in str(err.value)
    assert any("error code" in f for f in robot.faults)


def test_rollout_sends_the_policy_base_columns_to_the_base(layout):
    from hardware.rollout import run_rollouts
    from hardware.interfaces import Teleoperator

    class Drive(Teleoperator):  # stands in for a policy: hold the arms, drive forward while turning
        def next_action(self, observation):
            return np.concatenate([observation.qpos, [0.3, -0.2]]).astype(np.float32)

    robot = make_robot("emulated-mobile", RobotOptions(cameras=[], layout=layout))
    emulator = robot.rig.base_emulator
    report = run_rollouts(robot, Drive(), [None, None], num_steps=40)
    commands = np.array(emulator.log.commands)
    assert len(report.episodes) == 2 and F.MODE_CAN in emulator.log.modes
    assert np.allclose(commands.max(axis=0)[0], 0.3) and np.allclose(commands.min(axis=0)[1], -0.2)
    assert emulator.log.commands[-1] == (0.0, 0.0)  # left stopped
    assert robot.faults == [] and robot.rig.base.fault is None  # no command timeout between the episodes


def test_cli_records_emulated_mobile(layout):
    from pipeline.cli.app import build_app

    result = CliRunner().invoke(build_app(), [
        "record", "--robot", "emulated-mobile", "--session", "cli_mobile", "--episodes", "1", "--episode-len", "50",
        "--resolution", "24x32", "--reset-time", "0", "--store", str(layout.root),
    ])
    assert result.exit_code == 0, result.output
    (episode,) = sorted(layout.session_dir("cli_mobile").glob("episode_*.zarr"))
    reader = EpisodeReader(episode)
    assert reader.info.robot == "emulated-mobile" and reader.action.shape[1] == 16


def test_wheel_encoder_velocity_source_is_recorded(layout, tmp_path):
    """Mobile ALOHA's own source: two Dynamixel wheel servos (emulated on the pty servo emulator) read through the
    real Dynamixel bus and converted to base velocity; the Tracer is neither read for it nor commanded."""
    import yaml

    from hardware.aloha.config import default_config_path
    from hardware.base.wheels import base_velocity

    data = yaml.safe_load(default_config_path("mobile_aloha").read_text())
    data["base"]["velocity_source"] = "wheel_encoders"
    config = tmp_path / "wheels.yaml"
    config.write_text(yaml.safe_dump(data))
    robot = make_robot("emulated-mobile", RobotOptions(cameras=[], layout=layout, config=config))
    robot.config.start_ramp_s = 0.0
    result = record_session(robot, LeaderArms(robot.rig, gesture=False), layout,
                            RecordConfig(session="wheels", episodes=1, episode_len=60))
    (episode,) = [e.path for e in result.episodes]
    assert check_one(layout, "wheels", episode).passed
    base = EpisodeReader(episode).action[:, 14:]
    assert np.abs(base[:, 0]).max() > 0.05 and np.abs(base[:, 1]).max() > 0.01
    # The stand-in operator rolls both wheels together (the mirrored right servo the other way), the left 1.3 times
    # as fast: the base turns clockwise while going forward, at a fixed ratio w / v that the conversion predicts.
    v, w = base_velocity(1.3, -1.0, robot.config.base.wheel_encoders)
    moving = np.abs(base[:, 0]) > 0.05
    assert moving.sum() > 10
    assert np.allclose(base[moving, 1] / base[moving, 0], w / v, rtol=0.1)
    assert robot.rig.base_emulator.log.commands == []


def test_configuration_base_section_and_its_old_name(tmp_path):
    import yaml

    from hardware.aloha.config import AlohaConfig, default_config_path

    data = yaml.safe_load(default_config_path("mobile_aloha").read_text())
    config = AlohaConfig.model_validate(data)
    assert (config.base.interface, config.base.channel, config.base.velocity_source) == ("socketcan", "can0", "tracer")
    assert config.base.rollout_delay_steps == 13  # the recipe's default
    # files written before the driver existed: `mobile_base` with the limits only
    old = {**{k: v for k, v in data.items() if k != "base"}, "mobile_base": {"max_linear_vel": 0.5, "max_angular_vel": 0.8}}
    migrated = AlohaConfig.model_validate(old)
    assert migrated.base.limits == (0.5, 0.8) and len(migrated.action_names) == 16
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({**old, "base": data["base"]}))
    with pytest.raises(ValueError, match="both 'base' and its old name 'mobile_base'") as err:
        AlohaConfig.load(path)
    assert str(path) in str(err.value)
