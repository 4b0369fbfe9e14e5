"""LeRobot dataset format v3.0 <-> store episodes (assets_store/lerobot.py, `aloha import-lerobot` / `export-lerobot`).

The dataset is written here by hand with pyarrow and PyAV, as LeRobot lays it out: both episodes in one data parquet
and, per camera, one MP4 where the second episode starts at from_timestamp = 20 / fps.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from assets_store import (CameraSpec, EpisodeInfo, EpisodeReader, EpisodeWriter, SessionIndex, StoreError,
                          is_session_finalized)
from assets_store.lerobot import export_lerobot, import_lerobot
from pipeline.cli.app import build_app

FPS, STEPS, EPISODES, H, W = 30, 20, 2, 48, 64
CAMS = ("top", "wrist")
JOINTS = [f"{side}_{j}" for side in ("left", "right") for j in ("waist", "shoulder", "elbow", "gripper")]


def picture(ep: int, cam: int, t: int) -> np.ndarray:
    """Smooth (video-friendly) frames that differ clearly from one step to the next: a bright block walks along."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 3, y * 4, np.full_like(x, 60 + 40 * cam)], -1).astype(np.float64)
    x0 = (3 * t + 10 * ep) % (W - 12)
    img[12:36, x0:x0 + 12] = 250
    return img.astype(np.uint8)


def state(ep: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(ep)
    return (rng.normal(size=(STEPS, len(JOINTS))).astype(np.float32),
            rng.normal(size=(STEPS, len(JOINTS))).astype(np.float32))


def write_video(path, frames_by_episode):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(FPS))
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "18", "g": "2"}
        pts = 0
        for frames in frames_by_episode:
            for img in frames:
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts = pts
                pts += 1
                c.mux(s.encode(f))
        c.mux(s.encode())


def write_dataset(root, *, version="v3.0", short_video=False, info_changes=None):
    features = {
        f"observation.images.{cam}": {
            "dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
            "info": {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv420p"}}
        for cam in CAMS}
    features.update({
        "observation.state": {"dtype": "float32", "shape": [len(JOINTS)], "names": JOINTS},
        "action": {"dtype": "float32", "shape": [len(JOINTS)], "names": {"motors": JOINTS}},  # an older names form
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None}
           for k in ("frame_index", "episode_index", "index", "task_index")},
    })
    info = {"codebase_version": version, "robot_type": "aloha", "fps": FPS, "total_episodes": EPISODES,
            "total_frames": EPISODES * STEPS, "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}
    for change in info_changes or []:
        change(info)
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    rows = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
                            "task_index")}
    for ep in range(EPISODES):
        qpos, action = state(ep)
        rows["observation.state"] += qpos.tolist()
        rows["action"] += action.tolist()
        rows["timestamp"] += [t / FPS for t in range(STEPS)]
        rows["frame_index"] += list(range(STEPS))
        rows["episode_index"] += [ep] * STEPS
        rows["index"] += list(range(ep * STEPS, (ep + 1) * STEPS))
        rows["task_index"] += [0] * STEPS
    (root / "data" / "chunk-000").mkdir(parents=True)
    table = pa.table({k: pa.array(v, pa.list_(pa.float32(), len(JOINTS)) if k in ("observation.state", "action")
                                  else pa.float32() if k == "timestamp" else pa.int64()) for k, v in rows.items()})
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    for c, cam in enumerate(CAMS):
        frames = [[picture(ep, c, t) for t in range(STEPS)] for ep in range(EPISODES)]
        if short_video and cam == "wrist":
            frames[-1] = frames[-1][: STEPS - 5]
        write_video(root / "videos" / f"observation.images.{cam}" / "chunk-000" / "file-000.mp4", frames)
    meta = {"episode_index": list(range(EPISODES)), "tasks": [["fold the towel"]] * EPISODES,
            "length": [STEPS] * EPISODES, "data/chunk_index": [0] * EPISODES, "data/file_index": [0] * EPISODES,
            "dataset_from_index": [ep * STEPS for ep in range(EPISODES)],
            "dataset_to_index": [(ep + 1) * STEPS for ep in range(EPISODES)]}
    for cam in CAMS:
        key = f"videos/observation.images.{cam}"
        meta.update({f"{key}/chunk_index": [0] * EPISODES, f"{key}/file_index": [0] * EPISODES,
                     f"{key}/from_timestamp": [ep * STEPS / FPS for ep in range(EPISODES)],
                     f"{key}/to_timestamp": [(ep + 1) * STEPS / FPS for ep in range(EPISODES)]})
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(meta), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return root


