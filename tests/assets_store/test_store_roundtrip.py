"""Write -> read round trips on real Zarr v3 stores on disk."""

import json
import os
import threading
import time

import numpy as np
import pytest
import zarr

from assets_store import (
    CameraSpec,
    EpisodeInfo,
    EpisodeReader,
    EpisodeWriter,
    SessionIndex,
    StoreError,
    finalize_session,
    next_episode_index,
)
from assets_store.codec import CODEC_NAME
from assets_store.synthetic import CameraLikeFrames, joint_trajectory, write_synthetic_episode


def _info(cams=(("top", 48, 64), ("wrist", 24, 32)), joints=14, **kw):
    return EpisodeInfo(
        robot="test", joint_names=[f"j{i}" for i in range(joints)], fps=50.0,
        cameras=[CameraSpec(n, h, w, serial=f"SN{n}") for n, h, w in cams], task="cube", operator="alice", **kw,
    )


def test_round_trip_exact_lowdim_and_jpeg_images(layout):
    info = _info()
    frames = {c.name: CameraLikeFrames(c.height, c.width, seed=i) for i, c in enumerate(info.cameras)}
    qpos = joint_trajectory(40, 14, seed=1)
    action = joint_trajectory(40, 14, seed=2)
    qvel = joint_trajectory(40, 14, seed=3)
    ts = 100.0 + np.arange(40) / 50.0 + np.random.default_rng(0).uniform(0, 1e-3, 40)
    with EpisodeWriter(layout, "s1", info) as w:
        for t in range(40):
            w.add_step(qpos[t], action[t], ts[t], qvel=qvel[t],
                       images={n: f(t) for n, f in frames.items()},
                       frame_info={"top": (1000 + t, ts[t]), "wrist": (t, ts[t])})
        path = w.close()
    assert path == layout.episode_path("s1", 0)
    r = EpisodeReader(path)
    assert len(r) == 40
    np.testing.assert_array_equal(r.qpos, qpos)
    np.testing.assert_array_equal(r.action, action)
    np.testing.assert_array_equal(r.qvel, qvel)
    np.testing.assert_array_equal(r.timestamps, ts)  # float64 kept exactly
    assert r.effort is None
    assert r.camera_names == ["top", "wrist"]
    for name, f in frames.items():
        for t in (0, 17, 39):
            got = r.frame(name, t).astype(np.int16)
            want = f(t).astype(np.int16)
            assert got.shape == want.shape
            assert np.abs(got - want).mean() < 3.0  # JPEG q90 on camera-like images
    np.testing.assert_array_equal(r.frame_info("top")[:, 0], 1000 + np.arange(40))
    assert r.dropped_frames == {"top": 0, "wrist": 0}
    assert r.info.task == "cube" and r.info.operator == "alice" and r.info.cameras[0].serial == "SNtop"
    assert r.attrs["schema"] == "aloha-episode" and r.attrs["schema_version"] == 1
    assert r.attrs["jpeg_quality"] == 90


def test_frames_are_readable_through_plain_zarr(layout):
    """The fast path is an optimisation: plain zarr with the registered codec reads the same frames."""
    path = write_synthetic_episode(layout, "s1", steps=5, cameras={"top": (32, 48)})
    arr = zarr.open_array(str(path / "observations/images/top"), mode="r")
    meta = json.loads((path / "observations/images/top/zarr.json").read_text())
    assert meta["codecs"] == [{"name": CODEC_NAME, "configuration": {"quality": 90}}]
    r = EpisodeReader(path)
    np.testing.assert_array_equal(arr[3], r.frame("top", 3))


def test_jpeg_quality_is_configurable_and_changes_size(layout):
    p_lo = write_synthetic_episode(layout, "lo", steps=3, cameras={"top": (96, 128)}, jpeg_quality=30)
    p_hi = write_synthetic_episode(layout, "hi", steps=3, cameras={"top": (96, 128)}, jpeg_quality=95)
    size = lambda p: (p / "observations/images/top/c/0/0/0/0").stat().st_size  # noqa: E731
    assert size(p_lo) < size(p_hi)
    assert EpisodeReader(p_lo).attrs["jpeg_quality"] == 30


