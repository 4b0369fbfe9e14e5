"""Helpers of the co-training tests: tiny real-simulator sessions (static 14-D and mobile 16-D, 20 steps at 32x32)
and a mixed dataset of them."""

from __future__ import annotations

from pathlib import Path

from assets_store import StoreLayout
from assets_store.cotraining import GroupSpec
from assets_store.dataset import build_cotraining_dataset, read_episode_entry, write_dataset

STATIC, MOBILE = "sim-transfer-cube", "sim-mobile-transfer-cube"
# The static scene has no `cam_high`; both scenes have the room's `top` camera. `angle` is the static one's only.
STATIC_CAMERAS, MOBILE_CAMERAS = ["top", "angle"], ["top", "cam_high"]


def record_sim(layout: StoreLayout, robot_name: str, session: str, cameras: list[str], episodes: int = 2,
               steps: int = 20, seed: int = 0, resolution: tuple[int, int] = (32, 32)) -> list[Path]:
    """A finalized session of scripted episodes recorded from the real simulator, as `aloha record` does."""
    from hardware.recorder import RecordConfig, record_session
    from hardware.registry import RobotOptions, make_robot, make_teleoperator

    robot = make_robot(robot_name, RobotOptions(cameras=cameras, resolution=resolution, layout=layout))
    config = RecordConfig(session=session, episodes=episodes, episode_len=steps, seed=seed, realtime=False)
    return [e.path for e in record_session(robot, make_teleoperator(robot_name, robot), layout, config).episodes]


def record_both(layout: StoreLayout, episodes: int = 2) -> None:
    record_sim(layout, STATIC, "static", STATIC_CAMERAS, episodes)
    record_sim(layout, MOBILE, "mobile", MOBILE_CAMERAS, episodes, seed=100)


def entries(layout: StoreLayout, *sessions: str):
    return [read_episode_entry(s, p) for s in sessions for p in sorted(layout.session_dir(s).glob("episode_*.zarr"))]


def mixed_dataset(layout: StoreLayout, mobile: float = 0.5, static: float = 0.5, cameras=("top",),
                  val_fraction: float = 0.0, static_cameras: dict[str, str] | None = None) -> Path:
    """A dataset for the mobile robot: the mobile and the static session as two groups (written; its directory);
    `static_cameras` maps target cameras to the static session's."""
    groups = [GroupSpec("mobile", ["mobile"], mobile), GroupSpec("static", ["static"], static, static_cameras or {})]
    manifest, stats = build_cotraining_dataset(entries(layout, "mobile", "static"), groups, robot=MOBILE,
                                               camera_names=list(cameras), val_fraction=val_fraction)
    return write_dataset(layout, manifest, stats)
