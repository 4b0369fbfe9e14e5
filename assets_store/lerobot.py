"""Interop with LeRobot's dataset format v3.0 (the format the public static and mobile ALOHA datasets are published in).

    meta/info.json                  codebase_version "v3.0", fps, features (dtype, shape, names), data_path, video_path
    meta/episodes/chunk-*/file-*.parquet
                                    one row per episode: episode_index, length, tasks, data/chunk_index,
                                    data/file_index and, per camera, videos/<key>/{chunk_index, file_index,
                                    from_timestamp, to_timestamp} (where in a shared MP4 the episode lies)
    meta/tasks.parquet              task strings (the pandas index) -> task_index
    data/chunk-*/file-*.parquet     one row per frame: observation.state, action, timestamp, frame_index,
                                    episode_index, index, task_index (several episodes may share a file)
    videos/<key>/chunk-*/file-*.mp4 the frames of observation.images.<camera>, episodes one after the other

Import maps observation.state -> observations/qpos, action -> action (joint and action names from the features'
`names`), observation.velocity / observation.effort -> qvel / effort where present, observation.images.<cam> -> camera
<cam>; timestamps are the parquet's `timestamp` column. The dataset is untrusted input: every claimed size is compared
with the store's bounds before anything is allocated or decoded, paths from info.json must stay inside the dataset,
and a session is built in a hidden staging directory and moved into place only once every episode converted.

Export writes one parquet and one MP4 per camera per episode (valid v3: LeRobot concatenates files only to keep
their number down), H.264 at LeRobot's keyframe interval, timestamps on LeRobot's grid t / fps (its loader requires
steps of exactly 1 / fps), and meta/stats.json. pyarrow and PyAV are imported lazily (the `lerobot` extra).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from assets_store import schema as S
from assets_store.episode_reader import EpisodeReader
from assets_store.episode_writer import EpisodeWriter
from assets_store.errors import EpisodeError, StoreError
from assets_store.hashing import replace_directory
from assets_store.hdf5 import MAX_VECTOR, default_action_names, default_joint_names
from assets_store.layout import StoreLayout, temp_dirname
from assets_store.names import validate_name
from assets_store.sessions import finalize_session

CODEBASE_VERSION = "v3.0"
INFO = "meta/info.json"
TASKS = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
STATS = "meta/stats.json"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CHUNKS_SIZE = 1000  # files per chunk directory

STATE, ACTION, VELOCITY, EFFORT = "observation.state", "action", "observation.velocity", "observation.effort"
IMAGES_PREFIX = "observation.images."
TIMESTAMP, FRAME_INDEX, EPISODE_INDEX = "timestamp", "frame_index", "episode_index"
INDEX, TASK_INDEX = "index", "task_index"

MAX_META_BYTES = 64 << 20  # info.json is a few kB; a larger one is not a dataset's metadata
MAX_FILE_ROWS = 20 * S.MAX_STEPS  # rows of one data parquet (several episodes share a file)
# H.264 at a quality where round trips stay close; a keyframe every 2 frames as LeRobot encodes, for its random access
VIDEO_CODEC, VIDEO_OPTIONS = "libx264", {"crf": "18", "g": "2", "preset": "medium"}


def camera_key(camera: str) -> str:
    return IMAGES_PREFIX + camera


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class VideoSpan:
    path: Path
    start: float  # seconds into the MP4 where the episode's first frame is
    end: float


@dataclass(frozen=True)
class LeRobotEpisode:
    index: int
    length: int
    task: str
    data_file: Path
    videos: dict[str, VideoSpan]  # camera name -> where its frames are


@dataclass
class LeRobotDataset:
    """A LeRobot v3.0 dataset on local disk, its metadata read and checked (frames and rows are read per episode)."""

    root: Path
    info: dict[str, Any]
    fps: float
    joint_names: list[str]
    action_names: list[str]
    cameras: dict[str, tuple[int, int]]  # camera name -> (H, W)
    optional: list[str]  # of VELOCITY, EFFORT: present with the state's width
    episodes: dict[int, LeRobotEpisode] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "LeRobotDataset":
        root = Path(root).resolve()
        if not root.is_dir():
            raise StoreError(f"{root}: expected a LeRobot dataset directory (meta/, data/, videos/)")
        info = _read_info(root / INFO)
        fps = info.get("fps")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise StoreError(f"{root / INFO}: fps: expected a positive number of frames per second, got {fps!r}")
        features = info.get("features")
        if not isinstance(features, dict):
            raise StoreError(f"{root / INFO}: features: expected an object of features, got {features!r:.80}")
        for template in ("data_path", "video_path"):
            if not isinstance(info.get(template), str):
                raise StoreError(f"{root / INFO}: {template}: expected a path template, got {info.get(template)!r:.80}")
        state_dim = _vector_width(root, features, STATE)
        action_dim = _vector_width(root, features, ACTION)
        joints = _names(root, features, STATE, state_dim) or default_joint_names(state_dim)
        actions = _names(root, features, ACTION, action_dim) or default_action_names(action_dim, joints)
        optional = [k for k in (VELOCITY, EFFORT) if k in features and _vector_width(root, features, k) == state_dim]
        cameras = {}
        for key, ft in features.items():
            dtype = ft.get("dtype") if isinstance(ft, dict) else None
            if dtype == "image":
                raise StoreError(f"{root / INFO}: features.{key}: frames stored as images inside the parquet files "
                                 "are not supported; expected dtype 'video' (MP4)")
            if dtype != "video":
                continue
            if not key.startswith(IMAGES_PREFIX):
                raise StoreError(f"{root / INFO}: features.{key}: expected a video feature named "
                                 f"{IMAGES_PREFIX}<camera>")
            name = key[len(IMAGES_PREFIX):]
            try:
                validate_name(name, "camera name")
            except StoreError as exc:
                raise StoreError(f"{root / INFO}: features.{key}: {exc}") from None
            cameras[name] = _frame_size(root, key, ft)
        ds = cls(root, info, float(fps), joints, actions, cameras, optional)
        ds.episodes = ds._read_episodes()
        return ds

    def _inside(self, what: str, **fields: Any) -> Path:
        """The path info.json's template `what` gives for `fields`, refused when it leads out of the dataset."""
        try:
            relative = self.info[what].format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise StoreError(f"{self.root / INFO}: {what}: expected a template of {sorted(fields)}, got "
                             f"{self.info[what]!r:.80} ({type(exc).__name__}: {exc})") from None
        path = (self.root / relative).resolve()
        if Path(relative).is_absolute() or not path.is_relative_to(self.root):
            raise StoreError(f"{self.root / INFO}: {what}: {relative!r} leads out of the dataset; refusing it")
        return path

    def _read_episodes(self) -> dict[int, LeRobotEpisode]:
        import pyarrow.parquet as pq

        files = sorted((self.root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if not files:
            raise StoreError(f"{self.root / EPISODES_DIR}: expected chunk-*/file-*.parquet episode metadata, "
                             "found none")
        keys = {cam: camera_key(cam) for cam in self.cameras}
        need = [EPISODE_INDEX, "length", "data/chunk_index", "data/file_index"] + [
            f"videos/{key}/{col}" for key in keys.values()
            for col in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
        out: dict[int, LeRobotEpisode] = {}
        for path in files:
            try:
                names = pq.read_schema(path).names
                missing = [c for c in need if c not in names]
                if missing:
                    raise StoreError(f"{path}: {missing[0]}: expected this episode column; it is missing")
                rows = pq.read_table(path, columns=need + (["tasks"] if "tasks" in names else [])).to_pylist()
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from None
            for row in rows:
                ep = self._episode(path, row, keys)
                if ep.index in out:
                    raise StoreError(f"{path}: {EPISODE_INDEX}: episode {ep.index} is described twice")
                out[ep.index] = ep
        return out

    def _episode(self, path: Path, row: dict, keys: dict[str, str]) -> LeRobotEpisode:
        def whole(col: str, lo: int = 0, hi: int = 10**9) -> int:
            v = row.get(col)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise StoreError(f"{path}: {col}: expected a whole number in {lo}..{hi}, got {v!r:.40}")
            return v

        index = whole(EPISODE_INDEX)
        length = whole("length", 1, S.MAX_STEPS)
        data = self._inside("data_path", chunk_index=whole("data/chunk_index"), file_index=whole("data/file_index"))
        videos = {}
        for cam, key in keys.items():
            start, end = (row.get(f"videos/{key}/{c}") for c in ("from_timestamp", "to_timestamp"))
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (start, end)) or not 0 <= start <= end:
                raise StoreError(f"{path}: videos/{key}/from_timestamp: episode {index}: expected 0 <= from_timestamp "
                                 f"<= to_timestamp, got {start!r} and {end!r}")
            video = self._inside("video_path", video_key=key, chunk_index=whole(f"videos/{key}/chunk_index"),
                                 file_index=whole(f"videos/{key}/file_index"))
            videos[cam] = VideoSpan(video, float(start), float(end))
        tasks = row.get("tasks") or []
        task = tasks[0] if isinstance(tasks, list) and tasks and isinstance(tasks[0], str) else ""
        return LeRobotEpisode(index, length, task, data, videos)

    # ------------------------------------------------------------------ one episode
    def lowdim(self, ep: LeRobotEpisode) -> dict[str, np.ndarray]:
        """The episode's rows of its data file: state, action, timestamps (and velocity/effort), in frame order."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = ep.data_file
        if not path.is_file():
            raise StoreError(f"{path}: episode {ep.index}: expected its data file; it is missing")
        columns = [STATE, ACTION, TIMESTAMP, FRAME_INDEX, EPISODE_INDEX, *self.optional]
        try:
            meta = pq.ParquetFile(path)
            if meta.metadata.num_rows > MAX_FILE_ROWS:
                raise StoreError(f"{path}: expected at most {MAX_FILE_ROWS} rows, got {meta.metadata.num_rows}")
            missing = [c for c in columns if c not in meta.schema_arrow.names]
            if missing:
                raise StoreError(f"{path}: {missing[0]}: expected this column (a feature in info.json); it is missing")
            table = pq.read_table(path, columns=columns, filters=[(EPISODE_INDEX, "=", ep.index)])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from None
        if table.num_rows != ep.length:
            raise StoreError(f"{path}: {EPISODE_INDEX}: episode {ep.index}: expected {ep.length} rows (its length in "
                             f"{EPISODES_DIR}), got {table.num_rows}")
        order = np.argsort(_scalars(path, table, FRAME_INDEX), kind="stable")
        frames = _scalars(path, table, FRAME_INDEX)[order]
        if not np.array_equal(frames, np.arange(ep.length)):
            raise StoreError(f"{path}: {FRAME_INDEX}: episode {ep.index}: expected 0..{ep.length - 1}, each once")
        out = {TIMESTAMP: _scalars(path, table, TIMESTAMP).astype(np.float64)[order]}
        for key in (STATE, ACTION, *self.optional):
            width = len(self.action_names) if key == ACTION else len(self.joint_names)
            out[key] = _vectors(path, table, key, width, pc)[order]
        ts = out[TIMESTAMP]
        if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
            raise StoreError(f"{path}: {TIMESTAMP}: episode {ep.index}: expected finite, strictly increasing times")
        return out

    def frames(self, ep: LeRobotEpisode, timestamps: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        """Each step's frame of every camera: the one at from_timestamp + timestamp in the camera's MP4."""
        tolerance = 0.25 / self.fps  # rounding of the MP4's time base, never a neighbouring frame
        last = float(timestamps[-1])
        for cam, span in ep.videos.items():
            if span.end - span.start + tolerance < last:
                raise StoreError(
                    f"{span.path}: videos/{camera_key(cam)}/to_timestamp: episode {ep.index} lasts {last:.3f} s, its "
                    f"video span {span.end - span.start:.3f} s")
        cursors: dict[str, _VideoCursor] = {}
        try:
            for cam, span in ep.videos.items():
                cursors[cam] = _VideoCursor(span.path, camera_key(cam), self.cameras[cam], span.start, tolerance)
            for ts in timestamps:
                yield {cam: cur.frame_at(ep.videos[cam].start + float(ts)) for cam, cur in cursors.items()}
        finally:
            for cur in cursors.values():
                cur.close()


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise StoreError(f"{path}: expected LeRobot's dataset metadata; it is missing (is this a LeRobot dataset?)")
    if path.stat().st_size > MAX_META_BYTES:
        raise StoreError(f"{path}: expected at most {MAX_META_BYTES} bytes of metadata, got {path.stat().st_size}")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: expected JSON, got unreadable content ({exc})") from None
    if not isinstance(info, dict):
        raise StoreError(f"{path}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise StoreError(f"{path}: codebase_version: expected {CODEBASE_VERSION!r} (LeRobot's dataset format v3), got "
                         f"{version!r}; convert it with LeRobot's own tools first")
    return info


def _feature(root: Path, features: dict, key: str) -> dict:
    ft = features.get(key)
    if not isinstance(ft, dict):
        raise StoreError(f"{root / INFO}: features.{key}: expected this feature; it is missing")
    return ft


def _vector_width(root: Path, features: dict, key: str) -> int:
    ft = _feature(root, features, key)
    shape = ft.get("shape")
    if ft.get("dtype") not in ("float32", "float64") or not (
            isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and 1 <= shape[0] <= MAX_VECTOR):
        raise StoreError(f"{root / INFO}: features.{key}: expected dtype float32/float64 and shape [D], "
                         f"1 <= D <= {MAX_VECTOR}; got {ft.get('dtype')!r} {shape!r:.40}")
    return shape[0]


def _names(root: Path, features: dict, key: str, width: int) -> list[str] | None:
    """A feature's per-dimension names: a list, or an object holding one list (older datasets: {"motors": [...]})."""
    names = features[key].get("names")
    if isinstance(names, dict) and len(names) == 1:
        (names,) = names.values()
    if names is None:
        return None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) == width
            and len(set(names)) == width):
        raise StoreError(f"{root / INFO}: features.{key}.names: expected {width} distinct names, got {names!r:.120}")
    return list(names)


