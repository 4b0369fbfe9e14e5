"""Synthetic but camera-like episodes for tests, benchmarks and dry runs (smooth scene + moving object + sensor noise).

Pure noise would make JPEG look slow and huge, a constant image would make it look free; neither is a camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assets_store.episode_writer import EpisodeWriter
from assets_store.layout import StoreLayout
from assets_store.schema import DEFAULT_CAMERA, CameraSpec, EpisodeInfo


class CameraLikeFrames:
    """Deterministic frames: a lit table-top gradient, a moving coloured block and a little sensor noise."""

    def __init__(self, height: int, width: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        base = 90 + 60 * (yy / height) + 30 * np.sin(xx / max(width, 1) * 3.0 + seed)
        self.background = np.stack([base, base * 0.9 + 10, base * 0.8 + 20], axis=-1)
        self.noise = rng.normal(0, 3.0, size=(8, height, width, 1)).astype(np.float32)
        self.h, self.w = height, width
        self.color = rng.uniform(120, 255, size=3).astype(np.float32)

    def __call__(self, t: int) -> np.ndarray:
        img = self.background + self.noise[t % len(self.noise)]
        size = max(2, self.h // 8)
        cy = int((0.5 + 0.3 * np.sin(t / 20.0)) * (self.h - size))
        cx = int((0.5 + 0.4 * np.cos(t / 25.0)) * (self.w - size))
        img[cy : cy + size, cx : cx + size] = self.color
        return np.clip(img, 0, 255).astype(np.uint8)


def joint_trajectory(steps: int, dims: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float32)[:, None] / 50.0
    phase = rng.uniform(0, 2 * np.pi, size=dims)
    freq = rng.uniform(0.2, 1.0, size=dims)
    return (0.5 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def synthetic_info(cameras: dict[str, tuple[int, int]], joints: int = 14, fps: float = 50.0, **kw) -> EpisodeInfo:
    return EpisodeInfo(
        robot=kw.pop("robot", "synthetic"),
        joint_names=[f"joint_{i}" for i in range(joints)],
        fps=fps,
        cameras=[CameraSpec(name, h, w) for name, (h, w) in cameras.items()],
        **kw,
    )


def write_synthetic_episode(
    layout: StoreLayout,
    session: str,
    steps: int = 50,
    cameras: dict[str, tuple[int, int]] | None = None,
    joints: int = 14,
    seed: int = 0,
    **writer_kw,
) -> Path:
    cameras = {DEFAULT_CAMERA: (48, 64)} if cameras is None else cameras
    info = synthetic_info(cameras, joints)
    frames = {name: CameraLikeFrames(h, w, seed + i) for i, (name, (h, w)) in enumerate(cameras.items())}
    qpos = joint_trajectory(steps, joints, seed)
    action = np.roll(qpos, -1, axis=0)
    with EpisodeWriter(layout, session, info, **writer_kw) as w:
        for t in range(steps):
            w.add_step(
                qpos[t], action[t], t / info.fps,
                images={name: f(t) for name, f in frames.items()},
                frame_info={name: (t, t / info.fps) for name in frames},
            )
        return w.close()