def frames_match(reader: EpisodeReader, ep: int, tolerance: float = 8.0) -> None:
    """Each stored frame is (lossy video) close to its own picture, and farther from its neighbours'."""
    for c, cam in enumerate(CAMS):
        for t in range(STEPS):
            got = reader.frame(cam, t).astype(np.float64)
            err = np.abs(got - picture(ep, c, t)).mean()
            assert err < tolerance, (cam, t, err)
            for other in (t - 1, t + 1):
                if 0 <= other < STEPS:
                    assert np.abs(got - picture(ep, c, other)).mean() > err + 2, (cam, t, other)


def test_import_values_timestamps_and_frames(layout, tmp_path):
    src = write_dataset(tmp_path / "ds")
    result = import_lerobot(layout, "lr", src)
    assert is_session_finalized(layout.session_dir("lr"))
    assert [i for i, _ in result.episodes] == [0, 1]
    for ep, path in result.episodes:
        r = EpisodeReader(path)
        qpos, action = state(ep)
        np.testing.assert_array_equal(r.qpos, qpos)
        np.testing.assert_array_equal(r.action, action)
        np.testing.assert_array_equal(r.timestamps, np.arange(STEPS, dtype=np.float32) / np.float32(FPS))
        assert r.info.joint_names == JOINTS and r.info.action_names == JOINTS
        assert r.camera_names == list(CAMS) and r.fps == FPS and r.info.robot == "aloha"
        assert r.info.task == "fold the towel" and r.attrs["extra"]["lerobot_episode_index"] == ep
        frames_match(r, ep)
    # one episode, from the middle of the shared MP4 (seek to from_timestamp)
    (_, path), = import_lerobot(layout, "lr1", src, episodes=[1]).episodes
    frames_match(EpisodeReader(path), 1)
    with pytest.raises(StoreError, match="already exists"):  # never into (or over) an existing session
        import_lerobot(layout, "lr", src)


