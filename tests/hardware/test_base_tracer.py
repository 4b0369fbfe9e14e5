"""The real Tracer driver (python-can) against the emulated Tracer on python-can's virtual bus (in-process: the
virtual interface does not cross processes)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardware.base import frames as F
from hardware.base.config import BaseConfig, TracerFrameIds
from hardware.base.emulator import TracerEmulator
from hardware.base.tracer import BaseFault, TracerBase, limit_command
from hardware.base.wheels import base_velocity, wheel_units_to_rad_s
from hardware.base.config import WheelEncoderConfig
from proc_kit import default_signals, signal_and_collect

REPO = Path(__file__).resolve().parents[2]

FPS = 50.0
_channels = itertools.count()


def wait_until(predicate, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture
def rig():
    channel = f"tracer-test-{next(_channels)}"
    emulator = TracerEmulator(channel).start()
    base = TracerBase(BaseConfig(interface="virtual", channel=channel), FPS)
    base.connect()
    yield emulator, base
    base.disconnect()
    emulator.stop()


def drive(base: TracerBase, command, steps: int) -> None:
    for _ in range(steps):
        base.command(*command)
        time.sleep(1.0 / FPS)


def test_frames_round_trip_with_the_manual_layout():
    assert F.encode_motion(0.5, -0.25) == bytes([0x01, 0xF4, 0xFF, 0x06, 0, 0, 0, 0])  # 500 mm/s, -250 mrad/s
    assert F.decode_motion(F.encode_motion(-1.234, 0.789)) == (-1.234, 0.789)
    assert F.decode_odometry(F.encode_odometry(-12.345, 67.891)) == (-12.345, 67.891)
    for ids in (TracerFrameIds(), TracerFrameIds(error_byte=5, error_bytes=1)):
        status = F.SystemStatus(F.STATE_EXCEPTION, F.MODE_CAN, 25.3, 0x42, 7)
        assert F.decode_status(F.encode_status(status, ids), ids) == status


def test_commands_arrive_encoded_and_limited(rig):
    emulator, base = rig
    drive(base, (5.0, -3.0), 60)  # far beyond the limits (0.7 m/s, 1.0 rad/s)
    assert wait_until(lambda: len(emulator.log.commands) == 60)  # the emulator reads its bus every 20 ms
    assert emulator.log.modes == [F.MODE_CAN]  # command mode enabled once, before the first motion command
    commands = np.array(emulator.log.commands)
    assert np.all(np.abs(commands[:, 0]) <= 0.7) and np.all(np.abs(commands[:, 1]) <= 1.0)
    # acceleration limits: 1 m/s^2 and 2 rad/s^2 -> 0.02 and 0.04 per 20 ms step
    assert np.all(np.abs(np.diff(commands[:, 0])) <= 0.02 + 1e-9) and commands[0, 0] == 0.02
    assert np.all(np.abs(np.diff(commands[:, 1])) <= 0.04 + 1e-9) and commands[0, 1] == -0.04
    assert commands[-1].tolist() == [0.7, -1.0]
    assert emulator.log.raw_commands[-1] == F.encode_motion(0.7, -1.0)


def test_feedback_decodes_velocity_odometry_and_status(rig):
    emulator, base = rig
    drive(base, (0.4, 0.5), 40)
    assert wait_until(lambda: abs(base.velocity()[0] - emulator.velocity[0]) < 0.02 and base.velocity()[0] > 0.2)
    status = base.state.status
    assert status is not None and status.mode == F.MODE_CAN and status.fault is None and status.battery_v == 26.0
    left, right = base.state.odometry
    assert right > left > 0  # driving forward while turning counter-clockwise
    assert wait_until(lambda: base.state.odometry[0] > left)


@pytest.mark.parametrize("fault, words", [
    ("silent", "no motion feedback"),
    ("bus_off", "bus-off"),
    ("error_flag", "error code 0x0200"),
    ("rc_override", "left CAN command mode"),
])
def test_each_fault_stops_the_base_with_a_message(rig, fault, words):
    emulator, base = rig
    drive(base, (0.5, 0.0), 30)
    emulator.inject(fault)
    start = time.monotonic()
    with pytest.raises(BaseFault, match=words) as err:
        while time.monotonic() - start < 3.0:  # the control loop goes on until the driver refuses
            base.command(0.5, 0.0)
            time.sleep(1.0 / FPS)
    # detected within a few control periods (feedback timeout 10 periods; slack for a loaded machine)
    assert time.monotonic() - start < 40 / FPS
    assert "virtual:" in str(err.value) and "base stopped" in str(err.value)
    if fault != "silent":  # the emulator still listens: the last thing it heard is zero velocity
        assert wait_until(lambda: emulator.log.commands[-1] == (0.0, 0.0))
    assert base.sent.tolist() == [0.0, 0.0]


def test_a_stopped_control_loop_stops_the_base(rig):
    emulator, base = rig
    drive(base, (0.5, 0.2), 20)
    assert wait_until(lambda: base.fault is not None)  # nobody commands any more
    assert "control loop stopped" in base.fault
    assert wait_until(lambda: emulator.log.commands[-1] == (0.0, 0.0))
    assert wait_until(lambda: abs(emulator.velocity[0]) < 0.05)


def test_disconnect_leaves_the_base_stopped(rig):
    emulator, base = rig
    drive(base, (0.5, 0.2), 10)
    base.disconnect()
    assert wait_until(lambda: emulator.log.commands[-1] == (0.0, 0.0))  # the emulator reads its bus every 20 ms
    base.disconnect()  # twice is fine


def test_no_base_on_the_bus_is_a_clear_error():
    base = TracerBase(BaseConfig(interface="virtual", channel="nobody-home"), FPS)
    with pytest.raises(BaseFault, match="no motion feedback"):
        base.connect()
    assert not base.connected


def test_limit_command_on_numbers():
    cfg = BaseConfig(max_linear_vel=1.0, max_angular_vel=0.5, max_linear_acc=10.0, max_angular_acc=10.0)
    out = limit_command(np.array([3.0, -3.0]), np.array([0.95, -0.45]), cfg, 0.02)
    assert out.tolist() == pytest.approx([1.0, -0.5])


SIGNAL_SCRIPT = """
import atexit, sys, time
import numpy as np
from hardware.registry import RobotOptions, make_robot

