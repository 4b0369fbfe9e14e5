"""Hardware-stack benchmark, no hardware needed: the real SDK against the pty servo emulator, real pyrealsense2
software cameras.

1. Control loop with 4 emulated 9-servo arms, one Sync Read (effort+velocity+position) and one Sync Write (goal)
   per arm per step, at 50 Hz and flat out: achieved rate, late steps, step time, CPU of driver and emulator.
2. Camera threads: 4 software cameras at 480x640, 30 fps: CPU of the reader threads (feeders alone vs feeders +
   readers) and the per-step cost of matching the latest frames by timestamp.

    python bench/bench_hardware.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hardware.aloha.emulated import emulated_calibration, emulated_spec, servo_setups
from hardware.aloha.servo_layouts import arm_joints
from hardware.cameras import Camera, SoftwareSource, SyntheticFeeder, match_by_timestamp
from hardware.dynamixel import Arm, ArmSpec
from hardware.dynamixel.emulator import ServoEmulator
from hardware.loop import FixedRateLoop
from metrics_table import print_metrics  # bench/ is on sys.path when a bench script runs

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def bench_arms(seconds: float) -> list[tuple[str, str]]:
    specs = [ArmSpec(f"arm{i}", "", arm_joints("vx300s"), role="follower") for i in range(4)]
    rows = []
    with ServoEmulator({s.name: servo_setups(s) for s in specs}) as emulator:
        arms = [Arm(emulated_spec(s, emulator.port(s.name)), emulated_calibration(s)) for s in specs]
        for arm in arms:
            arm.connect()
        try:
            targets = np.zeros(7)

            def step(index, t):
                for arm in arms:
                    arm.read()
                    arm.write(targets + 0.1 * np.sin(t))
                return True

            emu_pid = emulator._process.pid
            for label, fps in (("50 Hz loop", 50.0), ("flat out", 10_000.0)):
                steps = int(seconds * min(fps, 50.0)) if fps <= 50 else None
                loop = FixedRateLoop(fps)
                cpu0, emu0, wall0 = time.process_time(), process_cpu(emu_pid), time.monotonic()
                if steps is None:
                    end = wall0 + seconds
                    report = loop.run(lambda i, t: step(i, t) and time.monotonic() < end)
                else:
                    report = loop.run(step, max_steps=steps)
                wall = time.monotonic() - wall0
                cpu, emu_cpu = time.process_time() - cpu0, process_cpu(emu_pid) - emu0
                rows += [
                    (f"arms: {label}: rate", f"{report.achieved_hz:.1f} Hz ({report.steps} steps)"),
                    (f"arms: {label}: late steps", f"{report.late_steps}" if steps else "-"),
                    (f"arms: {label}: step time p50/p99", f"{report.work_ms.p50:.2f} / {report.work_ms.p99:.2f} ms"),
                    (f"arms: {label}: per arm read+write p50", f"{report.work_ms.p50 / len(arms):.2f} ms"),
                    (f"arms: {label}: CPU driver / emulator", f"{100 * cpu / wall:.0f}% / {100 * emu_cpu / wall:.0f}% of a core"),
                ]
            rows.append(("arms: bus retries / failures",
                         f"{sum(a.bus.stats.retries for a in arms)} / {sum(a.bus.stats.failures for a in arms)}"))
        finally:
            for arm in arms:
                arm.release()
    return rows


def bench_cameras(seconds: float) -> list[tuple[str, str]]:
    sources = [SoftwareSource(640, 480, 30, name=f"cam{i}") for i in range(4)]
    feeders = [SyntheticFeeder(s, seed=i) for i, s in enumerate(sources)]
    cameras = [Camera(f"cam{i}", s) for i, s in enumerate(sources)]
    rows = []
    try:
        for s in sources:
            s.start()
        for f in feeders:
            f.start()
        # feeders alone: frames produced and pushed into librealsense queues nobody drains (queues drop when full)
        time.sleep(0.5)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        feed_only = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        for s in sources:
            s.stop()
        for cam in cameras:
            cam.start(first_frame_timeout_s=None)
        for cam in cameras:
            cam.wait_for_frame(5.0)
        frames0 = sum(c.stats.frames for c in cameras)
        cpu0, wall0 = time.process_time(), time.monotonic()
        match_ms = []
        loop = FixedRateLoop(50)

        def step(index, t):
            start = time.perf_counter()
            match_by_timestamp(cameras)
            match_ms.append((time.perf_counter() - start) * 1e3)

        loop.run(step, max_steps=int(seconds * 50))
        wall = time.monotonic() - wall0
        with_readers = (time.process_time() - cpu0) / wall
        frames = sum(c.stats.frames for c in cameras) - frames0
        dropped = sum(c.stats.dropped for c in cameras)
        rows += [
            ("cameras: 4 x 480x640 @ 30 fps: frames read", f"{frames / wall:.1f} frames/s, {dropped} dropped"),
            ("cameras: CPU feeders only", f"{100 * feed_only:.0f}% of a core"),
            ("cameras: CPU feeders + 4 reader threads", f"{100 * with_readers:.0f}% of a core"),
            ("cameras: reader-thread overhead", f"{100 * (with_readers - feed_only):.0f}% of a core "
                                               f"({1e3 * (with_readers - feed_only) * wall / max(frames, 1):.2f} ms/frame)"),
            ("cameras: match latest frames per step p50/p99", f"{np.percentile(match_ms, 50):.3f} / "
                                                             f"{np.percentile(match_ms, 99):.3f} ms"),
        ]
    finally:
        for f in feeders:
            f.stop()
        for cam in cameras:
            cam.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = bench_arms(args.seconds) + bench_cameras(args.seconds)
    print_metrics("hardware bench", rows)


if __name__ == "__main__":
    main()
