"""Covering recording seeds: distinct, reproducible, outside the held-out range, and without the gaps of seed + i."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.sim import covering_seeds, get_task, heldout_seeds
from hardware.sim.placements import placement_xy


def _nearest_demo_distances(task, recorded: list[int]) -> np.ndarray:
    """For 1,000 held-out placements: the distance to the nearest recorded placement (metres)."""
    test = placement_xy(task, heldout_seeds(1000))
    demo = placement_xy(task, recorded)
    return np.sqrt(((test[:, None, :] - demo[None, :, :]) ** 2).sum(-1)).min(axis=1)


def test_covering_seeds_leave_no_gaps_where_seed_plus_i_does():
    task = get_task("transfer_cube")
    seeds = covering_seeds(task, 40)
    assert len(set(seeds)) == 40 and all(0 <= s < 20_000 for s in seeds)
    assert seeds == covering_seeds("transfer_cube", 40)  # deterministic: a demo is reproducible
    covering, plain = _nearest_demo_distances(task, seeds), _nearest_demo_distances(task, list(range(40)))
    # seeds 0..39 leave placements 5.4 cm from any demonstration; covering ones stay under 2.5 cm
    assert covering.max() < 0.025 < plain.max()
    assert np.quantile(covering, 0.9) < 0.8 * np.quantile(plain, 0.9)
    # every placement lies inside the task's sampling range
    xy = placement_xy(task, seeds)
    assert np.all((xy[:, 0] >= 0.0) & (xy[:, 0] <= 0.2) & (xy[:, 1] >= 0.4) & (xy[:, 1] <= 0.6))


def test_covering_seeds_span_every_object_of_a_task():
    task = get_task("insertion")  # peg and socket: a 4-D placement
    seeds = covering_seeds(task, 12, first_seed=500, pool=2_000)
    assert len(set(seeds)) == 12 and all(500 <= s < 2_500 for s in seeds)
    assert placement_xy(task, seeds).shape == (12, 4)


def test_covering_seeds_refuse_the_heldout_range_and_bad_counts():
    with pytest.raises(ValueError, match="overlap the held-out evaluation seeds"):
        covering_seeds("transfer_cube", 5, first_seed=995_000, pool=10_000)
    with pytest.raises(ValueError, match="n must be in"):
        covering_seeds("transfer_cube", 0)