def _frame_size(root: Path, key: str, ft: dict) -> tuple[int, int]:
    shape, names = ft.get("shape"), ft.get("names")
    if isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) for v in shape):
        if isinstance(names, list) and names and names[0] in ("channel", "channels"):
            c, h, w = shape
        else:
            h, w, c = shape
        if c == 3 and 0 < h <= S.MAX_FRAME_SIDE and 0 < w <= S.MAX_FRAME_SIDE:
            return h, w
    raise StoreError(f"{root / INFO}: features.{key}.shape: expected RGB frames of at most {S.MAX_FRAME_SIDE} pixels "
                     f"per side, got {shape!r:.60}")


def _scalars(path: Path, table, column: str) -> np.ndarray:
    col = table.column(column)
    if col.null_count or not (str(col.type).startswith(("int", "uint", "float", "double"))):
        raise StoreError(f"{path}: {column}: expected numbers without nulls, got {col.type}")
    return col.to_numpy()


def _vectors(path: Path, table, column: str, width: int, pc) -> np.ndarray:
    col = table.column(column).combine_chunks()
    kind = str(col.type)
    if col.null_count or not kind.startswith(("list<", "large_list<", "fixed_size_list<")):
        raise StoreError(f"{path}: {column}: expected a list of {width} numbers per row, got {col.type}")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(lengths) and not np.all(lengths == width):
        raise StoreError(f"{path}: {column}: expected {width} values per row (info.json), got {sorted(set(lengths))}")
    values = pc.list_flatten(col)
    if values.null_count or not str(values.type).startswith(("int", "uint", "float", "double")):
        raise StoreError(f"{path}: {column}: expected numbers without nulls, got {values.type}")
    arr = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)
    if not np.all(np.isfinite(arr)):
        raise StoreError(f"{path}: {column}: expected finite values, found NaN/Inf")
    return arr


