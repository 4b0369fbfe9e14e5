"""The simulated bimanual ViperX as a `Robot`: 14-D joint targets in, 14-D joints + camera frames out, 50 Hz.

On a mobile task the action is 16-D, as on Mobile ALOHA: the 14 joint targets, then the base's linear (m/s) and
angular (rad/s) velocity command; the observation stays the 14 arm joints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from assets_store.schema import CameraSpec
from hardware.aloha.config import BASE_ACTIONS
from hardware.interfaces import Observation, Robot
from hardware.sim import constants as C
from hardware.sim.mobile_base import BasePose
from hardware.sim.physics import SimPhysics
from hardware.sim.render import CameraRenderer, RenderSettings
from hardware.sim.tasks import SimTask, get_task
from hardware.sim.view import DEFAULT_VIEW, apply_view, get_view


@dataclass
class SimConfig:
    task: str = "transfer_cube"
    # None = the task's cameras (static: `top`; mobile: Mobile ALOHA's three); ["all"] = every camera in the scene
    cameras: list[str] | None = None
    resolution: tuple[int, int] = (480, 640)  # (H, W)
    shadows: bool = False
    multisample: bool = False
    view: str = DEFAULT_VIEW  # a named camera pose and lighting (hardware.sim.view): evaluation variants


class SimRobot(Robot):
    """Each `act()` advances physics by one 20 ms control period; `observe()` renders the cameras."""

    simulated = True
    fps = 1.0 / C.CONTROL_DT

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.task: SimTask = get_task(self.config.task)
        self.name = self.task.robot_name
        self._physics: SimPhysics | None = None
        self._renderer: CameraRenderer | None = None
        self.view = get_view(self.config.view)  # an unknown name is refused here, not at the first render
        self._camera_names = self._resolve_cameras(self.config.cameras)
        self.seed: int | None = None
        self.reward = 0
        self.episode_max_reward = 0
        self.steps = 0

    # ---------------------------------------------------------------- description
    @property
    def joint_names(self) -> list[str]:
        return list(C.JOINT_NAMES)

    @property
    def action_names(self) -> list[str]:
        return list(C.JOINT_NAMES) + (list(BASE_ACTIONS) if self.task.mobile else [])

    @property
    def cameras(self) -> list[CameraSpec]:
        h, w = self.config.resolution
        return [CameraSpec(name, h, w, serial=f"sim:{name}") for name in self._camera_names]

    def scene_cameras(self) -> list[str]:
        m = self.physics.model
        return [m.camera(i).name for i in range(m.ncam)]

    @property
    def physics(self) -> SimPhysics:
        if self._physics is None:
            self._physics = SimPhysics(self.task.joint_scene, weld_torque_scale=None)
            apply_view(self._physics.model, self.view)  # rendering only: physics is the scene's
        return self._physics

    def _resolve_cameras(self, cameras: list[str] | None) -> list[str]:
        if cameras is None:
            return list(self.task.cameras)
        if list(cameras) == ["all"]:
            return self.scene_cameras()
        # Refuse unknown names now, as AlohaRobot does, rather than at the first render.
        unknown = [c for c in cameras if c not in self.scene_cameras()] if cameras else []
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; this scene has {self.scene_cameras()}")
        return list(cameras)

    # ---------------------------------------------------------------- Robot
    def connect(self) -> None:
        if self._renderer is None:
            h, w = self.config.resolution
            settings = RenderSettings(h, w, shadows=self.config.shadows, multisample=self.config.multisample)
            self._renderer = CameraRenderer(self.physics.model, self._camera_names, settings)
        if self.seed is None and self.steps == 0:
            self.physics.reset(self.task.object_poses(0), self.task.base_pose(0))

    def reset(self, seed: int | None = None) -> Observation:
        self.connect()
        self.seed = seed
        self.physics.reset(self.task.object_poses(seed), self.task.base_pose(seed))
        self.steps = 0
        self.reward = self.task.reward(self.physics.contacts())
        self.episode_max_reward = self.reward
        return self.observe()

    def observe(self) -> Observation:
        if self._renderer is None:
            self.connect()
        p = self.physics
        images = self._renderer.render(p.data)
        frame_no = float(self._renderer.frames_rendered)
        return Observation(
            qpos=p.qpos14(),
            qvel=p.qvel14(),
            effort=p.effort14(),
            images=images,
            frame_info={cam: (frame_no, p.time) for cam in images},
            reward=float(self.reward),
        )

    def act(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float64)
        dims = len(self.action_names)
        if action.shape != (dims,):
            what = "14 joint targets + base linear/angular velocity" if self.task.mobile else "joint target"
            raise ValueError(f"{self.name}: expected a {dims}-D {what}, got shape {action.shape}")
        p = self.physics
        p.set_joint_targets(action[:14])
        if self.task.mobile:
            p.set_base_command(action[14], action[15])
        p.step()
        self.steps += 1
        self.reward = self.task.reward(p.contacts())
        self.episode_max_reward = max(self.episode_max_reward, self.reward)

    def disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def max_reward(self) -> float | None:
        return float(self.task.max_reward)

    @property
    def success(self) -> bool:
        return self.episode_max_reward >= self.task.max_reward

    def object_poses(self) -> np.ndarray:
        """Free-body poses (xyz + wxyz per object): what a scripted demonstrator plans against."""
        return self.physics.object_poses()

    def base_pose(self) -> BasePose:
        """Where the mobile base stands, relative to the working pose at the table ((0, 0, 0) for a static task)."""
        return self.physics.base_pose()

    def _base_attrs(self) -> dict[str, Any]:
        if not self.task.mobile:
            return {}
        return {"initial_base_pose": self.task.base_pose(self.seed).as_array().tolist()}  # x, y, heading

    def episode_attrs(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "sim": {
                "seed": self.seed,
                "scene": self.task.joint_scene,
                "mujoco_version": mujoco.__version__,
                "initial_object_poses": self.task.object_poses(self.seed).tolist(),
                "max_reward": self.episode_max_reward,
                "success": self.success,
                "resolution": list(self.config.resolution),
                **({} if self.view.is_default else {"view": self.view.name}),
                **self._base_attrs(),
            },
        }


def make_sim_robot(
    task: str = "transfer_cube",
    cameras: list[str] | None = None,
    resolution: tuple[int, int] | None = None,
    **render_options: Any,
) -> SimRobot:
    """A simulated ALOHA for `task` ("transfer_cube" | "insertion" | "mobile_transfer_cube"); cameras default the
    task's, resolution (H, W) default SimConfig's; `view="shifted"` renders the evaluation variant (SimConfig)."""
    config = SimConfig(task=task, **render_options)
    if cameras is not None:  # [] = no cameras (replay, fast evaluation)
        config.cameras = list(cameras)
    if resolution:
        config.resolution = tuple(resolution)
    return SimRobot(config)