def test_dropped_frames_detected_from_frame_numbers(layout):
    info = _info(cams=(("top", 16, 16),))
    numbers = [0, 1, 2, 5, 6, 9]  # gaps of 2 and 2
    with EpisodeWriter(layout, "s", info) as w:
        for t, n in enumerate(numbers):
            w.add_step(np.zeros(14), np.zeros(14), t * 0.02, images={"top": np.zeros((16, 16, 3), np.uint8)},
                       frame_info={"top": (n, t * 0.02)})
    r = EpisodeReader(layout.episode_path("s", 0))
    assert r.dropped_frames == {"top": 4}


def test_mobile_aloha_action_dim_and_no_cameras(layout):
    info = EpisodeInfo(robot="mobile", joint_names=[f"j{i}" for i in range(14)],
                       action_names=[f"j{i}" for i in range(14)] + ["vx", "wz"], fps=50)
    with EpisodeWriter(layout, "m", info) as w:
        for t in range(3):
            w.add_step(np.zeros(14), np.arange(16, dtype=np.float32), t / 50)
    r = EpisodeReader(layout.episode_path("m", 0))
    assert r.action.shape == (3, 16) and r.camera_names == []


def test_session_index_numbers_and_resume(layout):
    for seed in range(3):
        write_synthetic_episode(layout, "sess", steps=4 + seed, seed=seed)
    idx = SessionIndex(layout, "sess")
    eps = idx.episodes()
    assert [e.index for e in eps] == [0, 1, 2]
    assert [e.num_steps for e in eps] == [4, 5, 6]
    assert eps[0].cameras == ["top"] and eps[0].fps == 50.0
    # a resumed session continues numbering, also past a leftover temporary directory
    assert next_episode_index(layout.session_dir("sess")) == 3
    assert not idx.finalized
    finalize_session(layout, "sess")
    assert idx.finalized
    with pytest.raises(StoreError, match="finalized"):
        write_synthetic_episode(layout, "sess", steps=3)


def test_discard_leaves_nothing(layout):
    info = _info()
    w = EpisodeWriter(layout, "s", info)
    for t in range(5):
        w.add_step(np.zeros(14), np.zeros(14), t / 50,
                   images={"top": np.zeros((48, 64, 3), np.uint8), "wrist": np.zeros((24, 32, 3), np.uint8)})
    w.discard()
    w.discard()  # idempotent
    assert list(layout.session_dir("s").iterdir()) == []


def test_exception_inside_context_discards(layout):
    with pytest.raises(RuntimeError):
        with EpisodeWriter(layout, "s", _info(cams=())) as w:
            w.add_step(np.zeros(14), np.zeros(14), 0.0)
            raise RuntimeError("operator pressed stop")
    assert list(layout.session_dir("s").iterdir()) == []


class _GatedWriter(EpisodeWriter):
    """A writer whose frame workers wait on a gate: a stand-in for a slow disk."""

    def __init__(self, *a, **kw):
        self.gate = threading.Event()
        super().__init__(*a, **kw)

    def _write_frame(self, *item):
        self.gate.wait()
        super()._write_frame(*item)


def test_backpressure_is_counted_not_lost(layout):
    info = _info(cams=(("top", 24, 32),))
    frames = CameraLikeFrames(24, 32)
    w = _GatedWriter(layout, "s", info, queue_frames=1, workers=1)

    def produce():
        for t in range(10):
            w.add_step(np.zeros(14), np.zeros(14), t / 50, images={"top": frames(t)})

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 30
    while w.stats.backpressure_events == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert w.stats.backpressure_events > 0  # the one-frame queue filled up and the producer waited
    w.gate.set()
    producer.join()
    path = w.close()
    r = EpisodeReader(path)
    assert w.stats.frames_written == 10  # nothing dropped
    assert r.attrs["counters"]["backpressure_events"] == w.stats.backpressure_events
    for t in range(10):
        assert np.abs(r.frame("top", t).astype(int) - frames(t)).mean() < 4


