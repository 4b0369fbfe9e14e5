"""A second adversarial pass over the verbs: user files kept, damage caught, one error line instead of a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assets_store import StoreLayout
from assets_store.bundle import seal_bundle
from assets_store.errors import BundleIntegrityError
from assets_store.recovery import sweep_session
from bundle_kit import tiny_sim_bundle
from pipeline.cli.app import build_app
from pipeline_kit import check_one, corrupt_frame, make_session

runner = CliRunner()


def run(*args: str):
    return runner.invoke(build_app(), list(args))


def one_error_line(output: str) -> None:
    assert "Traceback" not in output
    assert sum(line.startswith("error:") for line in output.splitlines()) == 1, output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_sim_bundle(tmp_path_factory.mktemp("bundle") / "b", ["top"])


# ---------------------------------------------------------------------------------------------- never delete
def test_recovery_keeps_a_users_folder_that_merely_starts_like_a_temp_dir(layout):
    make_session(layout, "s1", 1, finalize=False)
    mine = layout.session_dir("s1") / ".tmp-mybackup"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    actions = sweep_session(layout.session_dir("s1"))
    assert (mine / "notes.txt").read_text() == "keep me"
    assert [a.action for a in actions if a.path == mine] == ["kept (not a writer's temporary directory)"]


def test_training_never_replaces_an_earlier_runs_checkpoints(tmp_path):
    from model.config import ACTConfig, TrainConfig
    from model.train import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an earlier run")
    with pytest.raises(FileExistsError, match="holds checkpoints of an earlier run"):
        train(tmp_path / "no-dataset", out, ACTConfig(), TrainConfig(steps=1))
    assert (out / "last.pt").read_bytes() == b"an earlier run"

    from model.train import cli_app

    res = runner.invoke(cli_app(), ["--dataset", str(tmp_path / "no-dataset"), "--out", str(out), "--steps", "1"])
    assert res.exit_code == 1 and "error:" in res.output and "--force" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli_app(), ["--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "new")])
    assert res.exit_code == 1 and "expected a dataset directory" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------------------------------------- damage is caught
def test_a_deleted_chunk_of_numbers_fails_the_episode_instead_of_reading_zeros(layout):
    (path,) = make_session(layout, "s1", 1)
    shutil.rmtree(path / "action" / "c")
    report = check_one(layout, "s1", path)
    assert not report.passed and "expected every chunk in the store" in " ".join(report.reasons)


def test_a_link_inside_a_bundle_is_refused(bundle, tmp_path):
    linked = tmp_path / "linked"
    shutil.copytree(bundle, linked)
    outside = tmp_path / "outside-stats.json"
    shutil.copy(linked / "stats.json", outside)
    (linked / "stats.json").unlink()
    (linked / "stats.json").symlink_to(outside)  # the same bytes, from outside the bundle
    from assets_store.bundle import verify_bundle

    with pytest.raises(BundleIntegrityError, match="symbolic link"):
        verify_bundle(linked)
    res = run("pull", "--to", str(tmp_path / "p"), "--store", str(tmp_path / "store"))  # nothing deployed there
    assert res.exit_code == 1


@pytest.mark.parametrize("damage, where", [
    (lambda d: _edit_json(d / "config.json", lambda c: {k: v for k, v in c.items() if k != "act"}), "config.json"),
    (lambda d: (d / "stats.json").write_text("[1, 2]"), "stats.json"),
    (lambda d: (d / "model.safetensors").write_bytes(b"not weights"), "model.safetensors"),
    (lambda d: _edit_json(d / "config.json", lambda c: {**c, "act": {**c["act"], "hidden_dim": 64}}), "model.safetensors"),
])
def test_a_resealed_but_malformed_bundle_is_one_error_naming_the_file(bundle, tmp_path, damage, where):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    damage(broken)
    seal_bundle(broken)  # hashes match again: only the content is wrong
    res = run("rollout", "--robot", "sim-transfer-cube", "--policy", str(broken), "--max-steps", "2",
              "--store", str(tmp_path / "store"))
    assert res.exit_code == 1 and where in res.output
    one_error_line(res.output)


def _edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def test_header_fields_of_the_wrong_type_fail_only_that_episode(layout):
    good, bad = make_session(layout, "s1", 2)
    attrs_file = bad / "zarr.json"
    meta = json.loads(attrs_file.read_text())
    meta["attributes"]["robot"] = 5
    attrs_file.write_text(json.dumps(meta))
    report = check_one(layout, "s1", bad)
    assert not report.passed and "attrs.robot: expected a string, got 5" in " ".join(report.reasons)
    assert check_one(layout, "s1", good).passed


# ---------------------------------------------------------------------------------------------- one error line
def test_demo_and_ui_refuse_bad_input_before_any_work(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    res = run("demo", "--session", "bad name", "--store", str(tmp_path / "store"))
    assert res.exit_code == 2 and "invalid session name" in res.output
    one_error_line(res.output)
    res = run("demo", "--store", str(a_file))
    assert res.exit_code == 1 and "is not a directory" in res.output
    one_error_line(res.output)
    layout = StoreLayout(tmp_path / "store")
    make_session(layout, "done", 1)
    res = run("demo", "--session", "done", "--store", str(layout.root))
    assert res.exit_code == 1 and "is finalized" in res.output
    one_error_line(res.output)
    res = run("ui", "--store", str(a_file))
    assert res.exit_code == 1 and "is not a directory" in res.output
    one_error_line(res.output)


def test_view_of_an_undecodable_frame_is_one_error_line(layout, tmp_path):
    (path,) = make_session(layout, "s1", 1)
    corrupt_frame(path)
    res = run("view", "s1/0", "--out", str(tmp_path / "v"), "--store", str(layout.root))
    assert res.exit_code == 1
    one_error_line(res.output)


def test_rollout_refuses_bad_seeds_and_unknown_robots_up_front(bundle, tmp_path):
    res = run("rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle), "--seed", "-3")
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = run("rollout", "--robot", "sim-cube", "--policy", str(bundle))
    assert res.exit_code == 2 and "unknown robot" in res.output and "sim-transfer-cube" in res.output


def test_record_refuses_a_task_its_simulator_does_not_run(tmp_path):
    res = run("record", "--robot", "sim-transfer-cube", "--session", "s", "--task", "nosuch",
              "--store", str(tmp_path / "store"))
    assert res.exit_code == 2 and "runs task 'transfer_cube'" in res.output
    one_error_line(res.output)


def test_pull_from_a_missing_store_creates_nothing(tmp_path):
    res = run("pull", "--from", "mlflow", "--to", str(tmp_path / "p"), "--store", str(tmp_path / "nowhere"))
    assert res.exit_code == 1 and "no MLflow registry" in res.output
    assert not (tmp_path / "nowhere").exists()


def test_export_hdf5_reports_a_bad_episode_and_exports_the_rest(layout, tmp_path):
    good, bad = make_session(layout, "s1", 2)
    shutil.rmtree(bad / "observations" / "qpos" / "c")
    res = run("export-hdf5", "s1/0", "s1/1", "--out", str(tmp_path / "h"), "--store", str(layout.root))
    assert res.exit_code == 1 and "1 of 2 episode(s) not exported" in res.output
    assert (tmp_path / "h" / "episode_000000.hdf5").is_file() and not (tmp_path / "h" / "episode_000001.hdf5").exists()


def test_a_negative_ensembling_k_means_off_wherever_it_is_given(bundle):
    from model.policy import Policy

    assert Policy.from_bundle(bundle, temporal_ensemble_k=-1.0).temporal_ensemble_k is None



def test_a_robot_fault_mid_rollout_is_one_error_line(bundle, tmp_path, monkeypatch):
    """Whatever stops the robot (a silent servo, an unplugged camera, the base's error flag) ends the verb cleanly."""
    import hardware.rollout
    from hardware.base.tracer import BaseFault

    def faulting(*args, **kwargs):
        raise BaseFault("base on can0: error flag 0x02 (battery under voltage); base and arms stopped")

    monkeypatch.setattr(hardware.rollout, "run_rollouts", faulting)
    res = run("rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle), "--max-steps", "2",
              "--store", str(tmp_path / "store"))
    assert res.exit_code == 1 and "robot stopped safely" in res.output and "battery under voltage" in res.output
    one_error_line(res.output)
