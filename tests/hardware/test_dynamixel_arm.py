"""Arms over the emulator with the real SDK: calibration, joint/gripper mapping, wrap-around, faults, torque release."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from hardware.aloha.emulated import (
    CENTER,
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    emulated_calibration,
    emulated_spec,
    servo_setups,
)
from hardware.aloha.servo_layouts import arm_joints
from hardware.dynamixel import (
    Arm,
    ArmCalibration,
    ArmSpec,
    ArmStopped,
    CalibrationError,
    OperatingMode,
    ServoHardwareError,
    ServoModelMismatch,
    ServoRangeError,
    ServoSilent,
)
from hardware.dynamixel.calibration_procedure import Calibrator
from hardware.dynamixel.emulator import ServoEmulator

FOLLOWER = ArmSpec("left_follower", "", arm_joints("vx300s"), role="follower")
LEADER = ArmSpec("left_leader", "", arm_joints("wx250s"), role="leader")


@pytest.fixture
def emulator():
    with ServoEmulator({"left_follower": servo_setups(FOLLOWER), "left_leader": servo_setups(LEADER)}) as emu:
        yield emu


def make_arm(emulator, spec=FOLLOWER, calibration="auto", **changes) -> Arm:
    spec = dataclasses.replace(emulated_spec(spec, emulator.port(spec.name)), **changes)
    calib = emulated_calibration(spec) if calibration == "auto" else calibration
    return Arm(spec, calib)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return predicate()


def torques(emulator, bus):
    return {i: s["torque"] for i, s in emulator.state(bus).items()}


def test_uncalibrated_arm_is_refused(emulator):
    arm = make_arm(emulator, calibration=None)
    with pytest.raises(CalibrationError, match="aloha calibrate --arm left_follower"):
        arm.connect()
    assert not any(torques(emulator, "left_follower").values())


def test_follower_configures_modes_and_tracks_goals(emulator):
    arm = make_arm(emulator, profile_velocity=200, profile_acceleration=20)
    arm.connect()
    try:
        state = emulator.state("left_follower")
        assert all(s["torque"] for s in state.values())
        assert state[9]["mode"] == OperatingMode.CURRENT_BASED_POSITION and state[9]["goal_current"] == 300
        assert state[1]["mode"] == OperatingMode.POSITION and state[1]["profile_velocity"] == 200
        target = np.array([0.3, -0.2, 0.25, 0.0, 0.1, -0.3, 0.8])
        arm.write(target)
        # shadows get the same goal as their primaries
        state = emulator.state("left_follower")
        assert state[2]["goal_position"] == state[3]["goal_position"]
        assert state[4]["goal_position"] == state[5]["goal_position"]
        reached = wait_until(lambda: np.allclose(arm.read().positions, target, atol=0.02))
        assert reached, arm.read().positions
    finally:
        assert arm.release()
    assert not any(torques(emulator, "left_follower").values())


def test_leader_gripper_normalized(emulator):
    arm = make_arm(emulator, LEADER)
    arm.connect()
    try:
        assert not any(torques(emulator, "left_leader").values())  # leaders stay limp
        emulator.set_position("left_leader", 9, GRIPPER_CLOSED)
        assert arm.read().positions[6] == pytest.approx(0.0, abs=1e-6)
        emulator.set_position("left_leader", 9, GRIPPER_OPEN)
        assert arm.read().positions[6] == pytest.approx(1.0, abs=1e-6)
        emulator.set_position("left_leader", 9, (GRIPPER_OPEN + 3 * GRIPPER_CLOSED) / 4)
        assert arm.read().positions[6] == pytest.approx(0.25, abs=1e-3)
        emulator.set_position("left_leader", 1, CENTER + 1024)
        assert arm.read().positions[0] == pytest.approx(math.pi / 2, abs=1e-3)
    finally:
        arm.release()


def test_calibration_procedure_and_wrap_around(emulator, tmp_path):
    """Zero near the 4095|0 seam of a position-mode servo: the sweep crosses it and readings stay continuous."""
    bus = "left_leader"
    emulator.set_position(bus, 1, 4090)  # waist zero right at the seam
    arm = make_arm(emulator, LEADER, calibration=None)
    cal = Calibrator(arm)
    cal.start()
    cal.capture_zero()
    for waist in (3990, 4095, 4200, 4300):  # 4200 and 4300 read back as 104 and 204 in position mode
        emulator.set_position(bus, 1, waist)
        cal.sample()
    emulator.set_position(bus, 1, 4090)
    emulator.set_position(bus, 9, 2600)
    cal.sample()
    emulator.set_position(bus, 9, 1500)
    cal.capture_gripper_closed()
    for joint_id in (2, 4, 6, 7, 8):  # every other joint moves a bit
        emulator.set_position(bus, joint_id, CENTER + 300)
    cal.sample()
    for joint_id in (2, 4, 6, 7, 8):
        emulator.set_position(bus, joint_id, CENTER - 300)
    cal.sample()
    calibration = cal.finish()
    waist = calibration.joints["waist"]
    assert (waist.zero, waist.min, waist.max) == (4090, 3990, 4300)
    assert (calibration.joints["gripper"].closed, calibration.joints["gripper"].open) == (1500, 2600)

    path = calibration.save(tmp_path / "left_leader.json")
    loaded = ArmCalibration.load(path)
    assert loaded.digest() == calibration.digest() and '"waist"' in path.read_text()

    arm = make_arm(emulator, LEADER, calibration=loaded)
    arm.connect()
    try:
        for joint_id in (2, 4, 6, 7, 8):
            emulator.set_position(bus, joint_id, CENTER)
        emulator.set_position(bus, 1, 4200)  # reads 104 on the wire
        assert arm.read().positions[0] == pytest.approx(110 * 2 * math.pi / 4096)
    finally:
        arm.release()


def test_extended_position_overflow_and_lost_turns(emulator):
    joints = [dataclasses.replace(j, mode=OperatingMode.EXTENDED_POSITION) if j.name == "waist" else j
              for j in FOLLOWER.joints]
    arm = make_arm(emulator, dataclasses.replace(FOLLOWER, joints=joints))
    arm.connect()
    try:
        arm.set_torque(False)
        for physical in (CENTER + 100 + 4096 * 3, CENTER + 100 + 2**32, CENTER + 100 - 4096 * 7):
            emulator.set_position("left_follower", 1, physical)
            assert arm.read().positions[0] == pytest.approx(100 * 2 * math.pi / 4096)
        # the goal is expressed in the servo's own (multi-turn) frame: no whole-turn jump
        arm.write(np.zeros(7))
        goal = emulator.state("left_follower")[1]["goal_position"]
        assert goal == CENTER - 4096 * 7
    finally:
        arm.release()


def test_reading_out_of_range_stops_and_holds(emulator):
    arm = make_arm(emulator, on_fault="hold")
    arm.connect()
    try:
        arm.read()
        emulator.set_position("left_follower", 7, CENTER + 1500)  # wrist angle shoved past its range
        with pytest.raises(ServoRangeError) as err:
            arm.read()
        message = str(err.value)
        assert "left_follower" in message and emulator.port("left_follower") in message
        assert "servo ID 7 (wrist_angle)" in message and "outside calibrated range" in message
        state = emulator.state("left_follower")
        assert all(s["torque"] for s in state.values())  # hold: torque stays on at the last positions
        with pytest.raises(ArmStopped):
            arm.write(np.zeros(7))
    finally:
        arm.release()
    assert not any(torques(emulator, "left_follower").values())


def test_silent_servo_stops_arm_with_torque_off(emulator):
    arm = make_arm(emulator, on_fault="torque_off")
    arm.connect()
    try:
        emulator.inject("left_follower", "no_reply", ids=[5])  # hears, never answers
        with pytest.raises(ServoSilent) as err:
            arm.read(deadline=time.monotonic() + 0.2)
        assert "servo ID 5 (elbow)" in str(err.value) and "no status packet" in str(err.value)
        assert not any(torques(emulator, "left_follower").values())
    finally:
        arm.release()


def test_hardware_error_names_fault(emulator):
    arm = make_arm(emulator, on_fault="hold")
    arm.connect()
    try:
        emulator.inject("left_follower", "hardware_error", ids=[4], bits=0x04)
        with pytest.raises(ServoHardwareError, match=r"servo ID 4 \(elbow\): hardware error: overheating"):
            arm.read()
        state = emulator.state("left_follower")
        assert not state[4]["torque"]  # the servo shut itself down
        assert state[1]["torque"] and state[1]["goal_position"] == state[1]["present_position"]
    finally:
        arm.release()


def test_missing_servo_at_connect_and_wrong_model(emulator):
    emulator.inject("left_follower", "missing", ids=[3])
    with pytest.raises(ServoSilent, match=r"servo ID 3 \(shoulder\)"):
        make_arm(emulator).connect()
    emulator.clear_faults("left_follower")
    joints = [dataclasses.replace(j, model="XM430-W350") if j.name == "waist" else j for j in FOLLOWER.joints]
    with pytest.raises(ServoModelMismatch, match="servo ID 1"):
        make_arm(emulator, dataclasses.replace(FOLLOWER, joints=joints)).connect()
    assert not any(torques(emulator, "left_follower").values())


def test_calibration_mismatch_is_refused(emulator):
    calib = emulated_calibration(FOLLOWER)
    calib.joints["elbow"].ids = [4]
    with pytest.raises(CalibrationError, match="recalibrate"):
        make_arm(emulator, calibration=calib).connect()
