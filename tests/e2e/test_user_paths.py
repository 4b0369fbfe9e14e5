"""Verbs that write to a user's path never destroy what is there, fail with one `error:` line (no traceback) on a
full disk or a bad argument, and leave no partial file: pull, view, rollout, calibrate, record."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from assets_store import BundleIntegrityError, StoreError, StoreLayout
from assets_store.bundle import copy_bundle, seal_bundle, verify_bundle
from assets_store.hashing import write_json_atomic
from assets_store.layout import CHAMPION
from assets_store.synthetic import write_synthetic_episode
from pipeline.cli.app import build_app

REPO = Path(__file__).resolve().parents[2]
MODEL = "aloha-act"
runner = CliRunner()


def make_bundle(path: Path, dataset_id: str, weights: bytes = b"weights") -> Path:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(weights)
    (path / "config.json").write_text(json.dumps({"dataset": dataset_id}))
    (path / "stats.json").write_text("{}")
    seal_bundle(path, dataset_id=dataset_id, mlflow_run_id=f"run-{dataset_id}")
    return path


def deploy(layout: StoreLayout, dataset_id: str, weights: bytes = b"weights") -> Path:
    """A champion under <store>/deploy, as the pipeline leaves it."""
    src = make_bundle(layout.root.parent / f"built-{dataset_id}", dataset_id, weights)
    copy_bundle(src, layout.deploy_path(MODEL, CHAMPION))
    return layout.deploy_path(MODEL, CHAMPION)


def pull(layout: StoreLayout, to: Path, *extra: str):
    return runner.invoke(build_app(), ["pull", "--to", str(to), "--store", str(layout.root), *extra])


def one_error_line(output: str) -> None:
    assert "Traceback" not in output, output
    assert sum(line.startswith("error:") for line in output.splitlines()) == 1, output


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------------------------------------- pull
def test_pull_never_removes_a_users_files(layout, tmp_path, monkeypatch):
    deploy(layout, "d1")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    res = pull(layout, work)
    assert res.exit_code == 1 and "not empty and not a verified policy bundle" in res.output
    one_error_line(res.output)
    assert (work / "notes.txt").read_text() == "mine"
    res = pull(layout, work, "--force")  # --force replaces a bundle, never anything else
    assert res.exit_code == 1 and (work / "notes.txt").read_text() == "mine"

    monkeypatch.chdir(work)  # `aloha pull --to .` in a working directory
    res = pull(layout, Path("."))
    assert res.exit_code == 1 and sorted(os.listdir(work)) == ["notes.txt"]

    a_file = tmp_path / "policy.bin"
    a_file.write_bytes(b"x")
    res = pull(layout, a_file, "--force")
    assert res.exit_code == 1 and "is not a directory" in res.output and a_file.read_bytes() == b"x"
    assert leftovers(tmp_path) == []


def test_pull_replaces_an_earlier_bundle_only_with_force(layout, tmp_path, monkeypatch):
    deploy(layout, "d1")
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    monkeypatch.chdir(empty)  # `aloha pull --to .` in an empty working directory fills that very directory
    assert pull(layout, Path(".")).exit_code == 0 and verify_bundle(empty)["dataset_id"] == "d1"
    assert empty.stat().st_ino == inode
    dest = tmp_path / "policy"
    assert pull(layout, dest).exit_code == 0

    deploy(layout, "d2", b"better weights")
    res = pull(layout, dest)
    assert res.exit_code == 1 and "already holds a policy bundle (dataset d1" in res.output and "--force" in res.output
    one_error_line(res.output)
    assert verify_bundle(dest)["dataset_id"] == "d1"
    res = pull(layout, dest, "--force")
    assert res.exit_code == 0, res.output
    assert verify_bundle(dest)["dataset_id"] == "d2" and (dest / "model.safetensors").read_bytes() == b"better weights"

    (dest / "config.json").write_text("{}")  # edited by hand: no longer what pull wrote, so not replaced
    res = pull(layout, dest, "--force")
    assert res.exit_code == 1 and "sha256 mismatch" in res.output and (dest / "config.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_pull_on_a_full_disk_leaves_everything_as_it_was(layout, tmp_path, monkeypatch):
    import assets_store.bundle as bundle_module

    deploy(layout, "d1")
    dest = tmp_path / "policy"
    assert pull(layout, dest).exit_code == 0
    deploy(layout, "d2", b"new weights")
    real_copy = shutil.copyfile
    copied = []

    def copy_until_full(src, dst, **kw):
        if copied:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        copied.append(dst)
        return real_copy(src, dst, **kw)

    monkeypatch.setattr(bundle_module.shutil, "copyfile", copy_until_full)
    res = pull(layout, dest, "--force")
    assert res.exit_code == 1 and "No space left on device" in res.output and "is unchanged" in res.output
    one_error_line(res.output)
    assert verify_bundle(dest)["dataset_id"] == "d1"
    copied.clear()
    res = pull(layout, tmp_path / "new" / "deeper" / "policy")
    assert res.exit_code == 1 and not (tmp_path / "new").exists()  # not even the directories it made
    assert leftovers(tmp_path) == []


def test_pull_on_a_full_disk_in_a_real_process(layout, tmp_path):
    """The same in a real `aloha pull` whose writes fail past a file size limit (RLIMIT_FSIZE: EFBIG, no root)."""
    deploy(layout, "d1", b"w" * 1000)
    dest = tmp_path / "policy"
    assert pull(layout, dest).exit_code == 0
    deploy(layout, "d2", b"w" * (1 << 20))  # a 1 MiB weights file cannot be written under a 256 KiB limit

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.app", "pull", "--to", str(dest), "--force", "--store", str(layout.root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith("error: could not write") and "File too large" in out.stderr, out.stderr
    one_error_line(out.stderr)
    assert verify_bundle(dest)["dataset_id"] == "d1"
    assert leftovers(tmp_path) == []


def test_bundle_copies_stay_inside_their_bundles(tmp_path):
    src = make_bundle(tmp_path / "b", "d1")
    with pytest.raises(StoreError, match="inside the bundle it would be copied from"):
        copy_bundle(src, src / "sub")
    assert verify_bundle(src)["dataset_id"] == "d1"
    outside = tmp_path / "outside.txt"
    outside.write_text("not the bundle's")
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["files"][str(outside)] = verify_bundle(src)["files"]["config.json"]
    (src / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleIntegrityError, match="expected a relative path inside the bundle"):
        verify_bundle(src)


def test_the_deploy_copy_replaces_only_a_bundle(layout, tmp_path):
    champion = deploy(layout, "d1")
    (champion / "README").write_text("a note someone left in the store")
    with pytest.raises(StoreError, match="refusing to replace it"):
        deploy(layout, "d2")
    assert (champion / "README").exists()


def test_json_writes_leave_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"a": 1})

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["summary.json"]


# ---------------------------------------------------------------------------------------------- view, rollout
def test_view_keeps_a_users_files_unless_told(layout, tmp_path):
    write_synthetic_episode(layout, "s", steps=6, cameras={"top": (16, 24)})
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "episode_000000.mp4"
    mine.write_bytes(b"my video")
    args = ["view", "s/0", "--out", str(out), "--store", str(layout.root)]
    res = runner.invoke(build_app(), args)
    assert res.exit_code == 1 and "pass --overwrite" in res.output
    one_error_line(res.output)
    assert mine.read_bytes() == b"my video" and sorted(os.listdir(out)) == ["episode_000000.mp4"]
    res = runner.invoke(build_app(), [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert mine.read_bytes()[4:8] == b"ftyp" and (out / "episode_000000.png").is_file()
    # the store's own views are regenerated without asking
    for _ in range(2):
        assert runner.invoke(build_app(), ["view", "s/0", "--store", str(layout.root)]).exit_code == 0
    (tmp_path / "a_file").write_text("")
    res = runner.invoke(build_app(), ["view", "s/0", "--out", str(tmp_path / "a_file"), "--store", str(layout.root)])
    assert res.exit_code == 1 and "is not a directory" in res.output
    one_error_line(res.output)


def test_a_failed_video_leaves_the_old_file(tmp_path):
    import numpy as np

    from hardware.visualize import write_mp4

    path = tmp_path / "v.mp4"
    path.write_bytes(b"old")

    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_mp4(path, frames(), 50.0)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["v.mp4"]


def test_rollout_refuses_to_replace_videos_and_reports_before_it_runs(layout, tmp_path):
    from hardware.rollout import video_path

    videos = tmp_path / "videos"
    videos.mkdir()
    first = video_path(videos, 0, 7)
    first.write_bytes(b"earlier video")
    report = tmp_path / "report.json"
    report.write_text("{}")
    base = ["rollout", "--robot", "sim-transfer-cube", "--policy", str(tmp_path / "no-bundle-needed"), "--seed", "7",
            "--store", str(layout.root)]
    res = runner.invoke(build_app(), [*base, "--video", str(videos)])
    assert res.exit_code == 1 and f"{first}: exists; pass --overwrite" in res.output
    one_error_line(res.output)
    res = runner.invoke(build_app(), [*base, "--json", str(report)])
    assert res.exit_code == 1 and "report.json: exists" in res.output
    assert first.read_bytes() == b"earlier video" and report.read_text() == "{}"


# ---------------------------------------------------------------------------------------------- calibrate
def calibrate(store: Path, *extra: str, robot: str = "emulated") -> tuple[int, str, str]:
    """`aloha calibrate` of the emulated rig's left leader (whose emulator sways it), an operator pressing Enter at
    each of the three prompts and letting the arm move for a while during the range sweep (timed from the sweep's
    own prompt: a loaded machine may take seconds to start the command)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.app", "calibrate", "--robot", robot, "--arm", "left_leader",
         "--store", str(store), *extra],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    streams = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda f=f, k=k: streams[k].extend(iter(lambda: f.read(1), "")), daemon=True)
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    try:
        proc.stdin.write("\n")  # zero pose
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while "2/3" not in "".join(streams["out"]) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            time.sleep(2.0)  # the sweep: the emulated gripper needs about a second to cover its range
            proc.stdin.write("\n\n")
            proc.stdin.close()
        proc.wait(timeout=120)
    except BrokenPipeError:  # it stopped before the sweep (refused its arguments)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for r in readers:
        r.join(timeout=30)
    return proc.returncode, "".join(streams["out"]), "".join(streams["err"])


