"""Interop with the original ALOHA / ACT HDF5 episode layout.

    /observations/qpos (T, J)   /observations/qvel (T, J)   /observations/effort (T, J)   (float)
    /observations/images/<cam> (T, H, W, 3) uint8, or with root attr compress=True: (T, L) padded JPEG bytes
                               plus /compress_len (num_cams, T); those were encoded by OpenCV (BGR order)
    /action (T, A)             root attr `sim` (bool)
    /base_action (T, 2)        Mobile ALOHA only: base linear (m/s) and angular (rad/s) velocity; imported as the two
                               last action columns (16-D episodes) and written back from them on export

HDF5 files carry no timestamps: imported episodes get t / fps. Import never leaves a half episode (the writer
commits atomically); export writes a temporary file and renames it, and never replaces a file unless told to.

An HDF5 file is untrusted input: import reads regular files only (a FIFO would block forever), refuses external
links, external raw storage and virtual datasets (each can make the file read data from outside itself), and
compares every claimed size with the schema's bounds before reading or decoding anything.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from assets_store import schema as S
from assets_store.codec import decode_jpeg, jpeg_header_shape
from assets_store.episode_reader import EpisodeReader
from assets_store.episode_writer import EpisodeWriter
from assets_store.errors import EpisodeError, StoreError
from assets_store.layout import StoreLayout

ALOHA_ARM_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
ALOHA_JOINT_NAMES = [f"{side}_{j}" for side in ("left", "right") for j in ALOHA_ARM_JOINTS]
BASE_ACTIONS = ["base_linear_vel", "base_angular_vel"]
# Widest joint or action vector accepted (ALOHA: 14, Mobile ALOHA: 14 + 2): a bound on what a claimed shape may cost.
MAX_VECTOR = 64


def default_joint_names(n: int) -> list[str]:
    return list(ALOHA_JOINT_NAMES) if n == 14 else [f"joint_{i}" for i in range(n)]


def default_action_names(n_action: int, joint_names: list[str]) -> list[str]:
    if n_action == len(joint_names):
        return list(joint_names)
    if n_action == len(joint_names) + 2:  # Mobile ALOHA: base linear and angular velocity
        return list(joint_names) + BASE_ACTIONS
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
        self.mobile = "/base_action" in f
        if self.mobile:  # Mobile ALOHA: the base velocities become the two last action columns
            base = self._floats(f["/base_action"], "/base_action")
            if base.shape != (T, 2):
                raise EpisodeError(path, "/base_action", f"expected ({T}, 2) base velocities (m/s, rad/s), got {base.shape}")
            if len(self.action) != T:
                raise EpisodeError(path, "/action", f"expected {T} steps (as /observations/qpos), got {len(self.action)}")
            self.action = np.concatenate([self.action, base], axis=1)
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
        self.compress_len = None
        if self.compressed and "/compress_len" in f:
            lens = f["/compress_len"]
            if lens.shape != (len(self.cameras), T) or lens.dtype.kind not in "fiu":
                raise EpisodeError(
                    path, "/compress_len", f"expected ({len(self.cameras)}, {T}) lengths, got {lens.shape} {lens.dtype}"
                )
            self.compress_len = np.asarray(lens)
        self.shapes: dict[str, tuple[int, int, int]] = {}
        for cam in self.cameras:
            name = f"/observations/images/{cam}"
            ds = images[cam]
            if len(ds) != T:
                raise EpisodeError(path, name, f"expected {T} frames, got {len(ds)}")
            if self.compressed:
                if ds.ndim != 2 or ds.dtype != np.uint8 or ds.shape[1] > _MAX_JPEG_BYTES:
                    raise EpisodeError(
                        path, name, f"expected (T, L) uint8 JPEG bytes, L <= {_MAX_JPEG_BYTES}, got {ds.shape} {ds.dtype}"
                    )
                self.shapes[cam] = self._frame_shape(name, jpeg_header_shape(self._jpeg(cam, 0)))
            elif ds.dtype != np.uint8 or ds.ndim != 4 or ds.shape[-1] != 3:
                raise EpisodeError(path, name, f"expected (T, H, W, 3) uint8, got {ds.shape} {ds.dtype}")
            else:
                self.shapes[cam] = self._frame_shape(name, tuple(ds.shape[1:]))

    def _frame_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """A camera's (H, W, 3), refused before any frame is decoded when it exceeds what the store accepts."""
        h, w, c = shape
        if not (0 < h <= S.MAX_FRAME_SIDE and 0 < w <= S.MAX_FRAME_SIDE and c == 3):
            raise EpisodeError(
                self.path, name, f"expected RGB frames of at most {S.MAX_FRAME_SIDE}x{S.MAX_FRAME_SIDE}, got {h}x{w}x{c}"
            )
        return h, w, c

    def _floats(self, ds, name: str) -> np.ndarray:
        if ds.ndim != 2 or ds.dtype.kind not in "fiu":
            raise EpisodeError(self.path, name, f"expected a (T, D) numeric array, got {ds.shape} {ds.dtype}")
        if ds.shape[0] > S.MAX_STEPS or ds.shape[1] > MAX_VECTOR:
            raise EpisodeError(
                self.path, name, f"expected at most {S.MAX_STEPS} steps of {MAX_VECTOR} values, got {ds.shape}"
            )
        arr = np.asarray(ds, dtype=np.float32)
        if len(arr) == 0:
            raise EpisodeError(self.path, name, "expected at least one step, got 0")
        if not np.all(np.isfinite(arr)):
            raise EpisodeError(self.path, name, "expected finite values, found NaN/Inf")
        return arr

    def _jpeg(self, cam: str, t: int) -> np.ndarray:
        buf = np.asarray(self.f["/observations/images"][cam][t], dtype=np.uint8)
        if self.compress_len is not None:
            buf = buf[: int(self.compress_len[self.cameras.index(cam), t])]
        return buf

    def frame(self, cam: str, t: int) -> np.ndarray:
        if not self.compressed:
            return self.f["/observations/images"][cam][t]
        try:  # every frame must have the first one's size: compared before decoding
            return np.ascontiguousarray(decode_jpeg(self._jpeg(cam, t), self.shapes[cam])[..., ::-1])  # OpenCV: BGR
        except Exception as exc:
            raise EpisodeError(self.path, f"/observations/images/{cam}", f"step {t}: undecodable JPEG ({exc})") from None


