"""Offscreen camera rendering with the cheapest settings that keep images useful (no shadows, no multisampling)."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from hardware.sim.gl import preload_llvm_users


@dataclass(frozen=True)
class RenderSettings:
    height: int = 480
    width: int = 640
    shadows: bool = False  # ~8x the cost per frame in software GL
    multisample: bool = False
    reflections: bool = False


class CameraRenderer:
    """Renders named cameras of one model into fresh (H, W, 3) uint8 arrays."""

    def __init__(self, model: mujoco.MjModel, cameras: list[str], settings: RenderSettings):
        known = [model.camera(i).name for i in range(model.ncam)]
        missing = [c for c in cameras if c not in known]
        if missing:
            raise ValueError(f"unknown camera(s) {missing}; this scene has {known}")
        self.cameras = list(cameras)
        self.settings = settings
        # The offscreen buffer must be at least the image size, and multisampling is fixed when it is created.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, settings.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, settings.height)
        model.vis.quality.offsamples = 4 if settings.multisample else 0
        if cameras:
            preload_llvm_users()
        self._renderer = mujoco.Renderer(model, settings.height, settings.width) if cameras else None
        if self._renderer is not None:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(settings.shadows)
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(settings.reflections)
        self.frames_rendered = 0

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        out = {}
        for cam in self.cameras:
            self._renderer.update_scene(data, camera=cam)
            out[cam] = self._renderer.render()
        self.frames_rendered += 1
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
