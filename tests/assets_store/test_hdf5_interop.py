"""Import of original ALOHA HDF5 episodes (files written here with h5py in that layout) and export back."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader, SessionIndex
from assets_store.hdf5 import ALOHA_JOINT_NAMES, export_hdf5, import_hdf5
from pipeline.cli.app import build_app
from hdf5_kit import write_aloha_hdf5


@pytest.mark.parametrize("compress", [False, True])
def test_import_preserves_values(layout, tmp_path, compress):
    src = tmp_path / "episode_0.hdf5"
    qpos, qvel, action, frames = write_aloha_hdf5(src, compress=compress, effort=True)
    report = import_hdf5(layout, "imported", [src])
    assert report.failed == []
    (_, dst), = report.imported
    r = EpisodeReader(dst)
    np.testing.assert_array_equal(r.qpos, qpos.astype(np.float32))
    np.testing.assert_array_equal(r.qvel, qvel.astype(np.float32))
    np.testing.assert_array_equal(r.action, action.astype(np.float32))
    assert r.effort is not None and r.info.joint_names == ALOHA_JOINT_NAMES
    np.testing.assert_allclose(r.timestamps, np.arange(20) / 50.0)
    assert r.info.robot == "sim-aloha" and r.attrs["extra"]["sim"] is True
    for cam, stack in frames.items():
        for t in (0, 19):
            # JPEG loss only (twice for the compressed layout); channel order preserved
            assert np.abs(r.frame(cam, t).astype(int) - stack[t]).mean() < (5 if compress else 3)


def test_bad_files_are_reported_by_name_and_skipped(layout, tmp_path):
    good = tmp_path / "good.hdf5"
    write_aloha_hdf5(good, steps=6)
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"this is not hdf5")
    missing_action = tmp_path / "no_action.hdf5"
    write_aloha_hdf5(missing_action, steps=6)
    with h5py.File(missing_action, "a") as f:
        del f["action"]
    short_action = tmp_path / "short_action.hdf5"
    write_aloha_hdf5(short_action, steps=6)
    with h5py.File(short_action, "a") as f:
        a = f["action"][:3]
        del f["action"]
        f.create_dataset("action", data=a)
    nan_qpos = tmp_path / "nan.hdf5"
    write_aloha_hdf5(nan_qpos, steps=6)
    with h5py.File(nan_qpos, "a") as f:
        f["observations/qpos"][2, 3] = np.nan
    truncated = tmp_path / "truncated.hdf5"
    write_aloha_hdf5(truncated, steps=6)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])

    report = import_hdf5(layout, "mixed", [garbage, missing_action, good, short_action, nan_qpos, truncated])
    assert [s.name for s, _ in report.imported] == ["good.hdf5"]
    reasons = {s.name: why for s, why in report.failed}
    assert "cannot open as HDF5" in reasons["garbage.hdf5"] and str(garbage) in reasons["garbage.hdf5"]
    assert "/action: expected this dataset" in reasons["no_action.hdf5"]
    assert "/action: expected 6 steps" in reasons["short_action.hdf5"]
    assert "/observations/qpos: expected finite values" in reasons["nan.hdf5"]
    assert str(truncated) in reasons["truncated.hdf5"]
    # nothing half-imported: exactly one committed episode, no temporaries
    sdir = layout.session_dir("mixed")
    assert sorted(p.name for p in sdir.iterdir()) == ["episode_000000.zarr"]


def test_export_then_reimport_round_trip(layout, tmp_path):
    src = tmp_path / "orig.hdf5"
    qpos, _, action, frames = write_aloha_hdf5(src, steps=12, cams=("top",), sim=False)
    (_, ep), = import_hdf5(layout, "s", [src]).imported
    out = export_hdf5(ep, tmp_path / "out" / "episode_0.hdf5")
    with h5py.File(out, "r") as f:
        assert f.attrs["sim"] == False  # noqa: E712
        np.testing.assert_array_equal(f["/observations/qpos"][:], qpos.astype(np.float32))
        np.testing.assert_array_equal(f["/action"][:], action.astype(np.float32))
        assert f["/observations/images/top"].shape == (12, 48, 64, 3)
        assert f["/observations/qvel"].shape == (12, 14)
        exported_frame = f["/observations/images/top"][5]
    np.testing.assert_array_equal(exported_frame, EpisodeReader(ep).frame("top", 5))
    (_, again), = import_hdf5(layout, "s2", [out]).imported
    np.testing.assert_array_equal(EpisodeReader(again).qpos, EpisodeReader(ep).qpos)


def test_cli_import_list_show_export(layout, tmp_path):
    files = []
    for i in range(2):
        files.append(tmp_path / f"episode_{i}.hdf5")
        write_aloha_hdf5(files[-1], steps=8 + i, cams=("top",))
    (tmp_path / "broken.hdf5").write_bytes(b"nope")
    runner = CliRunner()
    app = build_app()
    res = runner.invoke(app, ["import-hdf5", *map(str, files), str(tmp_path / "broken.hdf5"),
                              "--session", "lab1", "--store", str(layout.root)])
    assert res.exit_code == 2, res.output  # partial success is not silent
    assert "2 imported, 1 skipped" in res.output
    assert [e.num_steps for e in SessionIndex(layout, "lab1").episodes()] == [8, 9]

    res = runner.invoke(app, ["episodes", "list", "--store", str(layout.root)])
    assert res.exit_code == 0 and "lab1" in res.output and "episode_000001.zarr" in res.output

    res = runner.invoke(app, ["episodes", "show", "lab1/1"])  # store from $ALOHA_STORE
    assert res.exit_code == 0, res.output
    assert "9  (0.18 s at 50 Hz)" in res.output and "camera top" in res.output

    res = runner.invoke(app, ["export-hdf5", "lab1/0", "--out", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "exp" / "episode_000000.hdf5").is_file()

    res = runner.invoke(app, ["import-hdf5", str(files[0]), "--session", "../escape"])
    assert res.exit_code == 1 and "invalid session name" in res.output