class _VideoCursor:
    """Frames of one MP4 decoded forward from a start time; `frame_at` serves the frame nearest a time."""

    def __init__(self, path: Path, key: str, size: tuple[int, int], start: float, tolerance: float):
        import av

        self.path, self.key, self.size, self.tolerance = path, key, size, tolerance
        if not path.is_file():
            raise StoreError(f"{path}: {key}: expected this video file; it is missing")
        try:
            self.container = av.open(str(path))
        except Exception as exc:
            raise StoreError(f"{path}: {key}: unreadable video ({type(exc).__name__}: {exc})") from None
        try:
            if not self.container.streams.video:
                raise StoreError(f"{path}: {key}: expected a video stream, found none")
            stream = self.container.streams.video[0]
            h, w = size
            if (stream.codec_context.height, stream.codec_context.width) != (h, w):  # before any frame is decoded
                raise StoreError(f"{path}: {key}: expected {h}x{w} frames (info.json), the video has "
                                 f"{stream.codec_context.height}x{stream.codec_context.width}")
            stream.thread_type = "AUTO"
            if start > 0 and stream.time_base:
                self.container.seek(int(start / stream.time_base), stream=stream, backward=True)
            self._decoded = self.container.decode(stream)
            self.cur = self._next()
            self.nxt = self._next()
        except BaseException:
            self.close()
            raise

    def _next(self):
        try:
            frame = next(self._decoded)
        except StopIteration:
            return None
        except Exception as exc:
            raise StoreError(f"{self.path}: {self.key}: undecodable video ({type(exc).__name__}: {exc})") from None
        if frame.time is None or (frame.height, frame.width) != self.size:
            raise StoreError(f"{self.path}: {self.key}: a frame without a time or of another size "
                             f"({frame.height}x{frame.width})")
        return frame

    def frame_at(self, t: float) -> np.ndarray:
        while self.nxt is not None and abs(self.nxt.time - t) <= abs(self.cur.time - t):
            self.cur, self.nxt = self.nxt, self._next()
        if self.cur is None or abs(self.cur.time - t) > self.tolerance:
            if self.cur is None or self.nxt is None and t > self.cur.time:
                ends = "has no frames" if self.cur is None else f"ends at {self.cur.time:.3f} s"
                raise StoreError(f"{self.path}: {self.key}: the video is shorter than its episode: it {ends}, the "
                                 f"episode needs a frame at {t:.3f} s")
            raise StoreError(f"{self.path}: {self.key}: no frame at {t:.3f} s (the nearest is at "
                             f"{self.cur.time:.3f} s)")
        return self.cur.to_ndarray(format="rgb24")

    def close(self) -> None:
        self.container.close()


