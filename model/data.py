"""Training samples from a store dataset (manifest + stats): one timestep, its images and the next `chunk` actions.

Memory stays bounded whatever the number of episodes: the low-dimensional arrays (a few floats per step) live in
RAM; camera frames are read and JPEG-decoded on demand in DataLoader workers, each keeping only a small LRU of open
episode readers. A sample index is a flat (episode, timestep) position, so a sample is a pure function of its index
and the sampler alone decides the order (exact resume, DDP sharding).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from assets_store import EpisodeReader, StoreLayout
from assets_store.dataset import load_dataset
from assets_store.stats import DEFAULT_STD_FLOOR, NormStats
from model.base_actions import smooth_base_actions


def floored(stats: NormStats, floor: float = DEFAULT_STD_FLOOR) -> NormStats:
    return NormStats(stats.mean, np.maximum(stats.std, floor), stats.min, stats.max, stats.count)


def resize_uint8(frame: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) uint8, bilinear with antialiasing when shrinking."""
    x = torch.as_tensor(np.ascontiguousarray(frame)).permute(2, 0, 1)
    if tuple(x.shape[1:]) == tuple(size):
        return x.contiguous()
    y = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return y.round_().clamp_(0, 255).to(torch.uint8)


class ChunkDataset(Dataset):
    """Samples of one split. Item: images (N, 3, H, W) uint8, qpos (J,), actions (k, A), is_pad (k,) bool."""

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
    ):
        self.dataset_dir = Path(dataset_dir)
        self.manifest, stats = load_dataset(self.dataset_dir)
        self.stats = {k: floored(v) for k, v in stats.items()}
        self.layout = StoreLayout.of_dataset(self.dataset_dir)
        refs = {"train": self.manifest.train, "val": self.manifest.val, "all": self.manifest.episodes}[split]
        self.split = split
        self.chunk_size = int(chunk_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.camera_names = list(camera_names or self.manifest.camera_names)
        self.paths = [str(r.path(self.layout)) for r in refs]
        self.max_open = max_open_episodes or max(1, len(self.paths))
        self._readers: OrderedDict[int, EpisodeReader] = OrderedDict()

        qpos, action, lengths, tasks = [], [], [], set()
        q_stats, a_stats = self.stats["qpos"], self.stats["action"]
        for path in self.paths:
            r = EpisodeReader(path)
            if r.info.task:
                tasks.add(r.info.task)
            missing = sorted(set(self.camera_names) - set(r.camera_names))
            if missing:
                raise ValueError(f"{path}: cameras {missing} missing (has {r.camera_names})")
            qpos.append(q_stats.normalize(r.qpos).astype(np.float32))
            actions = smooth_base_actions(r.action, r.info.action_names, base_smoothing_window)
            action.append(a_stats.normalize(actions).astype(np.float32))
            lengths.append(len(r))
        self.tasks = sorted(tasks)  # what the episodes say they demonstrate (a bundle records it)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])  # flat index -> episode by searchsorted
        J = len(q_stats.mean)
        A = len(a_stats.mean)
        self.qpos = np.concatenate(qpos) if qpos else np.zeros((0, J), np.float32)
        self.action = np.concatenate(action) if action else np.zeros((0, A), np.float32)
        self.state_dim, self.action_dim = J, A

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        ep = int(np.searchsorted(self.starts, index, side="right") - 1)
        return ep, int(index - self.starts[ep])

    def _reader(self, ep: int) -> EpisodeReader:
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
        images = torch.stack([resize_uint8(r.frame(cam, t), self.image_size) for cam in self.camera_names])
        return {"images": images, "qpos": qpos, "actions": actions, "is_pad": is_pad}

    def __getstate__(self):  # workers open their own readers
        d = dict(self.__dict__)
        d["_readers"] = OrderedDict()
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
