"""`aloha record` end to end on the simulator, then `aloha replay` and `aloha view` on what it wrote."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader, SessionIndex, is_session_finalized
from pipeline.cli.app import build_app
from hardware.sim import get_task, plan_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = runner.invoke(build_app(), [
        "record", "--robot", "sim-transfer-cube", "--session", "demo", "--episodes", "2",
        "--resolution", "32x48", "--cameras", "top", "--seed", "40", "--store", str(store),
    ])
    assert result.exit_code == 0, result.output
    return store, result.output


def test_record_writes_valid_episodes_with_demonstrator_actions(recorded):
    store, output = recorded
    from assets_store import StoreLayout

    layout = StoreLayout(store)
    eps = SessionIndex(layout, "demo").episodes()
    assert [e.index for e in eps] == [0, 1]
    assert is_session_finalized(layout.session_dir("demo"))
    assert "session finalized" in output and "keyboard controls off" in output
    task = get_task("transfer_cube")
    for e in eps:
        r = EpisodeReader(e.path)
        assert r.fps == 50.0 and len(r) == 400 and r.info.robot == "sim-transfer-cube"
        assert r.qpos.shape == (400, 14) and r.action.shape == (400, 14) and r.qvel.shape == (400, 14)
        assert r.camera_names == ["top"]
        assert r.frames("top").shape == (400, 32, 48, 3)
        assert np.allclose(np.diff(r.timestamps), 0.02)  # virtual 50 Hz clock in --fast mode
        seed = 40 + e.index
        assert r.attrs["extra"]["seed"] == seed and r.attrs["outcome"]["success"] is True
        assert r.attrs["counters"]["late_steps"] == 0 and r.attrs["counters"]["dropped_frames"] == 0
        # the label is exactly what the demonstrator commanded for that seed's scene
        np.testing.assert_array_equal(r.action, plan_demo(task, task.object_poses(seed)).actions)
        assert not np.allclose(r.action, r.qpos, atol=1e-3)


def test_replay_succeeds_again(recorded):
    store, _ = recorded
    result = runner.invoke(build_app(), ["replay", "demo/0", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "success" in result.output and "(seed 40)" in result.output


def test_view_writes_video_and_plot(recorded, tmp_path):
    store, _ = recorded
    result = runner.invoke(build_app(), ["view", "demo/1", "--out", str(tmp_path), "--store", str(store)])
    assert result.exit_code == 0, result.output
    mp4, png = tmp_path / "episode_000001.mp4", tmp_path / "episode_000001.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import imageio.v3 as iio

    frames = iio.imread(mp4)
    assert frames.shape == (400, 32, 48, 3)


def test_finalized_session_refuses_more_and_bad_input_is_reported(recorded):
    store, _ = recorded
    app = build_app()
    again = runner.invoke(app, ["record", "--robot", "sim-transfer-cube", "--session", "demo", "--episodes", "1",
                                "--resolution", "32x48", "--store", str(store)])
    assert again.exit_code == 1 and "finalized" in again.output
    bad = runner.invoke(app, ["record", "--robot", "nope", "--session", "x", "--store", str(store)])
    assert bad.exit_code == 1 and "unknown robot" in bad.output
    res = runner.invoke(app, ["record", "--robot", "sim-insertion", "--session", "x", "--resolution", "big",
                              "--store", str(store)])
    assert res.exit_code == 2
    missing = runner.invoke(app, ["view", "demo/7", "--store", str(store)])
    assert missing.exit_code == 1 and "no episode" in missing.output


def test_covering_placements_record_the_covering_seeds(tmp_path):
    from hardware.sim import covering_seeds

    result = runner.invoke(build_app(), [
        "record", "--robot", "sim-transfer-cube", "--session", "cover", "--episodes", "2", "--episode-len", "20",
        "--cameras", "none", "--seed", "7", "--placements", "covering", "--store", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    from assets_store import StoreLayout

    stored = [EpisodeReader(e.path).attrs["extra"]["seed"] for e in SessionIndex(StoreLayout(tmp_path), "cover").episodes()]
    assert stored == covering_seeds("transfer_cube", 2, first_seed=7) and stored != [7, 8]