# ---------------------------------------------------------------------------------------------- import
@dataclass
class LeRobotImport:
    session_dir: Path
    episodes: list[tuple[int, Path]]  # (LeRobot episode index, store episode)


def import_lerobot(
    layout: StoreLayout,
    session: str,
    source: str | os.PathLike,
    *,
    episodes: list[int] | None = None,
    robot: str | None = None,
    jpeg_quality: int = 90,
    on_episode_done: Callable[[int], None] | None = None,
) -> LeRobotImport:
    """Convert a local LeRobot v3.0 dataset (all its episodes, or `episodes`) into one new finalized session.

    StoreError names the file and field of the first problem; the session then does not exist. An existing session
    is never added to or replaced."""
    target = layout.session_dir(session)  # validates the name
    if os.path.lexists(target):
        raise StoreError(f"{target}: session {session!r} already exists; import into a new session")
    ds = LeRobotDataset.open(source)
    chosen = sorted(ds.episodes) if episodes is None else list(episodes)
    unknown = [i for i in chosen if i not in ds.episodes]
    if unknown or not chosen:
        which = unknown[0] if unknown else "(none chosen)"
        raise StoreError(f"{ds.root / EPISODES_DIR}: {EPISODE_INDEX}: no episode {which}; the dataset has "
                         f"{_ranges(sorted(ds.episodes))}")
    layout.root.mkdir(parents=True, exist_ok=True)
    staging = StoreLayout(layout.root / temp_dirname(f"lerobot-import-{session}"))
    try:
        written = []
        for k, index in enumerate(chosen):
            written.append((index, _import_episode(ds, ds.episodes[index], staging, session, k, robot, jpeg_quality)))
            if on_episode_done:
                on_episode_done(index)
        finalize_session(staging, session, {"imported_from": str(ds.root), "lerobot_episodes": chosen})
        target.parent.mkdir(parents=True, exist_ok=True)
        try:  # claimed atomically: a session (even an empty folder) created meanwhile is never replaced
            os.mkdir(target)
        except FileExistsError:
            raise StoreError(f"{target}: session {session!r} appeared during the import; import into a new session"
                             ) from None
        try:
            os.rename(staging.session_dir(session), target)  # replaces only the empty folder claimed just above
        except BaseException as exc:
            with contextlib.suppress(OSError):  # the claimed folder goes, unless someone wrote into it (then theirs)
                os.rmdir(target)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise StoreError(f"{target}: session {session!r} changed during the import (someone wrote into it); "
                                 "import into a new session") from None
            raise
    finally:
        shutil.rmtree(staging.root, ignore_errors=True)
    return LeRobotImport(target, [(i, target / p.name) for i, p in written])