# The largest JPEG of the largest frame the store accepts (see codec and episode reader): a bound on a padded row.
_MAX_JPEG_BYTES = 2 * S.MAX_FRAME_SIDE * S.MAX_FRAME_SIDE * 3 + (64 << 10)


def _refuse_indirection(f, source: Path) -> None:
    """Refuse anything that makes the file read data from elsewhere: external links, external raw storage, virtual
    datasets (whose sources are other files). Soft links inside the file are harmless and kept."""
    import h5py

    problems: list[str] = []

    def visit(name: str, link) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"/{name}: external link to {link.filename}:{link.path}; refusing to follow it")
        elif isinstance(link, h5py.HardLink):
            obj = f[name]
            if isinstance(obj, h5py.Dataset) and obj.external:
                problems.append(f"/{name}: raw data stored in external files; refusing to read them")
            elif isinstance(obj, h5py.Dataset) and obj.is_virtual:
                problems.append(f"/{name}: a virtual dataset (its data lives in other files); refusing to read it")

    f.visititems_links(visit)
    if problems:
        raise StoreError(f"{source}: {problems[0]}")


def _check_fps(fps: float) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise StoreError(f"fps: expected a positive number of steps per second, got {fps!r}")


def _open_regular(source: Path):
    """h5py.File on a regular file only: a FIFO or device would block or never end."""
    import h5py

    try:
        mode = os.stat(source).st_mode
    except OSError as exc:
        raise StoreError(f"{source}: cannot open ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise StoreError(f"{source}: expected a regular HDF5 file, got {_file_kind(mode)}")
    try:
        return h5py.File(source, "r")
    except Exception as exc:
        raise StoreError(f"{source}: cannot open as HDF5 ({type(exc).__name__}: {exc})") from None


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")


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
    _check_fps(fps)
    source = Path(source)
    with _open_regular(source) as f:
        try:
            _refuse_indirection(f, source)
            ep = _H5Episode(f, source)
        except EpisodeError:
            raise
        except Exception as exc:  # truncated datasets and other h5py read errors
            raise StoreError(f"{source}: unreadable HDF5 content ({type(exc).__name__}: {exc})") from None
        joints = default_joint_names(ep.qpos.shape[1])
        info = S.EpisodeInfo(
            robot=robot or ("sim-aloha" if ep.sim else "mobile-aloha" if ep.mobile else "aloha"),
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
    _check_fps(fps)
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


def export_hdf5(episode: Path, out: Path, *, force: bool = False) -> Path:
    """Write an episode in the original ALOHA layout (uncompressed images by default, as ACT's loader expects).

    An existing `out` is a file this did not write: refused unless `force`; a directory there is always refused.
    """
    import h5py

    out = Path(out)
    refuse_existing_target(out, force)
    reader = EpisodeReader(episode)
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
            names = list(reader.info.action_names)
            if names[-2:] == BASE_ACTIONS:  # Mobile ALOHA's layout: arms in /action, the base in /base_action
                f.create_dataset("action", data=reader.action[:, :-2])
                f.create_dataset("base_action", data=reader.action[:, -2:])
            else:
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


def refuse_existing_target(out: Path, force: bool) -> None:
    """StoreError unless `out` is free, or an existing regular file and `force` is given."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise StoreError(f"{out}: exists and is not a regular file; refusing to replace it")
    if out.exists() and not force:
        raise StoreError(f"{out}: exists; refusing to overwrite a file this export did not write (use --force)")
