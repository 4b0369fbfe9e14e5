"""Which seeds place the objects: recording seeds that cover the placement range evenly, and held-out seeds.

Seeded random placements leave gaps: 40 of them put a random cube more than 1.8 cm from every demonstration 37% of
the time. On the demo, a trained policy failed about 40% of such placements and 6% of the rest, so recording where
the gaps would be matters more than recording more. `covering_seeds` keeps seeds as the one source of a scene (an
episode still stores only its seed, and `aloha replay` rebuilds it): it picks, from a pool of seeded placements,
the seed nearest each k-means centre of that pool. k-means centres of a uniform sample minimize the mean squared
distance from a random placement to its nearest demonstration.
"""

from __future__ import annotations

import numpy as np

from hardware.sim.tasks import SimTask, get_task

# Recording uses seeds from 0 upwards (`aloha record --seed`); evaluation draws from a disjoint range.
HELDOUT_SEED_BASE = 1_000_000


def heldout_seeds(n: int, offset: int = 0) -> list[int]:
    """n seeds that recording never uses by default: object placements no training episode has seen."""
    return [HELDOUT_SEED_BASE + offset + i for i in range(n)]


def placement_xy(task: SimTask, seeds: range | list[int]) -> np.ndarray:
    """(len(seeds), 2 * objects): the table-plane position of every object (z and orientation are fixed)."""
    n_obj = len(task.objects)
    poses = np.stack([task.object_poses(s) for s in seeds]).reshape(len(seeds), n_obj, 7)
    return poses[:, :, :2].reshape(len(seeds), 2 * n_obj)


def covering_seeds(task: SimTask | str, n: int, first_seed: int = 0, pool: int = 20_000,
                   iterations: int = 30) -> list[int]:
    """n distinct seeds from range(first_seed, first_seed + pool) whose placements spread over the whole range.

    Deterministic: Lloyd's k-means starting from the pool's first n placements, then the nearest unused seed to
    each centre. The pool stays below the held-out evaluation seeds, so evaluation never sees a recorded scene.
    """
    task = get_task(task) if isinstance(task, str) else task
    if not 1 <= n <= pool:
        raise ValueError(f"covering_seeds: n must be in [1, pool={pool}], got {n}")
    if first_seed < 0 or first_seed + pool > HELDOUT_SEED_BASE:
        raise ValueError(f"covering_seeds: seeds {first_seed}..{first_seed + pool - 1} overlap the held-out "
                         f"evaluation seeds from {HELDOUT_SEED_BASE}; expected first_seed + pool <= {HELDOUT_SEED_BASE}")
    seeds = range(first_seed, first_seed + pool)
    points = placement_xy(task, seeds)
    centres = points[:n].copy()
    for _ in range(iterations):
        nearest = _sq_dist(points, centres).argmin(axis=1)
        counts = np.bincount(nearest, minlength=n)
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, points)
        moved = counts > 0  # an empty cluster keeps its centre
        centres[moved] = sums[moved] / counts[moved, None]
    picked: list[int] = []
    taken: set[int] = set()
    for d in _sq_dist(centres, points):  # one centre at a time: nearest seed not already picked
        for i in np.argsort(d):
            if int(i) not in taken:
                taken.add(int(i))
                picked.append(seeds[int(i)])
                break
    return picked


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
