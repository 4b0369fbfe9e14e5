"""Normalization statistics merged from per-episode partial sums: adding an episode costs O(1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

DEFAULT_STD_FLOOR = 1e-2  # ACT's floor: a joint that never moves must not blow up normalization


@dataclass
class PartialStats:
    """Sufficient statistics of one (T, D) array, per dimension (float64 sums)."""

    count: int
    sum: np.ndarray
    sumsq: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def of(cls, data: np.ndarray) -> "PartialStats":
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"expected a non-empty (T, D) array, got shape {x.shape}")
        return cls(len(x), x.sum(0), np.square(x).sum(0), x.min(0), x.max(0))

    def merge(self, other: "PartialStats") -> "PartialStats":
        if self.sum.shape != other.sum.shape:
            raise ValueError(f"cannot merge statistics of {self.sum.shape[0]} and {other.sum.shape[0]} dimensions")
        return PartialStats(
            self.count + other.count,
            self.sum + other.sum,
            self.sumsq + other.sumsq,
            np.minimum(self.min, other.min),
            np.maximum(self.max, other.max),
        )

    def select(self, columns: list[int]) -> "PartialStats":
        """These statistics restricted to `columns`, in that order (a co-trained dataset's target actions)."""
        if min(columns, default=0) < 0:
            raise ValueError(f"select: columns must exist, got {columns}")
        return PartialStats(self.count, *(getattr(self, k)[columns] for k in ("sum", "sumsq", "min", "max")))

    def finalize(self, std_floor: float = DEFAULT_STD_FLOOR) -> "NormStats":
        mean = self.sum / self.count
        var = np.maximum(self.sumsq / self.count - np.square(mean), 0.0)
        std = np.maximum(np.sqrt(var), std_floor)
        return NormStats(mean=mean, std=std, min=self.min.copy(), max=self.max.copy(), count=self.count)

    def to_dict(self) -> dict:
        return {
            "count": int(self.count),
            **{k: getattr(self, k).tolist() for k in ("sum", "sumsq", "min", "max")},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "PartialStats":
        return cls(int(d["count"]), *(np.asarray(d[k], dtype=np.float64) for k in ("sum", "sumsq", "min", "max")))


def merge_all(parts: list[PartialStats]) -> PartialStats:
    if not parts:
        raise ValueError("no statistics to merge")
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p)
    return out


@dataclass
class NormStats:
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    count: int

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean

    def to_dict(self) -> dict:
        return {"count": int(self.count), **{k: np.asarray(getattr(self, k)).tolist() for k in ("mean", "std", "min", "max")}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "NormStats":
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("mean", "std", "min", "max")), count=int(d["count"]))


# Keys of the statistics that travel with datasets, checkpoints and bundles.
STATS_KEYS = {"qpos": "observations/qpos", "action": "action"}


def episode_partial_stats(qpos: np.ndarray, action: np.ndarray) -> dict[str, PartialStats]:
    return {"qpos": PartialStats.of(qpos), "action": PartialStats.of(action)}


def dataset_stats(partials: list[Mapping[str, PartialStats]], std_floor: float = DEFAULT_STD_FLOOR) -> dict[str, NormStats]:
    return {key: merge_all([p[key] for p in partials]).finalize(std_floor) for key in STATS_KEYS}


def stats_to_json(stats: Mapping[str, NormStats]) -> dict:
    return {k: v.to_dict() for k, v in stats.items()}


def stats_from_json(d: Mapping) -> dict[str, NormStats]:
    return {k: NormStats.from_dict(v) for k, v in d.items()}
