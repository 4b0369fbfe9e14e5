"""Training samples from a store dataset (manifest + stats): one timestep, its images and the next `chunk` actions.

Memory stays bounded whatever the number of episodes: the low-dimensional arrays (a few floats per step) live in
RAM; camera frames are read and JPEG-decoded on demand in DataLoader workers, each keeping only a small LRU of open
episode readers. A sample index is a flat (episode, timestep) position, so a sample is a pure function of its index
and the sampler alone decides the order (exact resume, DDP sharding).

A co-trained dataset (assets_store/cotraining.py) conforms every episode's actions to the target's (padded columns
are 0, and an `action_mask` per sample says which columns are real) and `GroupSampler` draws its groups by weight.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from assets_store import EpisodeReader, StoreLayout
from assets_store.cotraining import action_columns, conform_actions
from assets_store.dataset import dataset_episodes_url, load_dataset
from assets_store.layout import STORE_ENV, is_remote_root
from assets_store.remote import RemoteStore, path_or_url
from assets_store.stats import DEFAULT_STD_FLOOR, NormStats
from model.base_actions import smooth_base_actions
from model.config import DEFAULT_CACHE_BYTES


def floored(stats: NormStats, floor: float = DEFAULT_STD_FLOOR) -> NormStats:
    return NormStats(stats.mean, np.maximum(stats.std, floor), stats.min, stats.max, stats.count)


def resize_uint8(frame: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) uint8, bilinear with antialiasing when shrinking."""
    x = torch.as_tensor(np.ascontiguousarray(frame)).permute(2, 0, 1)
    if tuple(x.shape[1:]) == tuple(size):
        return x.contiguous()
    y = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return y.round_().clamp_(0, 255).to(torch.uint8)


CACHE_DIR_ENV = "ALOHA_CHUNK_CACHE"  # a node-local directory for frame chunks read from an object store
CACHE_BYTES_ENV = "ALOHA_CHUNK_CACHE_BYTES"
_TOTAL = ".total"  # the directory's bytes, kept by every process that writes there (under _LOCK)
_LOCK = ".lock"
_CHUNK_NAME = re.compile(r"[0-9a-f]{64}")  # sha256 of a chunk key: the only files the cache counts or removes
_LOW_WATER = 0.9  # eviction frees down to this share of the bound, so the directory is rescanned only now and then


class ChunkCache:
    """A bounded node-local cache of frame chunks read from an object store: one file per chunk under `directory`,
    at most `max_bytes` in the directory, whichever processes share it (DataLoader workers, the ranks of a node,
    the training and validation loaders). Episodes are immutable, so a chunk's key (episode content hash, camera,
    step) never goes stale. Files are written under a temporary name and renamed, so no reader sees half a chunk.

    Every writer adds its chunk's size to the directory's byte count in `.total` under a file lock; the one that
    takes it past `max_bytes` rescans the directory (the true total, whatever crashed writers left) and removes the
    least recently read chunks (a hit touches its file) until it holds at most 90% of the bound."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int = DEFAULT_CACHE_BYTES):
        if int(max_bytes) <= 0:
            raise ValueError(f"chunk cache size must be > 0 bytes, got {max_bytes}")
        self.dir = Path(directory)
        self.max_bytes = int(max_bytes)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0
        with self._locked():  # a bound smaller than what an earlier run left applies at once
            if self._read_total() > self.max_bytes:
                self._write_total(self._evict())

    @property
    def total_bytes(self) -> int:
        """The directory's bytes, as every process sharing it has counted them."""
        with self._locked():
            return self._read_total()

    def get(self, key: str, fetch: Callable[[], bytes]) -> bytes:
        name = hashlib.sha256(key.encode()).hexdigest()
        path = self.dir / name
        try:
            data = path.read_bytes()
            os.utime(path)  # recently read: evicted last
        except FileNotFoundError:  # never cached, or evicted (perhaps by another process)
            pass
        else:
            self.hits += 1
            return data
        data = fetch()
        self.misses += 1
        if len(data) <= self.max_bytes:
            self._put(name, data)
        return data

    def _put(self, name: str, data: bytes) -> None:
        path = self.dir / name
        tmp = self.dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(data)
        with self._locked():
            total = self._read_total()  # before the rename: a first count scans the directory
            if not path.exists():  # else another process cached the same chunk meanwhile: counted once
                total += len(data)
            os.replace(tmp, path)
            self._write_total(self._evict() if total > self.max_bytes else total)

    @contextlib.contextmanager
    def _locked(self):
        with open(self.dir / _LOCK, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_total(self) -> int:
        try:
            return int((self.dir / _TOTAL).read_text())
        except (FileNotFoundError, ValueError):  # a new directory, or one an older version filled: count it
            return sum(size for _, size, _ in self._chunks())

    def _write_total(self, total: int) -> None:
        tmp = self.dir / f"{_TOTAL}.{os.getpid()}"
        tmp.write_text(str(total))
        os.replace(tmp, self.dir / _TOTAL)

    def _chunks(self) -> list[tuple[float, int, str]]:
        """(last read, size, name) of every cached chunk: files named by a chunk key's sha256 only, so a directory
        that also holds other files (a user's) never has them counted or evicted."""
        out = []
        for e in os.scandir(self.dir):
            if _CHUNK_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False):
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, st.st_size, e.name))
        return out

    def _evict(self) -> int:
        """Remove the least recently read chunks until the directory holds at most the low-water mark; its bytes."""
        chunks = sorted(self._chunks())
        total = sum(size for _, size, _ in chunks)
        for _, size, name in chunks:
            if total <= self.max_bytes * _LOW_WATER:
                break
            (self.dir / name).unlink(missing_ok=True)
            total -= size
        return total


