"""Simulator cost per 50 Hz control step (physics + offscreen rendering) and recording throughput.

    python bench/bench_sim.py [--steps 20] [--episodes 1] [--only mobile]

Rendering is software OpenGL (EGL or OSMesa); shadows and multisampling are off, as in recording.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from assets_store import StoreLayout
from hardware.recorder import RecordConfig, record_session
from hardware.sim import ScriptedDemonstrator, make_sim_robot, plan_demo
from hardware.sim.gl import select_gl_backend
from hardware.sim.mobile_scene import MOBILE_CAMERAS

RESOLUTIONS = [(480, 640), (240, 320), (120, 160)]


def per_step_ms(cameras, resolution, steps: int) -> tuple[float, float]:
    """(physics ms, render ms) per control step, averaged over `steps` steps of a scripted demo."""
    robot = make_sim_robot("transfer_cube", cameras=cameras, resolution=resolution)
    obs = robot.reset(seed=0)
    actions = plan_demo(robot.task, robot.object_poses()).actions
    robot.observe()  # warm-up: first frame compiles shaders
    t_phys = t_render = 0.0
    for t in range(steps):
        a = time.perf_counter()
        robot.act(actions[t])
        b = time.perf_counter()
        obs = robot.observe()
        c = time.perf_counter()
        t_phys += b - a
        t_render += c - b
    robot.disconnect()
    assert obs.qpos.shape == (14,)
    return t_phys / steps * 1e3, t_render / steps * 1e3


# The same three views on each rig: ALOHA's top camera + wrists, Mobile ALOHA's head camera + wrists.
STATIC_THREE = ["top", "left_wrist", "right_wrist"]


def mobile_vs_static(steps: int, resolution=(240, 320)) -> list[tuple[str, str, float, float]]:
    """(robot, cameras, physics ms, render ms) per control step for the static and the mobile transfer cube, in the
    same run: physics alone over a whole scripted episode (the mobile one drives, then transfers), and physics +
    three cameras over its first `steps` steps."""
    rows = []
    for task, three in (("transfer_cube", STATIC_THREE), ("mobile_transfer_cube", list(MOBILE_CAMERAS))):
        for label, cams, n in (("none", [], None), ("3", three, steps)):
            robot = make_sim_robot(task, cameras=cams, resolution=resolution)
            robot.reset(seed=0)
            demo = ScriptedDemonstrator()
            demo.start_episode(robot, 0)
            actions = demo.plan.actions[: n or len(demo.plan.actions)]
            if cams:
                robot.observe()  # warm-up: first frame compiles shaders
            t_phys = t_render = 0.0
            for action in actions:
                a = time.perf_counter()
                robot.act(action)
                b = time.perf_counter()
                if cams:
                    robot.observe()
                t_phys += b - a
                t_render += time.perf_counter() - b
            robot.disconnect()
            rows.append((robot.name, label, t_phys / len(actions) * 1e3, t_render / len(actions) * 1e3))
    return rows


def recording_throughput(episodes: int, resolution=(480, 640), cameras=None) -> tuple[float, float]:
    """Episodes per minute and wall steps/s recording sim-transfer-cube defaults (400 steps, fast mode)."""
    with tempfile.TemporaryDirectory() as d:
        robot = make_sim_robot("transfer_cube", cameras=cameras, resolution=resolution)
        cfg = RecordConfig(session="bench", episodes=episodes, episode_len=400, realtime=False)
        start = time.perf_counter()
        result = record_session(robot, ScriptedDemonstrator(), StoreLayout.at(d), cfg)
        elapsed = time.perf_counter() - start
    steps = sum(e.steps for e in result.episodes)
    return episodes / elapsed * 60.0, steps / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="control steps timed per configuration")
    ap.add_argument("--episodes", type=int, default=1, help="episodes recorded for the throughput figure")
    ap.add_argument("--only", choices=["mobile"], help="run only the mobile-against-static table")
    args = ap.parse_args()

    print(f"MUJOCO_GL={select_gl_backend()}, {os.cpu_count()} CPUs")
    print(f"\nmobile against static (240x320; physics alone over a scripted episode, cameras over {args.steps} steps)")
    print(f"{'robot':>24} | {'cameras':>7} | {'physics ms':>10} | {'render ms':>9} | {'total ms/step':>13}")
    print("-" * 76)
    for name, label, phys, render in mobile_vs_static(args.steps):
        print(f"{name:>24} | {label:>7} | {phys:10.2f} | {render:9.2f} | {phys + render:13.2f}", flush=True)
    if args.only == "mobile":
        return

    all_cams = make_sim_robot("transfer_cube", cameras=["all"]).cameras
    print(f"\n{args.steps} steps per row, all cameras = {len(all_cams)} ({', '.join(c.name for c in all_cams)})")
    print(f"{'resolution':>10} | {'cameras':>7} | {'physics ms':>10} | {'render ms':>9} | {'total ms/step':>13} | {'max Hz':>6}")
    print("-" * 72)
    for res in RESOLUTIONS:
        for label, cams in (("1 (top)", ["top"]), ("all", ["all"])):
            phys, render = per_step_ms(cams, res, args.steps)
            total = phys + render
            print(f"{res[0]}x{res[1]:<5} | {label:>7} | {phys:10.2f} | {render:9.2f} | {total:13.2f} | "
                  f"{1e3 / total:6.1f}", flush=True)
    per_min, steps_s = recording_throughput(args.episodes)
    print(f"\nrecording (aloha record defaults: sim-transfer-cube, top 480x640, 400 steps, --fast, JPEG q90): "
          f"{per_min:.1f} episodes/min ({steps_s:.0f} steps/s, real time = 50)")


if __name__ == "__main__":
    main()
