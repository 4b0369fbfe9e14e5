"""The emulated ALOHA: the same arm code over pty servo emulators, a stand-in human on the leader arms.

Emulated servos start mid-range; leader joints sway slowly (torque off, "moved by hand"), grippers in phase so
the press-both-grippers gesture can also be played on demand (`press_grippers`). Mobile ALOHA's wheel encoders
(`velocity_source: wheel_encoders`) are two more servos on a bus of their own, rolled by the same stand-in human
(`push_wheels`); the Tracer itself is emulated on a virtual CAN bus (hardware/base/emulator.py).
"""

from __future__ import annotations

from hardware.base.config import WheelEncoderConfig
from hardware.dynamixel.arm import ArmSpec
from hardware.dynamixel.calibration_data import ArmCalibration, JointCalibration
from hardware.dynamixel.emulator import ServoEmulator, ServoSetup

CENTER = 2048
JOINT_HALF_RANGE = 1000
GRIPPER_CLOSED, GRIPPER_OPEN = 1600, 2400
LEADER_AMPLITUDE = 350
# A pty hop goes through kernel workqueues: on a loaded machine replies can take tens of ms (a U2D2 at 1 ms
# latency answers in ~2 ms), so emulated buses wait longer before calling a servo silent.
EMULATED_TIMEOUT_MARGIN_MS = 50.0
EMULATED_RETRIES = 3


def servo_setups(spec: ArmSpec) -> list[ServoSetup]:
    setups = []
    for joint in spec.joints:
        start = (GRIPPER_CLOSED + GRIPPER_OPEN) / 2 if joint.gripper else CENTER
        primary = joint.ids[0]
        for servo_id in joint.ids:
            setups.append(ServoSetup(servo_id, joint.model, start, None if servo_id == primary else primary))
    return setups


def emulated_calibration(spec: ArmSpec) -> ArmCalibration:
    """The calibration an operator would record on an emulated arm (known ranges, no interaction)."""
    joints = {}
    for joint in spec.joints:
        if joint.gripper:
            joints[joint.name] = JointCalibration(list(joint.ids), GRIPPER_CLOSED, GRIPPER_CLOSED, GRIPPER_OPEN,
                                                  closed=GRIPPER_CLOSED, open=GRIPPER_OPEN)
        else:
            joints[joint.name] = JointCalibration(list(joint.ids), CENTER, CENTER - JOINT_HALF_RANGE,
                                                  CENTER + JOINT_HALF_RANGE)
    return ArmCalibration(arm=spec.name, joints=joints)


def start_emulator(specs: list[ArmSpec], *, leader_motion: bool = True) -> ServoEmulator:
    """One emulated bus per arm (named after the arm); leader arms get a scripted human."""
    emulator = ServoEmulator({spec.name: servo_setups(spec) for spec in specs}).start()
    try:
        if leader_motion:
            for spec in specs:
                if spec.role == "leader":
                    sway_leader(emulator, spec)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def sway_leader(emulator: ServoEmulator, spec: ArmSpec, period: float = 4.0) -> None:
    for k, joint in enumerate(spec.joints):
        if joint.gripper:
            mid = (GRIPPER_CLOSED + GRIPPER_OPEN) / 2
            emulator.set_motion(spec.name, joint.ids[0], mid, (GRIPPER_OPEN - GRIPPER_CLOSED) / 2 - 20, period * 0.75)
        else:
            emulator.set_motion(spec.name, joint.ids[0], CENTER, LEADER_AMPLITUDE, period + 0.5 * k, phase=0.7 * k)


def press_grippers(emulator: ServoEmulator, leaders: list[ArmSpec], duration: float = 0.4) -> None:
    """The stand-in operator squeezes both leader grippers shut for `duration` seconds."""
    for spec in leaders:
        for joint in spec.joints:
            if joint.gripper:
                emulator.press(spec.name, joint.ids[0], GRIPPER_CLOSED, duration)


def emulated_spec(spec: ArmSpec, port: str) -> ArmSpec:
    """An arm spec pointed at an emulator pty, with the longer reply timeout of a pty."""
    from dataclasses import replace

    # Every retry granted: a pty stalled by a loaded machine is not a silent servo (a dry run is not real time).
    return replace(spec, port=port, timeout_margin_ms=max(spec.timeout_margin_ms, EMULATED_TIMEOUT_MARGIN_MS),
                   retries=max(spec.retries, EMULATED_RETRIES), min_retries=max(spec.retries, EMULATED_RETRIES))


WHEELS_BUS = "wheels"
WHEEL_AMPLITUDE, WHEEL_PERIOD_S = 2000, 3.0  # ticks, s: up to ~6 rad/s per wheel, ~0.3 m/s of base speed


def wheel_setups(cfg: WheelEncoderConfig) -> list[ServoSetup]:
    return [ServoSetup(cfg.left_id, position=CENTER), ServoSetup(cfg.right_id, position=CENTER)]


def push_wheels(emulator: ServoEmulator, cfg: WheelEncoderConfig) -> None:
    """The stand-in operator pushes the base: both wheels roll back and forth (the right servo mirrored), the
    left a little faster, so the base also turns."""
    emulator.set_motion(WHEELS_BUS, cfg.left_id, CENTER, WHEEL_AMPLITUDE * 1.3, WHEEL_PERIOD_S)
    sign = -1 if cfg.right_negated else 1
    emulator.set_motion(WHEELS_BUS, cfg.right_id, CENTER, sign * WHEEL_AMPLITUDE, WHEEL_PERIOD_S)


def emulated_wheels(cfg: WheelEncoderConfig, port: str) -> WheelEncoderConfig:
    return cfg.model_copy(update={"port": port, "reply_timeout_ms": max(cfg.reply_timeout_ms,
                                                                         EMULATED_TIMEOUT_MARGIN_MS)})
