"""Which seeds place the objects: recording seeds that cover the placement range evenly, and held-out seeds.

Seeded random placements leave gaps: 40 of them put a random cube more than 1.8 cm from every demonstration 37% of
the time. On the demo, a trained policy failed about 40% of such placements and 6% of the rest, so recording where
the gaps would be matters more than recording more. `covering_seeds` keeps seeds as the one source of a scene (an
episode still stores only its seed, and `aloha replay` rebuilds it): it picks, from a pool of seeded placements,
the seed nearest each k-means centre of that pool. k-means centres of a uniform sample minimize the mean squared
distance from a random placement to its nearest demonstration.

A new session never repeats a scene the store already holds: `session_seeds` reads the seeds recorded for the
robot (`recorded_seeds`) and takes the lowest unused ones, or covering seeds that fill the gaps the recorded
placements leave.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from assets_store import StoreLayout
from assets_store.episode_reader import read_root_attrs
from assets_store.errors import StoreError
from assets_store.sessions import episode_dirs
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
                   iterations: int = 30, recorded: Iterable[int] = ()) -> list[int]:
    """n distinct seeds from range(first_seed, first_seed + pool) whose placements spread over the whole range.

    Deterministic: Lloyd's k-means starting from the pool's first n placements, then the nearest unused seed to
    each centre. The pool stays below the held-out evaluation seeds, so evaluation never sees a recorded scene.
    `recorded` seeds (scenes the store already holds) are never picked; their placements are centres that stay
    put, so the n new ones go where the recorded ones leave gaps.
    """
    task = get_task(task) if isinstance(task, str) else task
    recorded = set(recorded)
    seeds = range(first_seed, first_seed + pool)
    free = [i for i, seed in enumerate(seeds) if seed not in recorded]
    if not 1 <= n <= len(free):
        raise ValueError(f"covering_seeds: n must be in [1, {len(free)}] (a pool of {pool} seeds, "
                         f"{pool - len(free)} of them recorded already), got {n}")
    if first_seed < 0 or first_seed + pool > HELDOUT_SEED_BASE:
        raise ValueError(f"covering_seeds: seeds {first_seed}..{first_seed + pool - 1} overlap the held-out "
                         f"evaluation seeds from {HELDOUT_SEED_BASE}; expected first_seed + pool <= {HELDOUT_SEED_BASE}")
    points = placement_xy(task, seeds)
    fixed = placement_xy(task, sorted(recorded)) if recorded else points[:0]
    centres = np.concatenate([fixed, points[free[:n]]])
    for _ in range(iterations):
        nearest = _sq_dist(points, centres).argmin(axis=1)
        counts = np.bincount(nearest, minlength=len(centres))
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, points)
        moved = counts > 0  # an empty cluster keeps its centre
        moved[: len(fixed)] = False  # recorded scenes stay where they are
        centres[moved] = sums[moved] / counts[moved, None]
    picked: list[int] = []
    taken = {i for i, seed in enumerate(seeds) if seed in recorded}
    for d in _sq_dist(centres[len(fixed):], points):  # one centre at a time: nearest seed not already taken
        for i in np.argsort(d):
            if int(i) not in taken:
                taken.add(int(i))
                picked.append(seeds[int(i)])
                break
    return picked


def recorded_seeds(layout: StoreLayout, robot: str) -> set[int]:
    """The seeds of every episode `robot` recorded in the store: scenes it already holds.

    Read from each episode's attributes (`extra.seed`); an episode whose attributes cannot be read is left out
    (validation and `aloha episodes list` report it). A seed places a scene only within one task, so other robots'
    episodes do not count.
    """
    seeds: set[int] = set()
    raw = layout.raw_dir
    sessions = sorted(p for p in raw.iterdir() if p.is_dir()) if raw.is_dir() else []
    for session in sessions:
        try:
            episodes = episode_dirs(session)
        except OSError:  # an unreadable session: the others still count
            continue
        for _, path in episodes:
            try:
                attrs = read_root_attrs(path)
            except (StoreError, OSError):
                continue
            extra = attrs.get("extra") if isinstance(attrs, dict) and attrs.get("robot") == robot else None
            seed = extra.get("seed") if isinstance(extra, dict) else None
            if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:  # a valid seed places a scene
                seeds.add(seed)
    return seeds


def lowest_unused_seeds(n: int, recorded: Iterable[int]) -> list[int]:
    """The n lowest seeds from 0 up that are not in `recorded` (all below the held-out evaluation seeds)."""
    recorded = set(recorded)
    out: list[int] = []
    seed = 0
    while len(out) < n:
        if seed not in recorded:
            out.append(seed)
        seed += 1
    if out and out[-1] >= HELDOUT_SEED_BASE:
        raise ValueError(f"no {n} unused recording seeds below the held-out evaluation seeds from {HELDOUT_SEED_BASE}")
    return out


def session_seeds(layout: StoreLayout, task: SimTask | str, n: int, first_seed: int | None = None,
                  covering: bool = False) -> tuple[list[int] | None, str]:
    """Seeds for the n episodes of a new recording run, and a line saying which (what `aloha record` prints).

    `first_seed` None: seeds that no episode of the task's robot in the store used, the lowest ones, or with
    `covering` ones that fill the gaps the recorded placements leave. An explicit `first_seed` keeps its meaning
    (episode i uses first_seed + i: None is returned, the recorder adds the index); covering seeds drawn from it
    still skip recorded ones.
    """
    task = get_task(task) if isinstance(task, str) else task
    if first_seed is not None and not covering:
        return None, f"seeds: {first_seed} + episode index (--seed)"
    recorded = recorded_seeds(layout, task.robot_name)
    if covering:
        seeds = covering_seeds(task, n, first_seed=first_seed or 0, recorded=recorded)
    else:
        seeds = lowest_unused_seeds(n, recorded)
    how = "covering placements" if covering else "lowest unused"
    return seeds, (f"seeds: {describe_seeds(seeds)} ({how}; {len(recorded)} seed(s) already recorded for "
                   f"{task.robot_name} in this store are not reused)")


def describe_seeds(seeds: list[int]) -> str:
    """'12..21' for a run of consecutive seeds, else the list: what `aloha record` prints."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}"
    if len(seeds) > 8:  # covering seeds are scattered: a line, not a screenful (each episode stores its seed)
        return ", ".join(map(str, seeds[:6])) + f", ... ({len(seeds)} seeds)"
    return ", ".join(map(str, seeds))


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
