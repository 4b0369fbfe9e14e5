"""Mobile ALOHA's HDF5 layout (/action 14-D + /base_action 2-D, 3 JPEG-compressed cameras) <-> 16-D episodes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader
from assets_store.errors import EpisodeError
from assets_store.hdf5 import export_hdf5, import_hdf5_file
from hdf5_kit import write_aloha_hdf5

CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
STEPS = 12


def write_mobile_hdf5(path, steps=STEPS):
    """As Mobile ALOHA's record_episodes.py writes it, with float32-exact values so a round trip can be exact."""
    write_aloha_hdf5(path, steps=steps, cams=CAMS, hw=(24, 32), sim=False, effort=True, compress=True)
    rng = np.random.default_rng(7)
    with h5py.File(path, "a") as f:
        for name in ("observations/qpos", "observations/qvel", "observations/effort", "action"):
            data = f[name][()].astype(np.float32)
            del f[name]
            f.create_dataset(name, data=data)
        f.create_dataset("base_action", data=rng.uniform(-0.5, 0.5, size=(steps, 2)).astype(np.float32))


def low_dim(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in ("observations/qpos", "observations/qvel", "observations/effort",
                                               "action", "base_action")}


def test_import_gives_16d_episodes_and_export_writes_the_layout_back_exactly(layout, tmp_path):
    source = tmp_path / "episode_0.hdf5"
    write_mobile_hdf5(source)
    episode = import_hdf5_file(layout, "mobile", source)
    reader = EpisodeReader(episode)
    original = low_dim(source)
    assert reader.action.shape == (STEPS, 16) and reader.info.robot == "mobile-aloha"
    assert reader.info.action_names[-2:] == ["base_linear_vel", "base_angular_vel"]
    assert np.array_equal(reader.action[:, 14:], original["base_action"])
    assert reader.camera_names == list(CAMS)

    out = export_hdf5(episode, tmp_path / "out" / "episode_0.hdf5")
    back = low_dim(out)
    for name, data in original.items():
        assert back[name].shape == data.shape and np.array_equal(back[name], data), name


def test_static_episodes_export_without_base_action(layout, tmp_path):
    source = tmp_path / "static.hdf5"
    write_aloha_hdf5(source, steps=5, cams=())
    out = export_hdf5(import_hdf5_file(layout, "static", source), tmp_path / "static_out.hdf5")
    with h5py.File(out, "r") as f:
        assert "base_action" not in f and f["action"].shape == (5, 14)


def test_a_base_action_of_the_wrong_shape_names_the_file_and_dataset(layout, tmp_path):
    source = tmp_path / "bad.hdf5"
    write_mobile_hdf5(source)
    with h5py.File(source, "a") as f:
        del f["base_action"]
        f.create_dataset("base_action", data=np.zeros((STEPS, 3), np.float32))
    with pytest.raises(EpisodeError, match=r"/base_action.*expected \(12, 2\)") as err:
        import_hdf5_file(layout, "bad", source)
    assert str(source) in str(err.value)
    assert not layout.session_dir("bad").exists() or not list(layout.session_dir("bad").glob("episode_*.zarr"))


def test_cli_round_trip(layout, tmp_path):
    from pipeline.cli.app import build_app

    source = tmp_path / "episode_3.hdf5"
    write_mobile_hdf5(source)
    runner = CliRunner()
    result = runner.invoke(build_app(), ["import-hdf5", str(source), "--session", "m", "--store", str(layout.root)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(build_app(), ["export-hdf5", "m/0", "--out", str(tmp_path / "x"), "--store", str(layout.root)])
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "x").glob("*.hdf5")
    assert all(np.array_equal(a, b) for a, b in zip(low_dim(source).values(), low_dim(out).values()))


def test_base_velocity_check_against_limits(layout, tmp_path):
    from assets_store.checks import base_velocity, CheckSettings
    from assets_store.episode_reader import EpisodeArrays

    source = tmp_path / "fast.hdf5"
    write_mobile_hdf5(source)
    ok = import_hdf5_file(layout, "limits", source)
    assert base_velocity(EpisodeArrays(ok)).passed  # +-0.5 within the default 1.6 m/s, 2.0 rad/s
    with h5py.File(source, "a") as f:
        f["base_action"][3, 0] = 2.5  # faster than any Tracer command
    fast = import_hdf5_file(layout, "limits", source)
    result = base_velocity(EpisodeArrays(fast))
    assert not result.passed and "base_linear_vel reaches 2.500, limit 1.600" in result.detail
    assert base_velocity(EpisodeArrays(fast), CheckSettings(base_limits=(3.0, 2.0))).passed
    static = import_hdf5_file(layout, "limits", _static(tmp_path))
    assert base_velocity(EpisodeArrays(static)).detail == "no mobile base"


def _static(tmp_path):
    path = tmp_path / "static_for_check.hdf5"
    write_aloha_hdf5(path, steps=4, cams=())
    return path
