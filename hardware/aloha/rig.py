"""What an ALOHA robot and its leader arms share: configuration, arm specs, calibrations, camera factory, the
mobile base (Mobile ALOHA) and, for the emulated robot, the servo and base emulators (stopped when the last user
lets go).
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from assets_store import StoreLayout
from hardware.aloha import emulated as emu
from hardware.aloha.config import AlohaConfig, CameraConfig, default_config_path
from hardware.base.config import BaseConfig
from hardware.base.emulator import TracerEmulator, sway_push
from hardware.base.tracer import BaseFault, TracerBase
from hardware.base.wheels import WheelEncoders
from hardware.cameras import Camera, PlaybackSource, RealSenseSource, SoftwareSource, SyntheticFeeder
from hardware.dynamixel.arm import Arm, ArmSpec
from hardware.dynamixel.calibration_data import ArmCalibration
from hardware.dynamixel.emulator import ServoEmulator

log = logging.getLogger(__name__)


@dataclass
class CameraHandle:
    camera: Camera
    feeder: SyntheticFeeder | None = None  # emulated cameras: the thread producing frames

    def start(self) -> None:
        if self.feeder is not None:
            self.camera.start(first_frame_timeout_s=None)
            self.feeder.start()
            self.camera.wait_for_frame(5.0)
        else:
            self.camera.start()

    def stop(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()
        self.camera.stop()


@dataclass
class AlohaRig:
    config: AlohaConfig
    specs: dict[str, ArmSpec]
    calibration_dir: Path
    calibrations: dict[str, ArmCalibration] = field(default_factory=dict)  # preloaded (emulated)
    camera_factory: Callable[[CameraConfig], CameraHandle] | None = None
    emulator: ServoEmulator | None = None
    base_emulator: TracerEmulator | None = None
    base: TracerBase | None = None  # Mobile ALOHA; connected by the robot (it commands and watches it)
    wheels: WheelEncoders | None = None  # the base velocity source when `velocity_source: wheel_encoders`
    _users: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    def calibration_path(self, arm: str) -> Path:
        return self.config.arm(arm).calibration_path(self.calibration_dir)

    def calibration(self, arm: str) -> ArmCalibration | None:
        if arm in self.calibrations:
            return self.calibrations[arm]
        path = self.calibration_path(arm)
        return ArmCalibration.load(path) if path.exists() else None

    def make_arm(self, name: str, *, calibrated: bool = True) -> Arm:
        return Arm(self.specs[name], self.calibration(name) if calibrated else None)

    def make_camera(self, cfg: CameraConfig) -> CameraHandle:
        if self.camera_factory is not None:
            return self.camera_factory(cfg)
        if cfg.playback is not None:
            return CameraHandle(Camera(cfg.name, PlaybackSource(cfg.playback, cfg.width, cfg.height, cfg.fps, repeat=True)))
        return CameraHandle(Camera(cfg.name, RealSenseSource(cfg.serial, cfg.width, cfg.height, cfg.fps)))

    def press_grippers(self) -> None:
        """Emulated only: the stand-in operator squeezes both leader grippers (the start gesture)."""
        if self.emulator is not None:
            emu.press_grippers(self.emulator, [self.specs[a.name] for a in self.config.leaders()],
                               duration=self.config.start_gesture.hold_s + 0.3)

    def base_velocity(self) -> np.ndarray:
        """The measured base velocity (m/s, rad/s) from the configured source: what teleoperation records."""
        if self.wheels is not None:
            return self.wheels.velocity()
        if self.base is None or not self.base.connected:
            raise BaseFault("the mobile base is not connected (connect the robot before reading its velocity)")
        return self.base.velocity()

    # ------------------------------------------------------------------ shared lifetime
    def acquire(self) -> None:
        with self._lock:
            if self.emulator is not None and not self.emulator.running:
                self.emulator.start()
                self._point_at_emulator()
            if self.base_emulator is not None and not self.base_emulator.running:
                self.base_emulator.start()
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0 and self.emulator is not None:
                self.emulator.stop()
            if self._users == 0 and self.base_emulator is not None:
                self.base_emulator.stop()

    def _point_at_emulator(self) -> None:
        for name, spec in self.specs.items():
            self.specs[name] = emu.emulated_spec(spec, self.emulator.port(name))
            if spec.role == "leader":
                emu.sway_leader(self.emulator, spec)
        if self.wheels is not None:  # emulated wheel encoders: a bus of their own on the servo emulator
            cfg = emu.emulated_wheels(self.wheels.cfg, self.emulator.port(emu.WHEELS_BUS))
            self.wheels = WheelEncoders(cfg)
            emu.push_wheels(self.emulator, cfg)


def connect_arms(rig: "AlohaRig", names: list[str], into: list[Arm]) -> None:
    """Connect the named arms, appending each to `into` as soon as it is live, so that a failure half way leaves
    exactly the connected ones in `into` for `release_arms`."""
    for name in names:
        arm = rig.make_arm(name)
        arm.connect()
        into.append(arm)


def release_arms(arms: list[Arm]) -> None:
    """Torque off every arm; a failure on one is logged and never stops the release of the others."""
    for arm in arms:
        try:
            if not arm.release():
                log.warning("arm %s: torque off could not be verified on every servo", arm.name)
        except Exception as exc:
            log.error("arm %s: release failed: %s", arm.name, exc)


def load_config(path: Path | None, default: str = "aloha") -> AlohaConfig:
    return AlohaConfig.load(path or default_config_path(default))


def _base_parts(config: AlohaConfig) -> tuple[TracerBase | None, WheelEncoders | None]:
    if config.base is None:
        return None, None
    wheels = WheelEncoders(config.base.wheel_encoders) if config.base.velocity_source == "wheel_encoders" else None
    return TracerBase(config.base, config.fps), wheels


def real_rig(config_path: Path | None, layout: StoreLayout | None, default: str = "aloha") -> AlohaRig:
    config = load_config(config_path, default)
    calibration_dir = config.calibration_dir or (layout or StoreLayout.at()).calibration_dir
    base, wheels = _base_parts(config)
    return AlohaRig(config, {a.name: a.spec() for a in config.arms}, calibration_dir, base=base, wheels=wheels)


_emulated_channels = itertools.count()


def _emulated_base(base: BaseConfig) -> BaseConfig:
    """The configured base on an in-process virtual CAN bus of its own."""
    return base.model_copy(update={"interface": "virtual", "channel": f"emulated-tracer-{next(_emulated_channels)}"})


def emulated_rig(config_path: Path | None, layout: StoreLayout | None,
                 resolution: tuple[int, int] | None = None, default: str = "aloha") -> AlohaRig:
    """The configured ALOHA with every servo emulated on a pty and every camera a software sensor.

    The emulator process starts when the robot (or leader arms) connect; calibrations are the emulated arms'
    known ranges unless a calibration file exists under `<store>/calibration/emulated/`.
    """
    config = load_config(config_path, default)
    if config.base is not None:
        config = config.model_copy(update={"base": _emulated_base(config.base)})
    if resolution is not None:
        h, w = resolution
        config = config.model_copy(update={"cameras": [c.model_copy(update={"height": h, "width": w, "playback": None})
                                                      for c in config.cameras]})
    calibration_dir = (layout or StoreLayout.at()).emulated_calibration_dir
    specs = {a.name: a.spec() for a in config.arms}
    calibrations = {}
    for name, spec in specs.items():
        path = config.arm(name).calibration_path(calibration_dir)
        calibrations[name] = ArmCalibration.load(path) if path.exists() else emu.emulated_calibration(spec)

    def software_camera(cfg: CameraConfig) -> CameraHandle:
        source = SoftwareSource(cfg.width, cfg.height, cfg.fps, name=cfg.name)
        seed = sum(map(ord, cfg.name))
        return CameraHandle(Camera(cfg.name, source), SyntheticFeeder(source, cfg.fps, seed=seed))

    buses = {name: emu.servo_setups(spec) for name, spec in specs.items()}
    base, wheels = _base_parts(config)
    if wheels is not None:
        buses[emu.WHEELS_BUS] = emu.wheel_setups(config.base.wheel_encoders)
    emulator = ServoEmulator(buses)
    # the stand-in operator pushes the base around while it is not commanded (teleoperation)
    base_emulator = None if config.base is None else TracerEmulator(config.base.channel, ids=config.base.frames,
                                                                    push=sway_push())
    return AlohaRig(config, specs, calibration_dir, calibrations, software_camera, emulator,
                    base_emulator=base_emulator, base=base, wheels=wheels)
