"""Interop with the original ALOHA / ACT HDF5 episode layout.

    /observations/qpos (T, J)   /observations/qvel (T, J)   /observations/effort (T, J)   (float)
    /observations/images/<cam> (T, H, W, 3) uint8, or with root attr compress=True: (T, L) padded JPEG bytes
                               plus /compress_len (num_cams, T); those were encoded by OpenCV (BGR order)
    /action (T, A)             root attr `sim` (bool)

HDF5 files carry no timestamps: imported episodes get t / fps. Import never leaves a half episode (the writer
commits atomically); export writes a temporary file and renames it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from assets_store import schema as S
from assets_store.codec import decode_jpeg
from assets_store.episode_reader import EpisodeReader
from assets_store.episode_writer import EpisodeWriter
from assets_store.errors import EpisodeError, StoreError
from assets_store.layout import StoreLayout

ALOHA_ARM_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
ALOHA_JOINT_NAMES = [f"{side}_{j}" for side in ("left", "right") for j in ALOHA_ARM_JOINTS]


def default_joint_names(n: int) -> list[str]:
    return list(ALOHA_JOINT_NAMES) if n == 14 else [f"joint_{i}" for i in range(n)]


def default_action_names(n_action: int, joint_names: list[str]) -> list[str]:
    if n_action == len(joint_names):
        return list(joint_names)
    if n_action == len(joint_names) + 2:  # Mobile ALOHA: base linear and angular velocity
        return list(joint_names) + ["base_linear_vel", "base_angular_vel"]
    return [f"action_{i}" for i in range(n_action)]


@dataclass
class ImportReport:
    imported: list[tuple[Path, Path]] = field(default_factory=list)  # (source file, episode)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (source file, reason)


class _H5Episode:
    """A validated view of one ALOHA HDF5 file (arrays read lazily for images)."""

    def __init__(self, f, path: Path):
        self.f, self.path = f, path

        def need(name: str):
            if name not in f:
                raise EpisodeError(path, name, "expected this dataset in the ALOHA HDF5 layout; it is missing")
            return f[name]

        self.qpos = self._floats(need("/observations/qpos"), "/observations/qpos")
        self.action = self._floats(need("/action"), "/action")
        T = len(self.qpos)
        self.qvel = self._floats(f["/observations/qvel"], "/observations/qvel") if "/observations/qvel" in f else None
        self.effort = (
            self._floats(f["/observations/effort"], "/observations/effort") if "/observations/effort" in f else None
        )
        for name, arr in (("/action", self.action), ("/observations/qvel", self.qvel), ("/observations/effort", self.effort)):
            if arr is not None and len(arr) != T:
                raise EpisodeError(path, name, f"expected {T} steps (as /observations/qpos), got {len(arr)}")
        for name, arr in (("/observations/qvel", self.qvel), ("/observations/effort", self.effort)):
            if arr is not None and arr.shape[1] != self.qpos.shape[1]:
                raise EpisodeError(path, name, f"expected {self.qpos.shape[1]} columns (as qpos), got {arr.shape[1]}")
        self.compressed = bool(f.attrs.get("compress", False))
        images = f.get("/observations/images")
        self.cameras = sorted(images.keys()) if images is not None else []
        self.sim = bool(f.attrs.get("sim", False))
        self.compress_len = np.asarray(f["/compress_len"]) if self.compressed and "/compress_len" in f else None
        self.shapes = {}
        for i, cam in enumerate(self.cameras):
            ds = images[cam]
            if len(ds) != T:
                raise EpisodeError(path, f"/observations/images/{cam}", f"expected {T} frames, got {len(ds)}")
            if self.compressed:
                self.shapes[cam] = self.frame(cam, 0).shape
            elif ds.dtype != np.uint8 or ds.ndim != 4 or ds.shape[-1] != 3:
                raise EpisodeError(
                    path, f"/observations/images/{cam}", f"expected (T, H, W, 3) uint8, got {ds.shape} {ds.dtype}"
                )
            else:
                self.shapes[cam] = tuple(ds.shape[1:])

    def _floats(self, ds, name: str) -> np.ndarray:
        if ds.ndim != 2 or ds.dtype.kind not in "fiu":
            raise EpisodeError(self.path, name, f"expected a (T, D) numeric array, got {ds.shape} {ds.dtype}")
        arr = np.asarray(ds, dtype=np.float32)
        if len(arr) == 0:
            raise EpisodeError(self.path, name, "expected at least one step, got 0")
        if not np.all(np.isfinite(arr)):
            raise EpisodeError(self.path, name, "expected finite values, found NaN/Inf")
        return arr

    def frame(self, cam: str, t: int) -> np.ndarray:
        ds = self.f["/observations/images"][cam]
        if not self.compressed:
            return ds[t]
        buf = np.asarray(ds[t], dtype=np.uint8)
        if self.compress_len is not None:
            buf = buf[: int(self.compress_len[self.cameras.index(cam), t])]
        try:
            return np.ascontiguousarray(decode_jpeg(buf)[..., ::-1])  # OpenCV wrote BGR
        except Exception as exc:
            raise EpisodeError(self.path, f"/observations/images/{cam}", f"step {t}: undecodable JPEG ({exc})") from None


def import_hdf5_file(
    layout: StoreLayout,
    session: str,
    source: Path,
    *,
    fps: float = 50.0,
    robot: str | None = None,
    jpeg_quality: int = 90,
) -> Path:
    """Convert one file; raises StoreError/EpisodeError naming the file on any problem (nothing is committed)."""
    import h5py

    source = Path(source)
    try:
        f = h5py.File(source, "r")
    except Exception as exc:
        raise StoreError(f"{source}: cannot open as HDF5 ({type(exc).__name__}: {exc})") from None
    with f:
        try:
            ep = _H5Episode(f, source)
        except EpisodeError:
            raise
        except Exception as exc:  # truncated datasets and other h5py read errors
            raise StoreError(f"{source}: unreadable HDF5 content ({type(exc).__name__}: {exc})") from None
        joints = default_joint_names(ep.qpos.shape[1])
        info = S.EpisodeInfo(
            robot=robot or ("sim-aloha" if ep.sim else "aloha"),
            joint_names=joints,
            action_names=default_action_names(ep.action.shape[1], joints),
            fps=fps,
            cameras=[S.CameraSpec(cam, *ep.shapes[cam][:2]) for cam in ep.cameras],
            session=session,
            extra={"imported_from": str(source), "sim": ep.sim},
        )
        with EpisodeWriter(layout, session, info, jpeg_quality=jpeg_quality) as writer:
            try:
                for t in range(len(ep.qpos)):
                    writer.add_step(
                        ep.qpos[t],
                        ep.action[t],
                        t / fps,
                        qvel=None if ep.qvel is None else ep.qvel[t],
                        effort=None if ep.effort is None else ep.effort[t],
                        images={cam: ep.frame(cam, t) for cam in ep.cameras},
                    )
            except (EpisodeError, StoreError):
                raise
            except Exception as exc:
                raise StoreError(f"{source}: unreadable HDF5 content ({type(exc).__name__}: {exc})") from None
            return writer.close()


def import_hdf5(
    layout: StoreLayout,
    session: str,
    sources: list[Path],
    *,
    fps: float = 50.0,
    robot: str | None = None,
    jpeg_quality: int = 90,
    on_file_done: Callable[[Path], None] | None = None,
) -> ImportReport:
    """Import each file; a bad file is reported by name and skipped, never half-imported."""
    report = ImportReport()
    for source in sources:
        try:
            report.imported.append(
                (Path(source), import_hdf5_file(layout, session, source, fps=fps, robot=robot, jpeg_quality=jpeg_quality))
            )
        except (StoreError, OSError) as exc:
            report.failed.append((Path(source), str(exc)))
        if on_file_done:
            on_file_done(Path(source))
    return report


def export_hdf5(episode: Path, out: Path) -> Path:
    """Write an episode in the original ALOHA layout (uncompressed images by default, as ACT's loader expects)."""
    import h5py

    reader = EpisodeReader(episode)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["sim"] = bool(reader.attrs.get("extra", {}).get("sim", reader.info.robot.startswith("sim")))
            f.attrs["compress"] = False
            obs = f.create_group("observations")
            obs.create_dataset("qpos", data=reader.qpos)
            obs.create_dataset("qvel", data=reader.qvel if reader.qvel is not None else np.zeros_like(reader.qpos))
            if reader.effort is not None:
                obs.create_dataset("effort", data=reader.effort)
            f.create_dataset("action", data=reader.action)
            images = obs.create_group("images")
            for cam in reader.camera_names:
                spec = reader.info.camera(cam)
                ds = images.create_dataset(
                    cam, shape=(len(reader), spec.height, spec.width, 3), dtype="uint8",
                    chunks=(1, spec.height, spec.width, 3),
                )
                for t in range(len(reader)):
                    ds[t] = reader.frame(cam, t)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
