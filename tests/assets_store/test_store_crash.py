"""Crash safety: a recorder process SIGKILLed at random moments never leaves a partial episode under a final name,
and every committed episode reads back intact. Leftovers are cleaned (or recovered) by the next writer/doctor."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from assets_store import EpisodeReader, SessionIndex
from assets_store.recovery import sweep_session
from assets_store.layout import TMP_PREFIX, host_tag
from assets_store.synthetic import CameraLikeFrames, joint_trajectory, write_synthetic_episode

RECORDER = r"""
import sys
from assets_store import StoreLayout
from assets_store.synthetic import write_synthetic_episode
from assets_store.sessions import next_episode_index
layout = StoreLayout(sys.argv[1])
while True:
    i = next_episode_index(layout.session_dir("crash"))
    write_synthetic_episode(layout, "crash", steps=30 + i % 7, cameras={"top": (48, 64), "wrist": (24, 32)}, seed=i, index=i)
    print(i, flush=True)
"""


def _check_intact(path):
    r = EpisodeReader(path)
    i = int(path.name[len("episode_"):-len(".zarr")])
    steps = 30 + i % 7
    assert len(r) == steps
    np.testing.assert_array_equal(r.qpos, joint_trajectory(steps, 14, seed=i))
    for cam, (h, w), s in (("top", (48, 64), i), ("wrist", (24, 32), i + 1)):
        frames = CameraLikeFrames(h, w, seed=s)
        for t in range(steps):
            assert np.abs(r.frame(cam, t).astype(int) - frames(t)).mean() < 4


def test_sigkill_at_random_moments(layout):
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    kills = 0
    for trial in range(10):
        proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(layout.root)], stdout=subprocess.PIPE, env=env)
        # a random moment: sometimes during start-up, mostly in the middle of writing frames or committing
        time.sleep(rng.uniform(0.6, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        committed = SessionIndex(layout, "crash").episodes()
        for e in committed:
            assert not e.path.name.startswith(TMP_PREFIX)
            _check_intact(e.path)
    committed = SessionIndex(layout, "crash").episodes()
    assert kills == 10 and len(committed) >= 5, "the recorder should have committed some episodes"
    leftovers = [p for p in layout.session_dir("crash").iterdir() if p.name.startswith(TMP_PREFIX)]
    report = sweep_session(layout.session_dir("crash"))
    assert len(report) == len(leftovers)
    assert all(a.action in ("removed", "recovered") for a in report)
    assert not [p for p in layout.session_dir("crash").iterdir() if p.name.startswith(TMP_PREFIX)]
    for e in SessionIndex(layout, "crash").episodes():
        _check_intact(e.path)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_next_writer_recovers_complete_and_removes_partial(layout):
    done = write_synthetic_episode(layout, "s", steps=5)  # episode 0, committed
    sdir = layout.session_dir("s")
    host, pid = host_tag(), _dead_pid()
    # a writer that finished everything but died before its rename
    complete_tmp = sdir / f"{TMP_PREFIX}episode_000001.zarr.{host}.{pid}.aaaa0000"
    write_synthetic_episode(layout, "other", steps=6)
    os.rename(layout.episode_path("other", 0), complete_tmp)
    # a writer that died half way (no completion marker)
    partial_tmp = sdir / f"{TMP_PREFIX}episode_000002.zarr.{host}.{pid}.bbbb0000"
    (partial_tmp / "observations/images/top/c/0/0/0").mkdir(parents=True)
    (partial_tmp / "observations/images/top/c/0/0/0/0").write_bytes(b"\xff\xd8partial")
    # a live writer's directory (ours) is never touched
    live_tmp = sdir / f"{TMP_PREFIX}episode_000009.zarr.{host}.{os.getpid()}.cccc0000"
    live_tmp.mkdir()

    path = write_synthetic_episode(layout, "s", steps=7)  # the next writer sweeps first
    assert path.name == "episode_000010.zarr"  # numbers never reused, past the live writer's too
    assert not partial_tmp.exists() and not complete_tmp.exists() and live_tmp.exists()
    names = [e.name for e in SessionIndex(layout, "s").episodes()]
    assert names == ["episode_000000.zarr", "episode_000001.zarr", "episode_000010.zarr"]
    assert len(EpisodeReader(sdir / "episode_000001.zarr")) == 6
    assert len(EpisodeReader(done)) == 5