def _import_episode(ds: LeRobotDataset, ep: LeRobotEpisode, staging: StoreLayout, session: str, index: int,
                    robot: str | None, jpeg_quality: int) -> Path:
    rows = ds.lowdim(ep)
    info = S.EpisodeInfo(
        robot=robot or str(ds.info.get("robot_type") or "lerobot"),
        joint_names=ds.joint_names,
        action_names=ds.action_names,
        fps=ds.fps,
        cameras=[S.CameraSpec(cam, h, w) for cam, (h, w) in ds.cameras.items()],
        task=ep.task,
        session=session,
        extra={"imported_from": str(ds.root), "lerobot_episode_index": ep.index},
    )
    qvel, effort = rows.get(VELOCITY), rows.get(EFFORT)
    with EpisodeWriter(staging, session, info, index, jpeg_quality=jpeg_quality, sweep_stale=False) as writer:
        for t, images in enumerate(ds.frames(ep, rows[TIMESTAMP])):
            writer.add_step(rows[STATE][t], rows[ACTION][t], rows[TIMESTAMP][t], images=images,
                            qvel=None if qvel is None else qvel[t], effort=None if effort is None else effort[t])
        return writer.close()


def _ranges(indices: list[int]) -> str:
    if not indices:
        return "no episodes"
    parts, start = [], indices[0]
    for prev, cur in zip(indices, indices[1:] + [None]):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return "episodes " + ",".join(parts)


