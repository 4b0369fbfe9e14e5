"""Write one episode from a 50 Hz loop without blocking it; commit it atomically on close().

Low-dimensional arrays stay in RAM and are written once at the end (Zarr costs ~2 ms per chunk write). Camera
frames go through a bounded queue to worker threads that JPEG-encode them (the GIL is released) and write the
chunk files directly. The store is built in a hidden temporary sibling directory and renamed into place, so a
crash never leaves a half episode under a final name; `recovery.sweep_session` cleans or recovers leftovers.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from assets_store import schema as S
from assets_store.codec import DEFAULT_JPEG_QUALITY, JpegCodec, encode_jpeg
from assets_store.errors import EpisodeError, StoreError
from assets_store.layout import COMPLETE_MARKER, StoreLayout, temp_dirname
from assets_store.names import validate_name
from assets_store.recovery import sweep_session
from assets_store.sessions import is_session_finalized, next_episode_index


@dataclass
class WriterStats:
    steps: int = 0
    frames_queued: int = 0
    frames_written: int = 0
    bytes_written: int = 0
    backpressure_events: int = 0  # add_step found the queue full and had to wait
    blocked_seconds: float = 0.0  # total time add_step waited on a full queue
    max_queue_depth: int = 0


_SENTINEL = None


class EpisodeWriter:
    """Accepts one step at a time; `close()` commits, `discard()` leaves nothing behind.

    Use as a context manager: an exception inside the block discards the episode.
    """

    def __init__(
        self,
        store: StoreLayout | str | os.PathLike,
        session: str,
        info: EpisodeInfo_T,
        index: int | None = None,
        *,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        queue_frames: int = 96,
        workers: int = 2,
        sweep_stale: bool = True,
    ):
        self.layout = store if isinstance(store, StoreLayout) else StoreLayout.at(store)
        self.session = validate_name(session, "session name")
        self.info = info
        if not info.session:
            info.session = session
        self.jpeg_quality = int(jpeg_quality)
        JpegCodec(self.jpeg_quality)  # validates the quality
        self.session_dir = self.layout.session_dir(session)
        self.session_dir.mkdir(parents=True, exist_ok=True)
        if is_session_finalized(self.session_dir):
            raise StoreError(f"{self.session_dir}: session {session!r} is finalized (immutable); start a new session")
        self.sweep_report = sweep_session(self.session_dir) if sweep_stale else []
        self.index = next_episode_index(self.session_dir) if index is None else int(index)
        self.final_path = self.layout.episode_path(session, self.index)
        if self.final_path.exists():
            raise StoreError(f"{self.final_path}: episode already exists; episodes are written once")
        self.tmp_path = self.session_dir / temp_dirname(self.final_path.name)
        self.tmp_path.mkdir()
        self.stats = WriterStats()

        self._qpos: list[np.ndarray] = []
        self._action: list[np.ndarray] = []
        self._qvel: list[np.ndarray] | None = None
        self._effort: list[np.ndarray] | None = None
        self._timestamps: list[float] = []
        self._frame_info = {cam.name: [] for cam in info.cameras}
        self._cams = {cam.name: cam for cam in info.cameras}
        self._chunk_dirs = {cam.name: self.tmp_path / S.image_array(cam.name) / "c" for cam in info.cameras}
        for d in self._chunk_dirs.values():
            d.mkdir(parents=True)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_frames))
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._state = "open"
        self._workers = [
            threading.Thread(target=self._work, name=f"episode-writer-{i}", daemon=True)
            for i in range(max(1, workers) if info.cameras else 0)
        ]
        for w in self._workers:
            w.start()

    # ------------------------------------------------------------------ control thread
    @property
    def name(self) -> str:
        return f"{self.session}/{self.final_path.name}"

    def __len__(self) -> int:
        return len(self._timestamps)

    def add_step(
        self,
        qpos: np.ndarray,
        action: np.ndarray,
        timestamp: float,
        *,
        qvel: np.ndarray | None = None,
        effort: np.ndarray | None = None,
        images: Mapping[str, np.ndarray] | None = None,
        frame_info: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """Validate and buffer one control step. Blocks only when the frame queue is full (counted, never dropped)."""
        self._check_open()
        t = len(self._timestamps)
        qpos = self._vector(qpos, S.QPOS, self.info.num_joints, t)
        action = self._vector(action, S.ACTION, self.info.action_dim, t)
        qvel = self._optional(qvel, S.QVEL, "_qvel", t)
        effort = self._optional(effort, S.EFFORT, "_effort", t)
        timestamp = float(timestamp)
        if not np.isfinite(timestamp):
            raise EpisodeError(self.name, S.TIMESTAMPS, f"step {t}: expected a finite time, got {timestamp}")
        if self._timestamps and timestamp <= self._timestamps[-1]:
            raise EpisodeError(
                self.name, S.TIMESTAMPS,
                f"step {t}: expected strictly increasing times, got {timestamp!r} after {self._timestamps[-1]!r}",
            )
        frames = self._check_images(images or {}, t)
        infos = {}
        for cam in self._cams:
            fi = (frame_info or {}).get(cam)
            infos[cam] = (np.nan, np.nan) if fi is None else (float(fi[0]), float(fi[1]))

        # Everything validated: only now mutate state, so a rejected step leaves the episode as it was.
        self._qpos.append(qpos)
        self._action.append(action)
        if qvel is not None:
            self._qvel.append(qvel)
        if effort is not None:
            self._effort.append(effort)
        self._timestamps.append(timestamp)
        for cam, fi in infos.items():
            self._frame_info[cam].append(fi)
        for cam, frame in frames.items():
            self._enqueue((cam, t, frame))
        self.stats.steps = t + 1

    def close(self, extra_attrs: Mapping[str, Any] | None = None) -> Path:
        """Finish the frame writes, write arrays and attributes, and rename the episode into place."""
        if self._state != "open":  # a frame-write error is handled below: workers stopped, temporaries removed
            raise StoreError(f"{self.name}: writer is {self._state}")
        if not self._timestamps:
            self.discard()
            raise EpisodeError(self.name, "steps", "expected at least one recorded step, got none")
        self._stop_workers()
        if self._error is not None:
            err = self._error
            self.discard()
            raise StoreError(f"{self.name}: writing camera frames failed: {err}") from err
        try:
            self._write_arrays(dict(extra_attrs or {}))
            (self.tmp_path / COMPLETE_MARKER).write_text(json.dumps({"final_name": self.final_path.name}))
            # Durable before visible: a power cut after the rename must not leave empty files under a final name.
            # One sync per episode is far cheaper than an fsync per frame on the writer threads.
            os.sync()
            if self.final_path.exists():
                raise StoreError(f"{self.final_path}: episode appeared while writing; refusing to overwrite")
            os.rename(self.tmp_path, self.final_path)
            _fsync_dir(self.session_dir)
        except BaseException:
            self._state = "failed"
            shutil.rmtree(self.tmp_path, ignore_errors=True)
            raise
        self._state = "closed"
        return self.final_path

    def discard(self) -> None:
        """Drop the episode: stop workers and remove the temporary directory. Safe to call twice."""
        if self._state in ("closed", "discarded"):
            return
        self._state = "discarding"
        self._stop_workers(drop=True)
        shutil.rmtree(self.tmp_path, ignore_errors=True)
        self._state = "discarded"

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
        elif self._state == "open":
            self.close()

    # ------------------------------------------------------------------ validation
    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"{self.name}: writer is {self._state}")
        if self._error is not None:
            raise StoreError(f"{self.name}: a frame write failed earlier: {self._error}") from self._error

    def _vector(self, value, field: str, dim: int, t: int) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
            raise EpisodeError(self.name, field, f"step {t}: expected a float vector, got dtype {arr.dtype}")
        if arr.shape != (dim,):
            raise EpisodeError(self.name, field, f"step {t}: expected shape ({dim},), got {arr.shape}")
        out = arr.astype(np.float32)  # always a copy: callers may reuse their buffers
        if not np.all(np.isfinite(out)):
            bad = np.flatnonzero(~np.isfinite(out)).tolist()
            raise EpisodeError(self.name, field, f"step {t}: expected finite values, got NaN/Inf at {bad}")
        return out

    def _optional(self, value, field: str, attr: str, t: int) -> np.ndarray | None:
        buf = getattr(self, attr)
        if t == 0 and value is not None:
            setattr(self, attr, [])
            buf = []
        if (value is None) != (buf is None):
            want = "given on every step (it was on step 0)" if buf is not None else "absent (it was on step 0)"
            raise EpisodeError(self.name, field, f"step {t}: expected it {want}")
        return None if value is None else self._vector(value, field, self.info.num_joints, t)

    def _check_images(self, images: Mapping[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
        if set(images) != set(self._cams):
            raise EpisodeError(
                self.name, S.IMAGES_GROUP,
                f"step {t}: expected frames for cameras {sorted(self._cams)}, got {sorted(images)}",
            )
        out = {}
        for cam, frame in images.items():
            spec = self._cams[cam]
            arr = np.asarray(frame)
            if arr.dtype != np.uint8 or arr.shape != (spec.height, spec.width, 3):
                raise EpisodeError(
                    self.name, S.image_array(cam),
                    f"step {t}: expected uint8 ({spec.height}, {spec.width}, 3), got {arr.dtype} {arr.shape}",
                )
            out[cam] = np.array(arr, copy=True, order="C")  # the camera may reuse its buffer
        return out

    # ------------------------------------------------------------------ frame workers
    def _enqueue(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.backpressure_events += 1
            start = time.perf_counter()
            self._queue.put(item)
            self.stats.blocked_seconds += time.perf_counter() - start
        self.stats.frames_queued += 1
        depth = self._queue.qsize()
        if depth > self.stats.max_queue_depth:
            self.stats.max_queue_depth = depth

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _SENTINEL:
                return
            if self._error is not None or self._state == "discarding":
                continue  # keep draining so the producer never blocks forever
            try:
                self._write_frame(*item)
            except BaseException as exc:  # surfaced on the next add_step/close
                self._error = exc

    def _write_frame(self, cam: str, t: int, frame: np.ndarray) -> None:
        """Encode one frame and write it as the chunk file Zarr expects ("c/<t>/0/0/0")."""
        data = encode_jpeg(frame, self.jpeg_quality)
        d = self._chunk_dirs[cam] / str(t) / "0" / "0"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "0", "wb") as f:
            f.write(data)
        with self._lock:
            self.stats.frames_written += 1
            self.stats.bytes_written += len(data)

    def _stop_workers(self, drop: bool = False) -> None:
        if drop:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        for _ in self._workers:
            self._queue.put(_SENTINEL)
        for w in self._workers:
            w.join()
        self._workers = []

    # ------------------------------------------------------------------ commit
    def _write_arrays(self, extra_attrs: dict[str, Any]) -> None:
        T = len(self._timestamps)
        group = zarr.open_group(str(self.tmp_path), mode="a", zarr_format=3)

        def put(name: str, data: np.ndarray) -> None:
            # Every chunk on disk, all-zero ones too (Zarr skips those by default): a reader can then tell a deleted
            # chunk from zeros (`chunks_complete` below).
            group.create_array(name, data=data, chunks=data.shape, compressors=None, fill_value=0,
                               config={"write_empty_chunks": True})

        put(S.QPOS, np.stack(self._qpos))
        put(S.ACTION, np.stack(self._action))
        put(S.TIMESTAMPS, np.asarray(self._timestamps, dtype=np.float64))
        if self._qvel is not None:
            put(S.QVEL, np.stack(self._qvel))
        if self._effort is not None:
            put(S.EFFORT, np.stack(self._effort))
        for cam, spec in self._cams.items():
            put(S.frame_info_array(cam), np.asarray(self._frame_info[cam], dtype=np.float64).reshape(T, 2))
            # Chunks already sit on disk as JPEG files; this writes only the array metadata.
            group.create_array(
                S.image_array(cam),
                shape=(T, spec.height, spec.width, 3),
                chunks=(1, spec.height, spec.width, 3),
                dtype="uint8",
                serializer=JpegCodec(self.jpeg_quality),
                compressors=None,
                fill_value=0,
                overwrite=False,
            )
        counters = dict(extra_attrs.pop("counters", {}) or {})
        counters.setdefault("backpressure_events", self.stats.backpressure_events)
        counters.setdefault("backpressure_seconds", round(self.stats.blocked_seconds, 6))
        attrs = {
            "schema": S.EPISODE_SCHEMA,
            "schema_version": S.EPISODE_SCHEMA_VERSION,
            "num_steps": T,
            "chunks_complete": True,  # every chunk of every array was written: a missing one is damage
            "duration_s": float(self._timestamps[-1] - self._timestamps[0]) if T > 1 else 0.0,
            "jpeg_quality": self.jpeg_quality,
            "episode_index": self.index,
            "status": "ok",  # the recorder writes "failed" (+ "failure") for an episode cut short by a robot fault
            **self.info.to_attrs(),
            "counters": counters,
            "writer": {k: v for k, v in asdict(self.stats).items()},
            **extra_attrs,
        }
        group.attrs.update(_jsonable(attrs))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


EpisodeInfo_T = S.EpisodeInfo