robot = make_robot("emulated-mobile", RobotOptions(cameras=[], layout=None))
emulator = robot.rig.base_emulator
# registered before the robot's own exit guard, so it runs after the guard has released the robot
atexit.register(lambda: print("last command", emulator.log.commands[-1], flush=True))
robot.connect()
step = 0
while True:
    obs = robot.observe()
    robot.act(np.concatenate([obs.qpos, [0.3, 0.2]]))
    step += 1
    if step == 25:
        print("driving", flush=True)
    time.sleep(0.02)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_base_left_stopped_on_signal(tmp_path, signum):
    env = dict(os.environ, ALOHA_STORE=str(tmp_path / "store"))
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_signals)
    try:
        assert proc.stdout.readline().strip() == "driving"
    except BaseException:
        proc.kill()
        raise
    out = signal_and_collect(proc, signum)
    assert "last command (0.0, 0.0)" in out, out


def test_wheel_encoders_to_base_velocity_on_numbers():
    cfg = WheelEncoderConfig()  # Mobile ALOHA's numbers: R 0.0505 m, b 0.622 m, right wheel mirrored
    rad_s = wheel_units_to_rad_s(100, cfg)
    assert rad_s == pytest.approx(100 * 0.229 * 2 * np.pi / 60)
    # both wheels forward (the mirrored right servo reports the negative)
    assert base_velocity(rad_s, -rad_s, cfg).tolist() == pytest.approx([rad_s * 0.0505, 0.0])
    # turning on the spot counter-clockwise: left backward, right forward
    assert base_velocity(-rad_s, -rad_s, cfg).tolist() == pytest.approx([0.0, 2 * rad_s * 0.0505 / 0.622])
    unmirrored = cfg.model_copy(update={"right_negated": False})
    assert base_velocity(rad_s, rad_s, unmirrored).tolist() == pytest.approx([rad_s * 0.0505, 0.0])