# ---------------------------------------------------------------------------------------------- export
def export_lerobot(episodes: list[Path], out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write store episodes as a LeRobot v3.0 dataset in `out`, built in a temporary sibling and moved into place.

    An existing non-empty `out` is refused unless `overwrite` and it is an earlier export (has meta/info.json); all episodes must share joints, actions, cameras and
    fps (one dataset has one set of features)."""
    out = Path(out).absolute()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise StoreError(f"{out}: exists and is not a directory; refusing to replace it")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise StoreError(f"{out}: exists and is not empty; refusing to write into it (use --overwrite to replace "
                             f"an earlier export)")
        if not (out / "meta" / "info.json").is_file():  # --overwrite replaces an export, never a user's other folder
            raise StoreError(f"{out}: not a LeRobot dataset (no meta/info.json); --overwrite replaces only an earlier "
                             f"export, never another folder")
    if not episodes:
        raise StoreError("no episodes to export")
    readers = [EpisodeReader(p) for p in episodes]
    first = readers[0]
    for r in readers[1:]:
        for what, mine, theirs in (("joint_names", r.info.joint_names, first.info.joint_names),
                                   ("action_names", r.info.action_names, first.info.action_names),
                                   ("cameras", _camera_sizes(r), _camera_sizes(first)), ("fps", r.fps, first.fps)):
            if mine != theirs:
                raise EpisodeError(r.path, f"attrs.{what}", f"expected {theirs!r} as {first.path.name} (one "
                                                            f"dataset has one set of features), got {mine!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_dataset(readers, tmp)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _camera_sizes(reader: EpisodeReader) -> list[tuple[str, int, int]]:
    return [(c.name, c.height, c.width) for c in reader.info.cameras]


class _Moments:
    """Per-dimension count, sum, sum of squares, min and max: LeRobot's stats.json entry of one feature."""

    def __init__(self):
        self.n, self.s, self.ss, self.lo, self.hi = 0, 0.0, 0.0, None, None

    def add(self, x: np.ndarray, axis: tuple[int, ...]) -> None:
        x = x.astype(np.float64)
        self.n += int(np.prod([x.shape[a] for a in axis]))
        self.s = self.s + x.sum(axis=axis)
        self.ss = self.ss + (x * x).sum(axis=axis)
        lo, hi = x.min(axis=axis), x.max(axis=axis)
        self.lo = lo if self.lo is None else np.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else np.maximum(self.hi, hi)

    def json(self, shape: tuple[int, ...] = (-1,)) -> dict[str, Any]:
        mean = self.s / self.n
        std = np.sqrt(np.maximum(self.ss / self.n - mean * mean, 0.0))
        return {"mean": mean.reshape(shape).tolist(), "std": std.reshape(shape).tolist(),
                "min": self.lo.reshape(shape).tolist(), "max": self.hi.reshape(shape).tolist(), "count": [self.n]}


def _write_dataset(readers: list[EpisodeReader], root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = readers[0]
    fps = first.fps
    optional = [(VELOCITY, "qvel"), (EFFORT, "effort")]
    optional = [(key, attr) for key, attr in optional if all(getattr(r, attr) is not None for r in readers)]
    tasks = sorted({r.info.task for r in readers})
    moments = {key: _Moments() for key in (STATE, ACTION, *(k for k, _ in optional))}
    moments.update({camera_key(cam): _Moments() for cam in first.camera_names})
    episode_rows = []
    total = 0
    for i, r in enumerate(readers):
        T = len(r)
        chunk, file = divmod(i, CHUNKS_SIZE)
        vectors = {STATE: r.qpos, ACTION: r.action, **{key: getattr(r, attr) for key, attr in optional}}
        columns = {key: pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).ravel()), v.shape[1])
                   for key, v in vectors.items()}
        columns.update({
            TIMESTAMP: pa.array(np.arange(T, dtype=np.float32) / np.float32(fps)),  # LeRobot's grid: t / fps
            FRAME_INDEX: pa.array(np.arange(T, dtype=np.int64)),
            EPISODE_INDEX: pa.array(np.full(T, i, np.int64)),
            INDEX: pa.array(np.arange(total, total + T, dtype=np.int64)),
            TASK_INDEX: pa.array(np.full(T, tasks.index(r.info.task), np.int64)),
        })
        data_path = root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), data_path)
        for key, v in vectors.items():
            moments[key].add(v, (0,))
        row = {EPISODE_INDEX: i, "tasks": [r.info.task], "length": T, "data/chunk_index": chunk,
               "data/file_index": file, "dataset_from_index": total, "dataset_to_index": total + T,
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for cam in r.camera_names:
            key = camera_key(cam)
            video = root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            _encode_video(r, cam, video, fps, moments[key])
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": T / fps})
        episode_rows.append(row)
        total += T
    meta = root / EPISODES_DIR / "chunk-000" / "file-000.parquet"
    meta.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), meta)
    _write_tasks(root / TASKS, tasks)
    stats = {key: m.json((3, 1, 1) if key.startswith(IMAGES_PREFIX) else (-1,)) for key, m in moments.items()}
    (root / STATS).write_text(json.dumps(stats, indent=2))
    (root / INFO).write_text(json.dumps(_info(first, optional, len(readers), total, len(tasks)), indent=2))


