"""Cameras over real pyrealsense2 software devices: frame numbers round-trip, drops counted, vanished source raises."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hardware.cameras import (
    Camera,
    CameraDisconnected,
    SoftwareSource,
    SyntheticFeeder,
    frame_number_in,
    match_by_timestamp,
)

H, W = 48, 64


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture
def source():
    src = SoftwareSource(W, H, fps=30, name="test")
    yield src
    src.stop()


def test_frames_round_trip_with_numbers_and_timestamps(source):
    camera = Camera("cam_high", source)
    camera.start(first_frame_timeout_s=None)
    try:
        feeder = SyntheticFeeder(source)
        for n in range(5):
            source.push(feeder.make(n), number=n, timestamp_ms=1000.0 + n * 33.3)
        assert wait_for(lambda: camera.stats.frames == 5)
        frames = camera.frames()
        assert [f.number for f in frames] == [0, 1, 2, 3, 4]
        assert [f.timestamp_ms for f in frames] == pytest.approx([1000.0 + n * 33.3 for n in range(5)])
        assert all(frame_number_in(f.image) == f.number for f in frames)
        np.testing.assert_array_equal(frames[2].image, feeder.make(2))
        frame, drops = camera.read()
        assert frame.number == 4 and drops == 0 and frame.image.dtype == np.uint8 and frame.image.shape == (H, W, 3)
    finally:
        camera.stop()


def test_injected_drops_are_counted_per_read(source):
    feeder = SyntheticFeeder(source, fps=200)
    feeder.drop_numbers = {3, 4, 10}
    camera = Camera("cam_low", source)
    camera.start(first_frame_timeout_s=None)
    feeder.start()
    try:
        assert wait_for(lambda: camera.stats.frames >= 8)
        _, first = camera.read()
        assert wait_for(lambda: camera.stats.frames >= 14)
        _, second = camera.read()
        assert first + second == 3 and camera.stats.dropped == 3
        _, third = camera.read()
        assert third == 0  # reported once
    finally:
        feeder.stop()
        camera.stop()


def test_vanished_source_raises_within_bound(source):
    feeder = SyntheticFeeder(source, fps=100)
    feeder.start()
    camera = Camera("cam_left_wrist", source, stale_after_s=0.3)
    camera.start()
    try:
        camera.read()
        feeder.stop()  # frames simply stop coming
        start = time.monotonic()
        with pytest.raises(CameraDisconnected, match="cam_left_wrist.*no frame for"):
            while time.monotonic() - start < 3.0:
                camera.read()
                time.sleep(0.01)
        assert time.monotonic() - start < 1.0
    finally:
        camera.stop()


def test_unplugged_source_error_is_raised(source):
    feeder = SyntheticFeeder(source, fps=100).start()
    camera = Camera("cam_right_wrist", source)
    camera.start()
    try:
        feeder.vanish()
        with pytest.raises(CameraDisconnected, match="disconnected"):
            assert wait_for(lambda: camera._error is not None)
            camera.read()
    finally:
        camera.stop()


def test_no_first_frame_raises(source):
    camera = Camera("cam_high", source)
    with pytest.raises(CameraDisconnected, match="no frame within"):
        camera.start(first_frame_timeout_s=0.2)
    camera.stop()


def test_several_cameras_matched_by_timestamp():
    sources = [SoftwareSource(W, H, fps=30, name=f"c{i}") for i in range(3)]
    cams = [Camera(f"cam{i}", s) for i, s in enumerate(sources)]
    feeders = [SyntheticFeeder(s) for s in sources]
    try:
        for cam in cams:
            cam.start(first_frame_timeout_s=None)
        # cam0 runs 10 ms ahead of the others, cam2 has one more (newer) frame
        for n in range(4):
            for k, (src, feeder) in enumerate(zip(sources, feeders)):
                offset = 10.0 if k == 0 else 0.0
                src.push(feeder.make(n), number=n, timestamp_ms=n * 33.0 + offset)
        sources[2].push(feeders[2].make(4), number=4, timestamp_ms=4 * 33.0)
        assert wait_for(lambda: all(c.stats.frames >= 4 for c in cams) and cams[2].stats.frames == 5)
        matched, drops = match_by_timestamp(cams)
        assert {name: f.number for name, f in matched.items()} == {"cam0": 3, "cam1": 3, "cam2": 3}
        assert drops == 0
    finally:
        for cam in cams:
            cam.stop()


def test_recorded_file_plays_back_through_the_same_camera(tmp_path):
    """rs.recorder around a software device writes a file; PlaybackSource reads it through rs.pipeline."""
    import pyrealsense2 as rs

    from hardware.cameras import PlaybackSource

    path = tmp_path / "cam.db3"
    src = SoftwareSource(W, H, fps=30, name="rec")
    recorder = rs.recorder(str(path), src.device)
    sensor = recorder.query_sensors()[0]
    queue = rs.frame_queue(8, True)
    sensor.open(src.profile)
    sensor.start(queue)
    feeder = SyntheticFeeder(src)
    for n in range(12):
        src.push(feeder.make(n), number=n, timestamp_ms=n * 33.3)
        time.sleep(0.005)
    sensor.stop()
    sensor.close()
    del sensor, recorder
    camera = Camera("cam_high", PlaybackSource(path, W, H, 30))
    camera.start(first_frame_timeout_s=5.0)
    try:
        assert wait_for(lambda: camera.frames() and camera.frames()[-1].number == 11)
        frames = camera.frames()
        assert all(frame_number_in(f.image) == f.number for f in frames)
    finally:
        camera.stop()