@dataclass(frozen=True)
class EpisodeSource:
    """Where a dataset's episodes are read: the dataset's own store (None), or an object-store root URL, with a
    node-local chunk cache. The manifest and statistics stay with the dataset directory."""

    store_url: str | None = None
    cache_dir: Path | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES

    @classmethod
    def from_env(cls) -> "EpisodeSource":
        """$ALOHA_STORE when it is an object-store URL (as in a training pod), else the store the dataset names (see
        `assets_store.dataset.dataset_episodes_url`); the cache from $ALOHA_CHUNK_CACHE (a directory) and
        $ALOHA_CHUNK_CACHE_BYTES."""
        url = os.environ.get(STORE_ENV, "")
        cache = os.environ.get(CACHE_DIR_ENV)
        size = os.environ.get(CACHE_BYTES_ENV) or DEFAULT_CACHE_BYTES
        try:
            size = int(size)
        except ValueError:
            raise ValueError(f"${CACHE_BYTES_ENV}: expected a number of bytes, got {size!r}") from None
        return cls(url if is_remote_root(url) else None, Path(cache) if cache else None, size)

    def with_cache(self, directory: str | os.PathLike | None, max_bytes: int | None) -> "EpisodeSource":
        """This source with the chunk cache a training config names (`chunk_cache_dir`, `chunk_cache_bytes`); what
        is left empty stays as the environment set it."""
        return replace(self, cache_dir=Path(directory) if directory else self.cache_dir,
                       cache_bytes=int(max_bytes) if max_bytes else self.cache_bytes)