def test_calibrate_keeps_the_previous_calibration(tmp_path):
    from hardware.aloha.emulated import emulated_calibration
    from hardware.aloha.rig import emulated_rig

    store = tmp_path / "store"
    path = StoreLayout(store).emulated_calibration_dir / "left_leader.json"
    emulated_calibration(emulated_rig(None, StoreLayout(store)).specs["left_leader"]).save(path)
    before = path.read_text()
    code, out, err = calibrate(store)
    assert code == 0, out + err
    backups = sorted(path.parent.glob("left_leader.json.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == before
    assert f"previous calibration is kept as {backups[0]}" in out
    assert json.loads(path.read_text())["arm"] == "left_leader" and path.read_text() != before
    assert leftovers(path.parent) == []

    code, out, err = calibrate(store, "--output", str(tmp_path))  # a directory: refused before the procedure
    assert code == 1 and "is a directory" in err and "1/3" not in out
    one_error_line(err)


def test_calibrate_builds_the_rig_of_the_robot_it_is_given(tmp_path):
    """The emulated Mobile ALOHA is calibrated on its emulator with its own configuration (it used to get the real
    ALOHA's rig, and its serial ports); a robot without Dynamixel arms is refused in one line."""
    store = tmp_path / "store"
    code, out, err = calibrate(store, robot="emulated-mobile")
    assert code == 0, out + err
    path = StoreLayout(store).emulated_calibration_dir / "left_leader.json"
    assert json.loads(path.read_text())["arm"] == "left_leader"  # under the emulated calibrations

    code, out, err = calibrate(store, robot="sim-transfer-cube")
    assert code == 1 and "--robot" in err and "not 'sim-transfer-cube'" in err and "1/3" not in out
    one_error_line(err)


# ---------------------------------------------------------------------------------------------- record, store
@pytest.mark.parametrize("session", ["bad name", "../x", "", "a/b"])
def test_record_rejects_bad_session_names_in_one_line(tmp_path, session):
    res = runner.invoke(build_app(), ["record", "--robot", "sim-transfer-cube", "--session", session,
                                      "--store", str(tmp_path / "store")])
    assert res.exit_code == 2 and "invalid session name" in res.output
    one_error_line(res.output)
    assert not (tmp_path / "store").exists()


def test_record_reports_an_unknown_camera_in_one_line(tmp_path):
    res = runner.invoke(build_app(), ["record", "--robot", "sim-transfer-cube", "--session", "s", "--cameras",
                                      "nosuchcam", "--store", str(tmp_path / "store")])
    assert res.exit_code == 1 and "unknown camera(s) ['nosuchcam']" in res.output and "known robots" not in res.output
    one_error_line(res.output)


def test_record_refuses_a_resolution_no_episode_could_hold(tmp_path):
    res = runner.invoke(build_app(), ["record", "--robot", "emulated", "--session", "s", "--resolution", "5000x5000",
                                      "--store", str(tmp_path / "store")])
    assert res.exit_code == 2 and "at most 4096 pixels per side" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "store").exists()


def test_record_into_a_store_that_cannot_be_written(tmp_path):
    """A store path under a regular file: mkdir fails for every user, root included."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    res = runner.invoke(build_app(), ["record", "--robot", "sim-transfer-cube", "--session", "s", "--cameras", "top",
                                      "--resolution", "32x48", "--episode-len", "5", "--store", str(a_file / "store")])
    assert res.exit_code == 1 and f"{a_file} is not a directory" in res.output
    one_error_line(res.output)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits; the file case above covers it")
def test_record_into_a_read_only_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o555)
    try:
        res = runner.invoke(build_app(), ["record", "--robot", "sim-transfer-cube", "--session", "s", "--cameras",
                                          "top", "--resolution", "32x48", "--episode-len", "5", "--store", str(store)])
    finally:
        store.chmod(0o755)
    assert res.exit_code == 1 and "is not writable" in res.output
    one_error_line(res.output)


def test_a_missing_store_is_an_error_for_verbs_that_read_it(tmp_path, capsys):
    from hardware.cli.common import existing_layout

    with pytest.raises(typer.Exit) as exit_info:
        existing_layout(tmp_path / "nonexistent")
    assert exit_info.value.exit_code == 1
    assert f"store {tmp_path / 'nonexistent'} does not exist" in capsys.readouterr().err
    assert existing_layout(tmp_path).root == tmp_path
