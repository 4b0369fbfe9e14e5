"""Mobile base benchmark, no hardware needed: the real Tracer driver (python-can) against the emulated Tracer on
python-can's virtual bus (in-process: the virtual interface does not cross processes).

1. Command-to-feedback round trip: a new motion command until the driver decodes a 0x221 frame carrying it (the
   emulator answers with no velocity lag here, so this is bus + 20 ms feedback period + decoding), and the CPU of
   driver + emulator threads commanding at 50 Hz with nothing else running.
2. The Mobile ALOHA control loop at 50 Hz, everything emulated in the same loop: 4 arms (2 leaders read, 2 followers
   read + written, pty servo emulator), 3 software cameras at 480x640 matched by timestamp, and the base commanded
   and checked every step: late steps per 1,000, step time, CPU; once without the base for comparison.

    python bench/bench_base.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from assets_store import StoreLayout
from bench_hardware import process_cpu  # bench/ is the script's directory, so on sys.path
from hardware.aloha.teleop import LeaderArms
from hardware.base.config import BaseConfig
from hardware.base.emulator import TracerEmulator
from hardware.base.tracer import TracerBase
from hardware.loop import FixedRateLoop
from hardware.registry import RobotOptions, make_robot
from metrics_table import print_metrics

_channels = itertools.count()


def bench_round_trip(seconds: float) -> list[tuple[str, str]]:
    channel = f"bench-tracer-{next(_channels)}"
    emulator = TracerEmulator(channel, lag_s=0.0).start()
    # limits wide open: each command is a new value the feedback must carry
    config = BaseConfig(interface="virtual", channel=channel, max_linear_vel=2.0, max_linear_acc=1000.0)
    base = TracerBase(config, 50.0)
    base.connect()
    try:
        trips = []
        end = time.monotonic() + seconds / 2
        for k in itertools.count():
            if time.monotonic() > end:
                break
            target = 0.1 + 0.001 * (k % 500)
            start = time.perf_counter()
            sent = base.command(target, 0.0)
            deadline = start + 0.2
            while abs(base.velocity()[0] - sent[0]) > 5e-4 and time.perf_counter() < deadline:
                base.command(target, 0.0)  # keep commanding at a high rate (no command timeout)
                time.sleep(0.0005)
            trips.append((time.perf_counter() - start) * 1e3)
        loop = FixedRateLoop(50.0)
        cpu0, wall0 = time.process_time(), time.monotonic()
        report = loop.run(lambda i, t: base.command(0.3 * np.sin(t), 0.2) is not None, max_steps=int(seconds / 2 * 50))
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    finally:
        base.disconnect()
        emulator.stop()
    trips_ms = np.array(trips)
    return [
        ("base: command -> feedback p50/p99/max", f"{np.percentile(trips_ms, 50):.1f} / "
                                                  f"{np.percentile(trips_ms, 99):.1f} / {trips_ms.max():.1f} ms "
                                                  f"({len(trips_ms)} trips, each sent just after a feedback frame: the worst phase of the 20 ms period)"),
        ("base: 50 Hz commands alone: late steps", f"{report.late_steps} of {report.steps}"),
        ("base: CPU driver + emulator threads", f"{100 * cpu:.1f}% of a core"),
    ]


def bench_mobile_loop(seconds: float, store: Path) -> list[tuple[str, str]]:
    rows = []
    for with_base in (True, False):
        robot = make_robot("emulated-mobile", RobotOptions(resolution=(480, 640), layout=StoreLayout.at(store)))
        leaders = LeaderArms(robot.rig, gesture=False)
        robot.connect()
        leaders.connect()
        if not with_base:
            robot.passive_base()
        try:
            def step(index: int, t: float) -> bool:
                obs = robot.observe()  # followers, 3 cameras, base check
                action = leaders.next_action(obs)  # leaders + measured base velocity
                if with_base:
                    action[-2:] = (0.3 * np.sin(t), 0.2)
                robot.act(action)  # followers, base command
                return True

            steps = int(seconds * 50)
            emu_pid = robot.rig.emulator._process.pid
            cpu0, emu0, wall0 = time.process_time(), process_cpu(emu_pid), time.monotonic()
            report = FixedRateLoop(50.0).run(step, max_steps=steps)
            wall = time.monotonic() - wall0
            cpu, emu_cpu = time.process_time() - cpu0, process_cpu(emu_pid) - emu0
        finally:
            leaders.disconnect()
            robot.disconnect()
        label = "4 arms + 3 cams + base" if with_base else "4 arms + 3 cams, base not commanded"
        rows += [
            (f"loop: {label}: rate", f"{report.achieved_hz:.1f} Hz ({report.steps} steps)"),
            (f"loop: {label}: late steps per 1,000", f"{1000 * report.late_steps / max(report.steps, 1):.1f}"),
            (f"loop: {label}: step time p50/p99", f"{report.work_ms.p50:.2f} / {report.work_ms.p99:.2f} ms"),
            (f"loop: {label}: CPU process / servo emulator", f"{100 * cpu / wall:.0f}% / {100 * emu_cpu / wall:.0f}% "
                                                             "of a core"),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        rows = bench_round_trip(args.seconds) + bench_mobile_loop(args.seconds, Path(store))
    print_metrics("mobile base bench", rows)


if __name__ == "__main__":
    main()