class ChunkDataset(Dataset):
    """Samples of one split. Item: images (N, 3, H, W) uint8, qpos (J,), actions (k, A), is_pad (k,) bool, and for
    a dataset with padded actions action_mask (A,) bool (False: padded, not the episode's own)."""

    def __init__(
        self,
        dataset_dir: Path,
        split: str = "train",
        *,
        chunk_size: int,
        image_size: tuple[int, int],
        camera_names: list[str] | None = None,
        max_open_episodes: int | None = None,  # None: one reader per episode (a few KB each, no open files)
        base_smoothing_window: int = 1,  # Mobile ALOHA: smooth recorded base velocities (model.base_actions)
        source: EpisodeSource | None = None,  # None: EpisodeSource.from_env()
    ):
        # A dataset directory, or its URL in an object store (<store URL>/datasets/<id>).
        self.dataset_dir = path_or_url(dataset_dir)
        self.manifest, stats = load_dataset(self.dataset_dir)
        self.stats = {k: floored(v) for k, v in stats.items()}
        refs = {"train": self.manifest.train, "val": self.manifest.val, "all": self.manifest.episodes}[split]
        self.split = split
        self.chunk_size = int(chunk_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.camera_names = list(camera_names or self.manifest.camera_names)
        source = EpisodeSource.from_env() if source is None else source
        # A dataset read from a bucket takes its episodes from its own store; a local one from $ALOHA_STORE's bucket
        # when that is set (a training pod), else from where it records them.
        own = dataset_episodes_url(self.dataset_dir)
        if own and (not source.store_url or is_remote_root(str(self.dataset_dir))):
            source = replace(source, store_url=own)
        if source.store_url:
            remote = RemoteStore.at(source.store_url)
            self.paths = [remote.episode_url(r.session, r.episode) for r in refs]
        else:
            layout = StoreLayout.of_dataset(self.dataset_dir)
            self.paths = [str(r.path(layout)) for r in refs]
        self.hashes = [r.content_hash for r in refs]
        # An entry with a span (a rollout's takeover) contributes only those steps: its samples, and the actions of
        # their chunks, never reach past them into the policy's steps.
        self.spans = [r.span for r in refs]
        self.offsets = [0 if span is None else span[0] for span in self.spans]
        self.source = source
        self._cache: ChunkCache | None = None
        self.max_open = max_open_episodes or max(1, len(self.paths))
        self._readers: OrderedDict[int, EpisodeReader] = OrderedDict()
        self._pid = os.getpid()  # whose readers `_readers` holds

        self.groups = self.manifest.sampling_groups
        group_index = {session: i for i, g in enumerate(self.groups) for session in g.sessions}
        self.has_padding = any(g.padded_actions for g in self.groups)
        target_actions = list(self.manifest.action_names or self.manifest.joint_names)
        qpos, action, lengths, tasks, masks, group_of, episode_cameras = [], [], [], set(), [], [], []
        q_stats, a_stats = self.stats["qpos"], self.stats["action"]
        for ref, path, span in zip(refs, self.paths, self.spans):
            r = EpisodeReader(path)
            steps = slice(None) if span is None else slice(*span)
            if r.info.task:
                tasks.add(r.info.task)
            # the episode's own names of the cameras (a co-trained group may name one differently)
            group = self.groups[group_index[ref.session]]
            cams = [group.source_camera(c) for c in self.camera_names]
            missing = sorted(set(cams) - set(r.camera_names))
            if missing:
                raise ValueError(f"{path}: cameras {missing} missing (has {r.camera_names})")
            episode_cameras.append(cams)
            qpos.append(q_stats.normalize(r.qpos[steps]).astype(np.float32))
            actions = smooth_base_actions(r.action, r.info.action_names, base_smoothing_window)[steps]
            if self.manifest.groups:  # the target's columns by name; padded ones 0 (normalized like the recipe's)
                masks.append([c >= 0 for c in action_columns(r.info.action_names, target_actions)])
                actions = conform_actions(actions, r.info.action_names, target_actions)
            action.append(a_stats.normalize(actions).astype(np.float32))
            lengths.append(len(actions))
            group_of.append(group_index[ref.session])
        self.tasks = sorted(tasks)  # what the episodes say they demonstrate (a bundle records it)
        self.episode_cameras = episode_cameras  # per episode, its names of self.camera_names
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])  # flat index -> episode by searchsorted
        J = len(q_stats.mean)
        A = len(a_stats.mean)
        self.qpos = np.concatenate(qpos) if qpos else np.zeros((0, J), np.float32)
        self.action = np.concatenate(action) if action else np.zeros((0, A), np.float32)
        self.state_dim, self.action_dim = J, A
        self.action_masks = np.asarray(masks, dtype=bool).reshape(-1, A) if masks else np.ones((len(lengths), A), bool)
        # each group's flat sample indices (what GroupSampler draws from)
        group_of = np.asarray(group_of, dtype=np.int64)
        self.group_samples = [
            np.concatenate([np.arange(self.starts[e], self.starts[e + 1]) for e in np.flatnonzero(group_of == g)]
                           or [np.zeros(0, np.int64)]).astype(np.int64)
            for g in range(len(self.groups))
        ]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        ep = int(np.searchsorted(self.starts, index, side="right") - 1)
        return ep, int(index - self.starts[ep])

    def _reader(self, ep: int) -> EpisodeReader:
        if self._pid != os.getpid():  # a forked DataLoader worker: object-store clients are not fork-safe
            self._readers, self._cache, self._pid = OrderedDict(), None, os.getpid()
        r = self._readers.pop(ep, None)
        if r is None:
            r = EpisodeReader(self.paths[ep])
            if len(self._readers) >= self.max_open:
                self._readers.popitem(last=False)
        self._readers[ep] = r
        return r

    def lowdim(self, index: int):
        ep, t = self.locate(index)
        start, n = int(self.starts[ep]), int(self.lengths[ep])
        k = self.chunk_size
        take = min(k, n - t)
        actions = np.zeros((k, self.action_dim), np.float32)
        actions[:take] = self.action[start + t : start + t + take]
        is_pad = np.ones(k, dtype=bool)
        is_pad[:take] = False
        return ep, t, torch.from_numpy(self.qpos[start + t].copy()), torch.from_numpy(actions), torch.from_numpy(is_pad)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ep, t, qpos, actions, is_pad = self.lowdim(int(index))
        r = self._reader(ep)
        t += self.offsets[ep]  # the episode's own step (a span starts inside it)
        images = torch.stack([resize_uint8(self._frame(ep, r, cam, t), self.image_size)
                              for cam in self.episode_cameras[ep]])
        item = {"images": images, "qpos": qpos, "actions": actions, "is_pad": is_pad}
        if self.has_padding:
            item["action_mask"] = torch.from_numpy(self.action_masks[ep].copy())
        return item

    def _frame(self, ep: int, r: EpisodeReader, cam: str, t: int) -> np.ndarray:
        if self.source.cache_dir is None or not r.has_frame_chunks(cam):
            return r.frame(cam, t)
        if self._cache is None:  # opened in the process that reads (each DataLoader worker its own)
            self._cache = ChunkCache(self.source.cache_dir, self.source.cache_bytes)
        data = self._cache.get(f"{self.hashes[ep]}/{cam}/{t}", lambda: r.frame_bytes(cam, t))
        return r.decode_frame(cam, t, data)

    def __getstate__(self):  # workers open their own readers and cache index
        d = dict(self.__dict__)
        d["_readers"] = OrderedDict()
        d["_cache"] = None
        return d


class ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch, one shard per rank) that can start mid-epoch."""

    def __init__(self, dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip = 0

    def start_at(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self):
        it = list(super().__iter__())[self.skip :]
        self.skip = 0  # only the first (resumed) pass skips
        return iter(it)


class GroupSampler(torch.utils.data.Sampler[int]):
    """A co-trained dataset's sample order: each sample picks a group with probability weight / sum(weights), then
    the next sample of that group's own shuffled cycle (every sample of a group is seen before one repeats).

    An epoch is as long as the dataset; its order is a pure function of (seed, epoch), so a resume (`start_at`) and
    every DDP rank (one stride of the epoch's order each, like DistributedSampler) replay it exactly. It holds one
    epoch of indices, as DistributedSampler does; frames stay with the dataset's bounded readers and chunk cache.
    """

    def __init__(self, group_samples: list[np.ndarray], weights: list[float], *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, names: list[str] | None = None):
        if len(group_samples) != len(weights):
            raise ValueError(f"{len(group_samples)} groups but {len(weights)} weights")
        names = names or [str(i) for i in range(len(weights))]
        empty = [n for n, s, w in zip(names, group_samples, weights) if w > 0 and len(s) == 0]
        if empty:
            raise ValueError(f"groups {empty} have a sampling weight but no training samples")
        self.groups = [torch.as_tensor(s, dtype=torch.int64) for s in group_samples]
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.total = sum(len(s) for s in group_samples)
        self.num_samples = math.ceil(self.total / num_replicas)
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start_at(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = int(skip)

    def __len__(self) -> int:
        return self.num_samples

    def epoch_order(self) -> torch.Tensor:
        """Every rank's samples of this epoch, interleaved (rank r takes positions r, r + world, ...)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = self.num_samples * self.num_replicas
        choice = torch.multinomial(self.weights, n, replacement=True, generator=g)
        order = torch.empty(n, dtype=torch.int64)
        for i, samples in enumerate(self.groups):
            at = torch.nonzero(choice == i).flatten()
            if len(at):
                cycles = math.ceil(len(at) / len(samples))
                perm = torch.cat([torch.randperm(len(samples), generator=g) for _ in range(cycles)])[: len(at)]
                order[at] = samples[perm]
        return order

    def __iter__(self):
        it = self.epoch_order()[self.rank :: self.num_replicas].tolist()[self.skip :]
        self.skip = 0  # only the first (resumed) pass skips
        return iter(it)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decode workers: one thread each, leave the cores to the training step


def make_loader(dataset, batch_size: int, *, sampler=None, num_workers: int = 0, seed: int = 0,
                drop_last: bool = True, persistent: bool = True) -> DataLoader:
    # Own generator: creating a loader iterator then never consumes the global torch RNG (exact resume).
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=gen,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=persistent and num_workers > 0,
        prefetch_factor=4 if num_workers else None,
    )


def fixed_subset(n: int, count: int | None) -> list[int]:
    """Evenly spaced indices: a validation sample that is the same on every call and every rank."""
    if count is None or count >= n:
        return list(range(n))
    return np.linspace(0, n - 1, count).round().astype(int).tolist()
