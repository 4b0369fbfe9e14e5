"""Real-time inference: batch-1 latency of each inference path, and the sim transfer cube under injected delays.

1. Latency (untrained weights; the forward alone on inputs already on the device, median of N calls):
   CPU: PyTorch eager against ONNX Runtime for the demo policy's architecture (1 camera 60x80) and the paper config
   with 3 cameras at 240x320 and 480x640 (ratio = eager / ONNX, > 1: ONNX faster). Where CUDA exists: the paper config
   at 480x640 with 3 and 4 cameras, eager against the captured CUDA graph, fp32 and bf16 (ratio = eager fp32 / row).
2. Sim transfer cube with a trained policy (`--policy DIR`, default: the champion of `--store`) and an inference
   delay added to every query (0, 40, 80, 150 ms): success on `--episodes` held-out seeds and the loop period,
   synchronous against asynchronous (`hardware.async_policy`). In the simulator a synchronous loop's physics waits
   for the policy, so its success cannot depend on the delay: it is measured once on the virtual clock, and its
   period in real time over `--sync-steps` steps per delay (the delay stretches it). Asynchronous runs in real time.

    python bench/bench_realtime.py [--only latency|sim] [--episodes 50] [--policy DIR | --store STORE]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hardware.sim.gl import select_gl_backend
from metrics_table import print_metrics  # bench/ is the script's directory, so on sys.path
from model.act import ACT
from model.config import DEMO, PAPER, ACTConfig
from model.cuda_graph import AutocastForward, CudaGraphForward
from model.onnx_export import InferenceForward, onnx_forward

DELAYS_MS = (0, 40, 80, 150)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_summary() -> str:
    """The CPU's model name and the vector/matrix flags that decide which precision and backend are fast."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return f"{model}; flags: {' '.join(f for f in CPU_FLAGS if f in flags) or 'none of ' + ', '.join(CPU_FLAGS)}"


# ----------------------------------------------------------------------------- 1. latency
def untrained(act: ACTConfig, cameras: int, device: str = "cpu") -> ACT:
    torch.manual_seed(0)
    cfg = act.model_copy(update=dict(camera_names=[f"cam{i}" for i in range(cameras)], pretrained_backbone=False))
    return ACT(ACTConfig(**cfg.model_dump())).to(device).eval()