def test_an_empty_folder_created_just_before_the_move_is_never_replaced(layout, tmp_path, monkeypatch):
    import assets_store.lerobot as lerobot_module

    target, real_mkdir = layout.session_dir("lr"), os.mkdir

    def someone_creates_it_first(path, *args, **kwargs):  # the last instant before the claim (os.mkdir is global)
        if Path(path) == target:
            real_mkdir(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(lerobot_module.os, "mkdir", someone_creates_it_first)
    with pytest.raises(StoreError, match="appeared during the import"):
        import_lerobot(layout, "lr", write_dataset(tmp_path / "ds"))
    # A rename would have swapped an empty folder for the import silently; theirs stays, empty, as they made it.
    assert target.is_dir() and not list(target.iterdir())
    assert not [p.name for p in layout.root.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_failed_move_leaves_no_empty_session_behind(layout, tmp_path, monkeypatch):
    import assets_store.lerobot as lerobot_module

    target, real_rename = layout.session_dir("lr"), os.rename

    def read_only(src, dst):
        if Path(dst) == target:
            raise PermissionError(13, "Permission denied")
        return real_rename(src, dst)

    monkeypatch.setattr(lerobot_module.os, "rename", read_only)
    with pytest.raises(PermissionError):  # the OS's own reason, not "changed during the import"
        import_lerobot(layout, "lr", write_dataset(tmp_path / "ds"))
    assert not target.exists()  # the folder it claimed is gone: the session can be imported again
    monkeypatch.undo()
    import_lerobot(layout, "lr", write_dataset(tmp_path / "ds2"))


def test_a_file_written_into_the_session_just_before_the_move_is_kept(layout, tmp_path, monkeypatch):
    import assets_store.lerobot as lerobot_module

    target, real_rename = layout.session_dir("lr"), os.rename

    def rename_after_someone_wrote(src, dst):  # the last instant before the session's move (os.rename is global)
        if Path(dst) == target:
            target.mkdir(parents=True, exist_ok=True)
            (target / "notes.txt").write_text("mine")
        return real_rename(src, dst)

    monkeypatch.setattr(lerobot_module.os, "rename", rename_after_someone_wrote)
    with pytest.raises(StoreError, match="changed during the import"):
        import_lerobot(layout, "lr", write_dataset(tmp_path / "ds"))
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert not [p.name for p in layout.root.iterdir() if p.name.startswith(".")]


def test_export_and_reimport_round_trip(layout, tmp_path):
    import_lerobot(layout, "lr", write_dataset(tmp_path / "ds"))
    episodes = [e.path for e in SessionIndex(layout, "lr").episodes()]
    out = export_lerobot(episodes, tmp_path / "out")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["total_frames"] == EPISODES * STEPS
    assert info["features"]["observation.state"]["names"] == JOINTS
    assert info["features"]["observation.images.top"]["shape"] == [H, W, 3]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert np.asarray(stats["observation.images.top"]["mean"]).shape == (3, 1, 1)
    tasks = pq.read_table(out / "meta" / "tasks.parquet").to_pandas()  # LeRobot reads it with pandas
    assert list(tasks.index) == ["fold the towel"] and list(tasks["task_index"]) == [0]

    back = import_lerobot(layout, "again", out)
    for (ep, path), original in zip(back.episodes, episodes):
        r, o = EpisodeReader(path), EpisodeReader(original)
        np.testing.assert_array_equal(r.qpos, o.qpos)
        np.testing.assert_array_equal(r.action, o.action)
        np.testing.assert_array_equal(r.timestamps, o.timestamps)
        assert r.info.joint_names == o.info.joint_names and r.camera_names == o.camera_names
        frames_match(r, ep, tolerance=10.0)  # two lossy generations

    with pytest.raises(StoreError, match="not empty"):  # an existing dataset is never written over silently
        export_lerobot(episodes[:1], out)
    assert json.loads((out / "meta" / "info.json").read_text())["total_episodes"] == EPISODES
    export_lerobot(episodes[:1], out, overwrite=True)
    assert json.loads((out / "meta" / "info.json").read_text())["total_episodes"] == 1
    mine = tmp_path / "my-folder"
    (mine / "notes").mkdir(parents=True)
    with pytest.raises(StoreError, match="not a LeRobot dataset"):  # --overwrite never replaces another folder
        export_lerobot(episodes[:1], mine, overwrite=True)
    assert (mine / "notes").is_dir()

    other = EpisodeInfo(robot="aloha", joint_names=["a", "b"], fps=FPS, cameras=[CameraSpec("top", H, W)])
    with EpisodeWriter(layout, "other", other) as w:
        w.add_step(np.zeros(2), np.zeros(2), 0.0, images={"top": picture(0, 0, 0)})
    with pytest.raises(StoreError, match="attrs.joint_names: expected"):  # one dataset, one set of features
        export_lerobot([episodes[0], w.final_path], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()


def _set(path, value):
    def change(info):
        *parents, leaf = path
        node = info
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return change


MALFORMED = {
    "version": (dict(version="v2.1"), "info.json: codebase_version: expected 'v3.0'"),
    "missing state": (dict(info_changes=[_set(["features", "observation.state"], None)]),
                      "info.json: features.observation.state: expected this feature"),
    "short video": (dict(short_video=True), "file-000.mp4: observation.images.wrist: the video is shorter"),
    "huge frames": (dict(info_changes=[_set(["features", "observation.images.top", "shape"], [5000, W, 3])]),
                    "info.json: features.observation.images.top.shape: expected RGB frames of at most 4096"),
    "path escape": (dict(info_changes=[_set(["data_path"], "../../elsewhere/{chunk_index}-{file_index}.parquet")]),
                    "info.json: data_path: '../../elsewhere/0-0.parquet' leads out of the dataset"),
    "bad template": (dict(info_changes=[_set(["video_path"], "videos/{camera}.mp4")]),
                     "info.json: video_path: expected a template of ['chunk_index', 'file_index', 'video_key']"),
}


@pytest.mark.parametrize("variant", list(MALFORMED))
def test_malformed_dataset_is_one_error_line_and_nothing_imported(layout, tmp_path, variant):
    kwargs, message = MALFORMED[variant]
    src = write_dataset(tmp_path / "ds", **kwargs)
    res = CliRunner().invoke(build_app(), ["import-lerobot", str(src), "--session", "lr", "--store", str(layout.root)])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())  # one message (rich wraps it at the terminal's width)
    assert text.startswith("error: ") and text.count("error") == 1 and message in text, res.output
    assert not layout.session_dir("lr").exists()
    if layout.root.exists():  # no staging directory left behind
        assert not [p.name for p in layout.root.iterdir() if p.name.startswith(".")]


def test_cli_import_episodes_and_export(layout, tmp_path):
    src = write_dataset(tmp_path / "ds")
    runner, app = CliRunner(), build_app()
    res = runner.invoke(app, ["import-lerobot", str(src), "--session", "lr", "--episodes", "1",
                              "--store", str(layout.root)])
    assert res.exit_code == 0, res.output
    assert [e.attrs["extra"]["lerobot_episode_index"] for e in SessionIndex(layout, "lr").episodes()] == [1]
    res = runner.invoke(app, ["import-lerobot", str(src), "--session", "lr2", "--episodes", "0,4-5",
                              "--store", str(layout.root)])
    assert res.exit_code == 1 and "no episode 4; the dataset has episodes 0-1" in " ".join(res.output.split())
    assert not layout.session_dir("lr2").exists()

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    res = runner.invoke(app, ["export-lerobot", "lr", "--out", str(tmp_path / "busy"), "--store", str(layout.root)])
    assert res.exit_code == 1 and "not empty" in res.output
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"
    res = runner.invoke(app, ["export-lerobot", "lr/0", "--out", str(tmp_path / "x"), "--store", str(layout.root)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x" / "videos" / "observation.images.wrist" / "chunk-000" / "file-000.mp4").is_file()