def _info(first: EpisodeReader, optional: list[tuple[str, str]], episodes: int, frames: int, tasks: int) -> dict:
    fps = first.fps
    features: dict[str, Any] = {}
    for cam in first.info.cameras:
        features[camera_key(cam.name)] = {
            "dtype": "video", "shape": [cam.height, cam.width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": cam.height, "video.width": cam.width, "video.codec": "h264",
                     "video.pix_fmt": _pix_fmt(cam.height, cam.width), "video.is_depth_map": False,
                     "video.fps": fps, "video.channels": 3, "has_audio": False}}
    features[STATE] = {"dtype": "float32", "shape": [first.info.num_joints], "names": list(first.info.joint_names)}
    for key, _ in optional:
        features[key] = {"dtype": "float32", "shape": [first.info.num_joints], "names": list(first.info.joint_names)}
    features[ACTION] = {"dtype": "float32", "shape": [first.info.action_dim], "names": list(first.info.action_names)}
    features[TIMESTAMP] = {"dtype": "float32", "shape": [1], "names": None}
    for key in (FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX):
        features[key] = {"dtype": "int64", "shape": [1], "names": None}
    return {
        "codebase_version": CODEBASE_VERSION, "robot_type": first.info.robot, "total_episodes": episodes,
        "total_frames": frames, "total_tasks": tasks, "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200, "fps": int(fps) if float(fps).is_integer() else fps,
        "splits": {"train": f"0:{episodes}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features,
    }


def _pix_fmt(h: int, w: int) -> str:
    return "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides


def _encode_video(reader: EpisodeReader, cam: str, path: Path, fps: float, moments: _Moments) -> None:
    import av

    spec = reader.info.camera(cam)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(VIDEO_CODEC, rate=rate)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, _pix_fmt(spec.height, spec.width)
        stream.options = dict(VIDEO_OPTIONS)
        for t in range(len(reader)):
            img = reader.frame(cam, t)
            moments.add(img.reshape(-1, 3) / 255.0, (0,))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet as LeRobot reads it (pandas.read_parquet): the task strings are the index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [], "creator": {"library": "pyarrow", "version": pa.__version__},
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "pandas_version": "2.0.0",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)
