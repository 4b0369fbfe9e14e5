"""Read one committed episode: low-dimensional arrays in memory, camera frames by random access.

The reader never writes: the store is opened read-only. Frames of our own layout (one JPEG per chunk) are read as
chunk files and decoded directly, skipping Zarr's per-read overhead; anything else goes through Zarr.

`EpisodeReader` refuses an episode that breaks the schema. `EpisodeArrays`, which it is built on, checks nothing
beyond "a Zarr v3 group": it answers array by array, so a malformed episode can still be examined
(`assets_store.checks`, the pipeline's quality checks).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.storage import FsspecStore, LocalStore

from assets_store import schema as S
from assets_store.codec import CODEC_NAME, decode_jpeg
from assets_store.errors import EpisodeError
from assets_store.layout import is_remote_root, url_scheme
from assets_store.schema import EpisodeHeader, parse_header

LOWDIM_REQUIRED = (S.QPOS, S.ACTION, S.TIMESTAMPS)
LOWDIM_OPTIONAL = (S.QVEL, S.EFFORT)


def episode_location(path: str | os.PathLike) -> tuple[Path | str, Any, str]:
    """(the episode as messages name it, its fsspec filesystem or None on local disk, its path inside that
    filesystem). An object-store URL (s3://..., memory://...) is read through fsspec; anything else is a local path."""
    if not isinstance(path, (str, Path)):  # a UPath (StoreLayout with a data_url): its str() is its URL
        path = str(path)
    if is_remote_root(path):
        url = str(path).rstrip("/")
        fs, key = fsspec.core.url_to_fs(url)
        return url, fs, key.rstrip("/")
    if url_scheme(path):
        path = str(path).split("://", 1)[1]
    local = Path(path)
    return local, None, str(local)


def read_root_attrs(path: str | os.PathLike) -> dict:
    """The episode's group attributes straight from zarr.json: cheap, for indexes and checks (not yet type-checked:
    `schema.parse_header` does that)."""
    path, fs, key = episode_location(path)
    try:
        raw = (path / "zarr.json").read_bytes() if fs is None else fs.cat_file(f"{key}/zarr.json")
        meta = json.loads(raw.decode())
    except FileNotFoundError:
        raise EpisodeError(path, "zarr.json", "expected a Zarr v3 group; the file is missing") from None
    except OSError as exc:
        raise EpisodeError(path, "zarr.json", f"expected a readable file ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeError(path, "zarr.json", f"expected JSON group metadata, got unreadable content ({exc})") from None
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise EpisodeError(path, "zarr.json", "expected a Zarr v3 group")
    attrs = meta.get("attributes", {})
    if not isinstance(attrs, dict):
        raise EpisodeError(path, "zarr.json", f"expected an object of attributes, got {type(attrs).__name__}")
    return attrs


def frame_number_gaps(frame_info: np.ndarray) -> int:
    """Frames a camera skipped: the gaps between consecutive recorded frame numbers (rows without one ignored)."""
    numbers = frame_info[:, 0]
    numbers = numbers[np.isfinite(numbers)]
    gaps = np.diff(numbers) - 1 if len(numbers) > 1 else np.zeros(0)
    return int(gaps[gaps > 0].sum())


@dataclass(frozen=True)
class ArrayInfo:
    """An array's metadata, read without touching its data."""

    shape: tuple[int, ...]
    dtype: Any  # numpy dtype, as Zarr reports it


class EpisodeArrays:
    """One episode's group attributes and arrays, opened read-only; metadata unchecked until asked.

    `info` answers from an array's metadata alone. `read` first compares the array's claimed shape, dtype and chunk
    size with what the header declares, so a damaged zarr.json cannot make it allocate or scan beyond the episode's
    declared size. A missing array is None; a disagreement or unreadable header is an EpisodeError naming the field;
    any other failure (unknown codec, corrupt chunk) raises Zarr's own exception.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict | None = None):
        self.path, fs, _ = episode_location(path)
        self.attrs: dict = read_root_attrs(self.path) if attrs is None else attrs
        store = LocalStore(self.path, read_only=True) if fs is None else FsspecStore.from_url(self.path, read_only=True)
        self._group = zarr.open_group(store=store, mode="r", zarr_format=3)
        self._data: dict[str, np.ndarray | None] = {}

    @cached_property
    def header(self) -> EpisodeHeader:
        """The type-checked attributes (EpisodeError, naming the attribute, when they are not what the schema says)."""
        return parse_header(self.path, self.attrs)

    def info(self, name: str) -> ArrayInfo | None:
        arr = self._array(name)
        return None if arr is None else ArrayInfo(tuple(arr.shape), arr.dtype)

    def read(self, name: str) -> np.ndarray | None:
        """The whole array, decoded once and kept; only once its metadata matches the header."""
        if name not in self._data:
            arr = self._array(name)
            if arr is not None:
                self.check_declared(name, arr)
                self.check_chunks_present(name, arr)
            self._data[name] = None if arr is None else np.asarray(arr[...])
        return self._data[name]

    def check_declared(self, name: str, arr) -> None:
        """Refuse an array whose metadata claims another shape or dtype than the header declares for it."""
        declared = self.header.declared_arrays().get(name)
        if declared is None:
            raise EpisodeError(self.path, name, "expected an array the episode's attributes declare; not read")
        shape, dtype = declared
        if tuple(arr.shape) != shape or arr.dtype != dtype:
            raise EpisodeError(self.path, name, f"expected {shape} {dtype}, got {tuple(arr.shape)} {arr.dtype}")
        try:
            chunks = tuple(arr.chunks)
        except Exception as exc:  # e.g. a chunk grid other than Zarr's regular one
            raise EpisodeError(self.path, name, f"expected a regular chunk grid ({type(exc).__name__}: {exc})") from None
        if math.prod(chunks) > max(math.prod(shape), _CHUNK_SLACK):
            raise EpisodeError(self.path, name, f"expected chunks within the array's {shape}, got {chunks}")

    def check_chunks_present(self, name: str, arr) -> None:
        """Every chunk of a fully written array is on disk: Zarr reads a missing one as its fill value (zeros), which
        would pass for data. Episodes written since `chunks_complete` was recorded have every chunk, so a missing one
        is damage; older ones skipped all-zero chunks and cannot tell."""
        if self.attrs.get("chunks_complete") is not True:
            return
        present, expected = arr.nchunks_initialized, arr.nchunks  # asks the store (a directory or a bucket)
        if present != expected:
            raise EpisodeError(self.path, name, f"expected every chunk in the store; {expected - present} of "
                                                f"{expected} missing")

    def _array(self, name: str):
        try:
            return self._group[name]
        except KeyError:
            return None


# A chunk may be larger than a small array (Zarr pads edge chunks): up to this many elements, never more than that
# or the array itself, whichever is larger (a chunk is allocated whole when it is decoded).
_CHUNK_SLACK = 1 << 20


class EpisodeReader:
    def __init__(self, path: str | os.PathLike):
        """`path`: an episode directory, or its URL in an object store (read through fsspec and Zarr's FsspecStore)."""
        self.path, self._fs, key = episode_location(path)
        if self._fs is None and not self.path.is_dir():
            what = "it does not exist" if not self.path.exists() else "found something else (a file?)"
            raise EpisodeError(self.path, "episode", f"expected an episode directory; {what}")
        self.attrs = read_root_attrs(self.path)
        self.header = parse_header(self.path, self.attrs)
        self.info = self.header.info
        self.num_steps = self.header.num_steps
        try:
            self.arrays = EpisodeArrays(self.path, self.attrs)
        except Exception as exc:
            raise EpisodeError(self.path, "zarr.json", f"cannot open the Zarr group: {exc}") from exc
        lowdim = {name: self._load(name, required=True) for name in LOWDIM_REQUIRED}
        lowdim.update({name: self._load(name, required=False) for name in LOWDIM_OPTIONAL})
        self.qpos: np.ndarray = lowdim[S.QPOS]
        self.action: np.ndarray = lowdim[S.ACTION]
        self.timestamps: np.ndarray = lowdim[S.TIMESTAMPS]
        self.qvel: np.ndarray | None = lowdim[S.QVEL]
        self.effort: np.ndarray | None = lowdim[S.EFFORT]
        self._images = {cam.name: self._image_array(cam) for cam in self.info.cameras}
        self._chunk_base = {cam: f"{key}/{S.image_array(cam)}/c" for cam in self._images}

    def __repr__(self) -> str:
        return f"EpisodeReader({str(self.path)!r}, steps={self.num_steps}, cameras={self.camera_names})"

    def __len__(self) -> int:
        return self.num_steps

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.info.cameras]

    @property
    def fps(self) -> float:
        return float(self.info.fps)

    # ------------------------------------------------------------------ frames
    def frame(self, camera: str, t: int) -> np.ndarray:
        """(H, W, 3) uint8 frame of `camera` at step `t`."""
        arr, fast = self._camera(camera)
        t = self._step(t)
        if fast:
            return self.decode_frame(camera, t, self.frame_bytes(camera, t))
        try:
            return arr[t]
        except Exception as exc:
            raise EpisodeError(self.path, S.image_array(camera), f"step {t}: cannot read frame ({exc})") from None

    def has_frame_chunks(self, camera: str) -> bool:
        """Whether `frame_bytes` serves this camera (our layout: one JPEG per chunk file)."""
        return self._camera(camera)[1]

    def decode_frame(self, camera: str, t: int, data: bytes) -> np.ndarray:
        """The (H, W, 3) frame that `frame_bytes(camera, t)` returned (perhaps from a cache), decoded and checked."""
        arr, _ = self._camera(camera)
        try:
            image = decode_jpeg(data, arr.shape[1:])
        except Exception as exc:
            raise EpisodeError(
                self.path, S.image_array(camera), f"step {t}: expected a JPEG frame, chunk is corrupt ({exc})"
            ) from None
        if image.shape != arr.shape[1:]:
            raise EpisodeError(
                self.path, S.image_array(camera), f"step {t}: expected shape {arr.shape[1:]}, decoded {image.shape}"
            )
        return image

    def frame_bytes(self, camera: str, t: int) -> bytes:
        """The stored JPEG bytes of one frame (our layout only), e.g. to hand to a decoder in another process."""
        self._camera(camera)
        t = self._step(t)
        chunk = f"{self._chunk_base[camera]}/{t}/0/0/0"  # string paths: pathlib costs more than the read here
        limit = _max_jpeg_bytes(self.info.camera(camera))
        try:
            if self._fs is None:
                with open(chunk, "rb") as f:
                    data = f.read(limit + 1)
            else:
                data = self._fs.cat_file(chunk, start=0, end=limit + 1)
        except FileNotFoundError:
            raise EpisodeError(
                self.path, S.image_array(camera), f"step {t}: expected a frame chunk at {chunk}; it is missing"
            ) from None
        except OSError as exc:
            raise EpisodeError(
                self.path, S.image_array(camera), f"step {t}: expected a readable frame chunk at {chunk} ({exc.strerror})"
            ) from None
        if len(data) > limit:
            raise EpisodeError(
                self.path, S.image_array(camera), f"step {t}: expected a JPEG of at most {limit} bytes, chunk is larger"
            )
        return data

    def frames(self, camera: str, steps=None) -> np.ndarray:
        idx = range(self.num_steps) if steps is None else steps
        return np.stack([self.frame(camera, int(t)) for t in idx])

    def frame_info(self, camera: str) -> np.ndarray:
        """(T, 2): device frame number and device timestamp per step (NaN where the source had none)."""
        self._camera(camera)
        return self._load(S.frame_info_array(camera), required=True)

    @cached_property
    def dropped_frames(self) -> dict[str, int]:
        """Frame-number gaps per camera (recorded frame numbers that skip values)."""
        return {cam: frame_number_gaps(self.frame_info(cam)) for cam in self.camera_names}

    # ------------------------------------------------------------------ internals
    def _step(self, t: int) -> int:
        t = int(t)
        if t < 0:
            t += self.num_steps
        if not 0 <= t < self.num_steps:
            raise IndexError(f"{self.path}: step {t} out of range 0..{self.num_steps - 1}")
        return t

    def _camera(self, camera: str):
        try:
            return self._images[camera]
        except KeyError:
            raise EpisodeError(
                self.path, S.image_array(camera), f"no such camera; expected one of {self.camera_names}"
            ) from None

    def _open_array(self, name: str, required: bool):
        try:
            arr = self.arrays._array(name)
        except Exception as exc:  # unknown codec, malformed metadata
            raise EpisodeError(self.path, name, f"cannot open the array: {type(exc).__name__}: {exc}") from None
        if arr is None and required:
            raise EpisodeError(self.path, name, "expected this array; it is missing from the store")
        return arr

    def _load(self, name: str, required: bool) -> np.ndarray | None:
        arr = self._open_array(name, required)
        if arr is None:
            return None
        self.arrays.check_declared(name, arr)
        try:
            return self.arrays.read(name)
        except Exception as exc:
            raise EpisodeError(self.path, name, f"cannot read the data (truncated or corrupt chunk?): {exc}") from None

    def _image_array(self, cam: S.CameraSpec):
        name = S.image_array(cam.name)
        arr = self._open_array(name, required=True)
        self.arrays.check_declared(name, arr)
        one_frame = (1, cam.height, cam.width, 3)
        if tuple(arr.chunks) != one_frame:
            raise EpisodeError(self.path, name, f"expected one frame per chunk {one_frame}, got chunks {arr.chunks}")
        meta = arr.metadata
        fast = (
            len(meta.codecs) == 1
            and meta.codecs[0].to_dict().get("name") == CODEC_NAME
            and meta.encode_chunk_key((0, 0, 0, 0)) == "c/0/0/0/0"
        )
        return arr, fast


def _max_jpeg_bytes(cam: S.CameraSpec) -> int:
    """No JPEG of a camera frame is larger than twice the raw pixels (plus headers): a bound on what a read takes."""
    return 2 * cam.height * cam.width * 3 + (64 << 10)