def test_caller_buffer_reuse_does_not_corrupt_frames(layout):
    info = _info(cams=(("top", 16, 16),))
    buf = np.zeros((16, 16, 3), np.uint8)
    with EpisodeWriter(layout, "s", info) as w:
        for t in range(10):
            buf[:] = t * 20
            w.add_step(np.zeros(14), np.zeros(14), t / 50, images={"top": buf})
    r = EpisodeReader(layout.episode_path("s", 0))
    assert [int(r.frame("top", t).mean().round()) for t in range(10)] == [t * 20 for t in range(10)]


class _FailingDiskWriter(EpisodeWriter):
    def _write_frame(self, *item):
        raise OSError(28, "No space left on device")


def test_frame_write_failure_at_close_cleans_up(layout):
    w = _FailingDiskWriter(layout, "s", _info(cams=(("top", 16, 16),)))
    w.add_step(np.zeros(14), np.zeros(14), 0.0, images={"top": np.zeros((16, 16, 3), np.uint8)})
    with pytest.raises(StoreError, match="No space left on device"):
        w.close()
    assert list(layout.session_dir("s").iterdir()) == []  # no temporary left to fill the disk
    assert all(not t.is_alive() for t in threading.enumerate() if t.name.startswith("episode-writer"))


def test_crash_recovery_with_dotted_hostname(layout, monkeypatch):
    """`rig.lab.local`: the owner field of a temporary name must survive the split on dots."""
    import socket

    from assets_store.recovery import sweep_session

    monkeypatch.setattr(socket, "gethostname", lambda: "rig.lab.local")
    w = EpisodeWriter(layout, "s", _info(cams=()))
    w.add_step(np.zeros(14), np.zeros(14), 0.0)
    tmp = w.tmp_path
    assert ".rig_lab_local." in tmp.name
    # a live writer (this process) is left alone; once it is gone its partial episode is removed
    assert [a.action for a in sweep_session(layout.session_dir("s"))] == ["skipped (live writer)"]
    dead = tmp.with_name(tmp.name.replace(f".{os.getpid()}.", ".999999999."))
    os.rename(tmp, dead)
    assert [a.action for a in sweep_session(layout.session_dir("s"))] == ["removed"]
    assert not dead.exists()


def test_episode_dirname_round_trips_and_rejects_other_names(monkeypatch):
    import socket

    from assets_store.layout import (
        episode_dirname, parse_episode_dirname, parse_episode_ref, parse_temp_dirname, temp_dirname,
    )

    for index in (0, 3, 999_999):
        name = episode_dirname(index)
        assert parse_episode_dirname(name) == index
    assert episode_dirname(3) == "episode_000003.zarr"
    with pytest.raises(ValueError):
        episode_dirname(-1)
    for bad in ("episode_3.zarr", "episode_000003", "episode_0000003.zarr", "episode_000003.zarr.bak",
                "Episode_000003.zarr", "take_000003.zarr", "episode_00000a.zarr", ""):
        assert parse_episode_dirname(bad) is None, bad

    # a writer's temporary name counts only when asked (so a resumed session never reuses its number)
    monkeypatch.setattr(socket, "gethostname", lambda: "rig.lab.local")
    temp = temp_dirname(episode_dirname(7))
    assert parse_episode_dirname(temp) is None
    assert parse_episode_dirname(temp, in_progress=True) == 7
    parts = parse_temp_dirname(temp)
    assert (parts.final_name, parts.host, parts.pid) == ("episode_000007.zarr", "rig_lab_local", str(os.getpid()))
    assert parse_temp_dirname("episode_000007.zarr") is None
    assert parse_episode_dirname(".tmp-notes.txt", in_progress=True) is None

    assert parse_episode_ref("demo/3") == ("demo", 3)
    assert parse_episode_ref("demo/episode_000003.zarr") == ("demo", 3)
    assert parse_episode_ref("demo/episode_3/") == ("demo", 3)
    for bad in ("demo", "demo/x", "a/b/3", "/3"):
        assert parse_episode_ref(bad) is None, bad
