"""Covering recording seeds: distinct, reproducible, outside the held-out range, and without the gaps of seed + i."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.sim import covering_seeds, get_task, heldout_seeds
from hardware.sim.placements import HELDOUT_SEED_BASE, placement_xy


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


def test_covering_seeds_skip_recorded_ones_and_fill_their_gaps():
    from hardware.sim.placements import lowest_unused_seeds

    task = get_task("transfer_cube")
    recorded = covering_seeds(task, 20)
    more = covering_seeds(task, 20, recorded=recorded)
    assert len(set(more)) == 20 and not set(more) & set(recorded)
    # the new placements go where the recorded ones left room, not next to them
    filled = _nearest_demo_distances(task, recorded + more)
    plain = _nearest_demo_distances(task, recorded + lowest_unused_seeds(20, recorded))
    assert np.quantile(filled, 0.9) < 0.95 * np.quantile(plain, 0.9)
    assert covering_seeds(task, 20, recorded=[]) == recorded  # nothing recorded: the same seeds as before


def _episode(layout, session: str, index: int, robot: str, seed) -> None:
    from assets_store import EpisodeInfo, EpisodeWriter

    info = EpisodeInfo(robot=robot, joint_names=["j0"], fps=50.0, cameras=[], extra={"seed": seed})
    with EpisodeWriter(layout, session, info, index=index, workers=1) as w:
        for t in range(2):
            w.add_step(np.zeros(1, np.float32), np.zeros(1, np.float32), 0.02 * t)


def test_a_new_session_takes_seeds_the_store_has_not_recorded(layout):
    from hardware.sim.placements import recorded_seeds, session_seeds

    _episode(layout, "a", 0, "sim-transfer-cube", 0)
    _episode(layout, "a", 1, "sim-transfer-cube", 1)
    _episode(layout, "b", 0, "sim-transfer-cube", 3)
    _episode(layout, "b", 1, "sim-insertion", 2)  # another task: its seed 2 is another scene
    _episode(layout, "b", 2, "sim-transfer-cube", None)
    broken = layout.session_dir("b") / "episode_000009.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")  # unreadable: left out, never fatal
    assert recorded_seeds(layout, "sim-transfer-cube") == {0, 1, 3}

    seeds, note = session_seeds(layout, "transfer_cube", 3)
    assert seeds == [2, 4, 5]
    assert "2, 4, 5" in note and "3 seed(s) already recorded for sim-transfer-cube" in note
    assert session_seeds(layout, "insertion", 2)[0] == [0, 1]
    covering, _ = session_seeds(layout, "transfer_cube", 4, covering=True)
    assert len(covering) == 4 and not set(covering) & {0, 1, 3} and max(covering) < HELDOUT_SEED_BASE
    assert session_seeds(layout, "transfer_cube", 2, first_seed=7) == (None, "seeds: 7 + episode index (--seed)")


def test_aloha_record_defaults_to_unused_seeds_and_says_which(layout):
    from typer.testing import CliRunner

    from assets_store import EpisodeReader, SessionIndex
    from pipeline.cli.app import build_app

    def record(session: str, *extra: str) -> tuple[list[int], str]:
        res = CliRunner().invoke(build_app(), [
            "record", "--robot", "sim-transfer-cube", "--session", session, "--episodes", "2", "--episode-len", "3",
            "--cameras", "none", "--store", str(layout.root), *extra])
        assert res.exit_code == 0, res.output
        seeds = [EpisodeReader(e.path).attrs["extra"]["seed"] for e in SessionIndex(layout, session).episodes()]
        return seeds, res.output

    first, out = record("one")
    assert first == [0, 1] and "seeds: 0, 1" in out
    second, out = record("two")
    assert second == [2, 3] and "seeds: 2, 3" in out and "2 seed(s) already recorded" in out
    covering, out = record("three", "--placements", "covering")
    assert not set(covering) & {0, 1, 2, 3} and "covering placements" in out
    explicit, _ = record("four", "--seed", "0")  # an explicit --seed is taken as given
    assert explicit == [0, 1]


def test_the_demo_records_unused_seeds_and_a_fresh_store_gets_the_measured_set(layout):
    from hardware.sim import covering_seeds
    from pipeline.demo import DEMO_TASK, DemoOptions, demo_seeds

    fresh, _ = demo_seeds(layout, DemoOptions(episodes=6))
    assert fresh == covering_seeds(DEMO_TASK, 6, first_seed=0)  # what the README's measurements recorded
    for i, seed in enumerate(fresh[:3]):
        _episode(layout, "demo-1", i, "sim-transfer-cube", seed)
    second, note = demo_seeds(layout, DemoOptions(episodes=6))
    assert not set(second) & set(fresh[:3]) and "3 seed(s) already recorded" in note
    assert demo_seeds(layout, DemoOptions(episodes=3, placements="random"))[0] == sorted(
        set(range(6)) - set(fresh[:3]))[:3]


def test_the_seed_line_stays_one_line():
    from hardware.sim.placements import describe_seeds

    assert describe_seeds([3, 4, 5, 6]) == "3..6" and describe_seeds([2, 4, 5]) == "2, 4, 5"
    assert describe_seeds(list(range(0, 100, 2))) == "0, 2, 4, 6, 8, 10, ... (50 seeds)"
