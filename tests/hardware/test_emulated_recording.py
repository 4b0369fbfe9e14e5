"""`aloha record --robot emulated` (the README's dry run) records episodes the pipeline accepts.

The emulated robot runs the real drivers: Dynamixel arms over pty servo emulators, cameras as librealsense software
sensors fed at 30 fps, matched by timestamp as real cameras are. Its first step once recorded frames taken before
the start gesture and the ramp to the leaders' pose (2.2 s old), so every dry run failed the dropped-frame check
while the recorder said 0 dropped.
"""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from assets_store import EpisodeReader
from assets_store.checks import CHECKS, dropped_frame_count
from assets_store.episode_reader import EpisodeArrays
from pipeline_kit import check_one

STEPS = 150  # 3 s at 50 Hz: a few late steps on a loaded machine stay well inside the checks' tolerances


def test_emulated_recording_passes_every_pipeline_check(layout):
    from pipeline.cli.app import build_app

    result = CliRunner().invoke(build_app(), [
        "record", "--robot", "emulated", "--session", "dry_run", "--episodes", "1", "--episode-len", str(STEPS),
        "--resolution", "48x64", "--reset-time", "0", "--store", str(layout.root),
    ])
    assert result.exit_code == 0, result.output
    (episode,) = sorted(layout.session_dir("dry_run").glob("episode_*.zarr"))

    report = check_one(layout, "dry_run", episode)  # every check, as the pipeline runs them
    assert set(report.checks) == set(CHECKS)
    assert report.passed, report.reasons

    reader = EpisodeReader(episode)
    # The recorder's count is the one validation computes from the frame info (it said 0 while 264 were missing).
    counters = reader.attrs["counters"]
    assert counters["dropped_frames"] == dropped_frame_count(EpisodeArrays(episode)) == report.dropped_frames
    # Step 0's frames were taken at step 0 (software cameras stamp frames with the same monotonic clock as the
    # loop): a camera period or two old, never the seconds the start gesture and the ramp took.
    for cam in reader.camera_names:
        age_s = reader.timestamps[0] - reader.frame_info(cam)[0, 1] / 1000.0
        assert age_s < 0.5, (cam, age_s)
        assert np.all(np.diff(reader.frame_info(cam)[:, 0]) >= 0)