def median_ms(fns: list[Callable[[], Any]], reps: int, warmup: int = 2,
              sync: Callable[[], None] = lambda: None) -> list[float]:
    """Median ms of each function, calls interleaved so that a change of load on a shared machine hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    with torch.inference_mode():
        for i in range(warmup + reps):
            for fn, ts in zip(fns, times):
                start = time.perf_counter()
                fn()
                sync()
                if i >= warmup:
                    ts.append(time.perf_counter() - start)
    return [float(np.median(ts)) * 1e3 for ts in times]


CPU_CASES = [  # (label, architecture, cameras, (H, W), calls timed)
    ("demo policy, 1 cam 60x80", DEMO.act_config(backbone_norm="group"), 1, (60, 80), 50),
    ("paper, 3 cams 240x320", PAPER.act_config(), 3, (240, 320), 10),
    ("paper, 3 cams 480x640", PAPER.act_config(), 3, (480, 640), 5),
]


def bench_cpu_latency(threads: int | None) -> list[tuple[str, str]]:
    rows = []
    for label, act, cams, hw, reps in CPU_CASES:
        model = untrained(act, cams)
        q, imgs = torch.zeros(1, act.state_dim), torch.rand(1, cams, 3, *hw)
        eager = InferenceForward(model).eval()
        onnx = onnx_forward(model, cams, hw, threads)
        t_eager, t_onnx = median_ms([lambda: eager(q, imgs), lambda: onnx(q, imgs)], reps)
        rows.append((f"CPU {label}: eager / ONNX Runtime", f"{t_eager:.1f} / {t_onnx:.1f} ms  ratio {t_eager / t_onnx:.2f}x"
                                                           f"  ({reps} calls)"))
        print(rows[-1][0], rows[-1][1], flush=True)
    return rows


def bench_cuda_latency(reps: int = 50) -> list[tuple[str, str]]:
    rows = []
    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    for cams in (3, 4):
        model = untrained(PAPER.act_config(), cams, "cuda")
        forward = InferenceForward(model).eval()
        q, imgs = torch.zeros(1, model.cfg.state_dim, device=device), torch.rand(1, cams, 3, 480, 640, device=device)
        cases = [(path, precision) for path in ("eager", "cuda-graph") for precision in ("fp32", "bf16")]
        fns = [AutocastForward(forward, precision) if path == "eager"
               else CudaGraphForward(forward, model.cfg.state_dim, cams, (480, 640), device, precision)
               for path, precision in cases]
        times = median_ms([lambda fn=fn: fn(q, imgs) for fn in fns], reps, warmup=5, sync=sync)
        for (path, precision), t in zip(cases, times):  # ratio against eager fp32, the first case
            rows.append((f"CUDA paper, {cams} cams 480x640: {path} {precision}", f"{t:.2f} ms  ratio {times[0] / t:.2f}x"))
            print(rows[-1][0], rows[-1][1], flush=True)
    return rows


# ----------------------------------------------------------------------------- 2. sim under delays
class DelayedPolicy:
    """A policy whose every query takes `delay_s` longer (a slower computer or a remote server, in effect)."""

    def __init__(self, policy: Any, delay_s: float):
        self.policy, self.delay_s = policy, delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def served_chunk(self, qpos, images):
        time.sleep(self.delay_s)
        return self.policy.served_chunk(qpos, images)

    def act(self, qpos, images):
        time.sleep(self.delay_s)
        return self.policy.act(qpos, images)


def bench_sim(policy_dir: Path, episodes: int, sync_steps: int, backend: str, baseline_episodes: int = 0) -> None:
    from hardware.async_policy import AsyncInference
    from hardware.registry import episode_len
    from hardware.rollout import make_robot_for_policy, run_rollouts, success_summary
    from hardware.sim import heldout_seeds
    from model.policy import Policy

    robot_name = "sim-transfer-cube"
    policy = Policy.from_bundle(policy_dir, backend=backend)
    seeds, steps = heldout_seeds(episodes), episode_len(robot_name)

    def run(delay_ms: int, **kw: Any):
        robot = make_robot_for_policy(robot_name, policy, resolution=tuple(policy.image_size))
        return run_rollouts(robot, DelayedPolicy(policy, delay_ms / 1e3), **kw)

    print(f"\nsim transfer cube: {policy_dir} ({policy.inference_path}, {policy.image_size[0]}x{policy.image_size[1]} "
          f"{', '.join(policy.camera_names)}, temporal ensemble k={policy.temporal_ensemble_k}), "
          f"{episodes} held-out seeds, {steps} steps", flush=True)
    t0 = time.perf_counter()
    sync_success = run(0, seeds=seeds, num_steps=steps, realtime=False).summary  # the virtual clock: any delay
    print(f"  sync success on the virtual clock: {sync_success.successes}/{sync_success.episodes} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    header = (f"{'delay ms':>8} | {'mode':>5} | {'success':>12} | {'period p50/p99 ms':>17} | {'late / steps':>13} | "
              f"{'fallback':>8} | {'chunk age p50/max':>17} | {'inference p50 ms':>16}")
    lines = []
    for delay in DELAYS_MS:
        sync = run(delay, seeds=seeds[:1], num_steps=sync_steps, realtime=True, stop_on_success=False)
        lines.append(f"{delay:>8} | {'sync':>5} | {_rate(sync_success):>12} | "
                     f"{sync.period_ms.p50:>7.1f} / {sync.period_ms.p99:<7.1f} | {_late(sync):>13} | {'-':>8} | "
                     f"{'-':>17} | {sync.latency_ms.p50:>16.1f}")
        print(lines[-1], flush=True)
        t0 = time.perf_counter()
        asyn = run(delay, seeds=seeds, num_steps=steps, async_inference=AsyncInference("hold"))
        lines.append(_async_row(delay, "async", asyn))
        print(lines[-1], f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        if not baseline_episodes:
            continue
        same = success_summary(asyn.episodes[:baseline_episodes])  # async on the variant's seeds, to compare
        nice = run(delay, seeds=seeds[:baseline_episodes], num_steps=steps,
                   async_inference=AsyncInference("hold", worker_nice=10))
        lines.append(_async_row(delay, "nice", nice))
        print(lines[-1], f"  (async on these {baseline_episodes} seeds: {_rate(same)})", flush=True)
        lines.append(f"{'':>8} | {'':>5} | async on the same {baseline_episodes} seeds: {_rate(same)}")
    print(f"\nsim transfer cube under injected inference delays ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; {cpu_summary()})")
    print(header)
    print("-" * len(header))
    print("\n".join(lines))
    print(f"sync: success measured once on the virtual clock (the simulator's physics waits for the policy, so the "
          f"delay cannot change it); period in real time over {sync_steps} steps of one episode.\n"
          f"async: real time, every episode; fallback = steps no chunk covered (hold the last action); chunk age = "
          f"steps from the observation a chunk was predicted from to its use; nice = async with the worker at niceness +10 "
          f"(AsyncInference.worker_nice, opt-in), on the first {baseline_episodes} seeds. Goal: async success within 5 points of "
          f"the 0 ms success up to 80 ms, period p99 < 22 ms.")


def _async_row(delay: int, name: str, report) -> str:
    age = report.chunk_age_steps
    return (f"{delay:>8} | {name:>5} | {_rate(report.summary):>12} | "
            f"{report.period_ms.p50:>7.1f} / {report.period_ms.p99:<7.1f} | {_late(report):>13} | "
            f"{report.fallback_steps:>8} | {age.p50:>7.0f} / {age.max:<7.0f} | {report.latency_ms.p50:>16.1f}")


def _late(report) -> str:
    return f"{report.late_steps} / {sum(e.steps for e in report.episodes)}"


def _rate(summary) -> str:
    return f"{summary.rate:.0%} ({summary.successes}/{summary.episodes})" if summary.rate is not None else "n/a"


def default_policy(store: str | None) -> Path:
    from assets_store import StoreLayout
    from assets_store.layout import CHAMPION, DEFAULT_MODEL_NAME

    return StoreLayout.at(store).deploy_path(DEFAULT_MODEL_NAME, CHAMPION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["latency", "sim"], help="run one part")
    parser.add_argument("--episodes", type=int, default=50, help="held-out seeds per sim configuration")
    parser.add_argument("--sync-steps", type=int, default=100, help="real-time steps timing the synchronous period")
    parser.add_argument("--policy", type=Path, help="a trained bundle (default: the champion of --store)")
    parser.add_argument("--store", help="store root for the default policy (default: the configured store)")
    parser.add_argument("--baseline-episodes", type=int, default=10, help=(
        "seeds per delay for the async variant 'nice' (worker niceness +10); 0: skip"))
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="the sim policy's backend")
    parser.add_argument("--threads", type=int, default=1, help=(
        "intra-op threads of torch and ONNX Runtime; 0: the libraries' defaults. On a shared, loaded CPU two torch "
        "threads measured 10-50x slower than one (spinning workers waiting for a busy core)"))
    args = parser.parse_args()
    if args.baseline_episodes < 0 or args.episodes < 1:
        parser.error("--episodes: at least 1; --baseline-episodes: 0 or more")
    select_gl_backend()  # before MuJoCo is imported
    threads = args.threads or None
    if threads:
        torch.set_num_threads(threads)
    print(f"{cpu_summary()}; {os.cpu_count()} CPUs; torch {torch.get_num_threads()} threads, ONNX Runtime "
          f"{threads or 'default'} threads")
    if args.only != "sim":
        rows = bench_cpu_latency(threads)
        if torch.cuda.is_available():
            rows += bench_cuda_latency()
        else:
            rows.append(("CUDA", "no CUDA device: eager/graph, fp32/bf16 not measured"))
        print_metrics(f"batch-1 latency, forward only (untrained weights; {cpu_summary()})", rows)
    if args.only != "latency":
        policy = args.policy or default_policy(args.store)
        if not policy.is_dir():
            raise SystemExit(f"error: no policy bundle at {policy}; pass --policy DIR or --store STORE")
        bench_sim(policy, args.episodes, args.sync_steps, args.backend, min(args.baseline_episodes, args.episodes))


if __name__ == "__main__":
    main()
