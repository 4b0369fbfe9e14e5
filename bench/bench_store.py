"""Episode store benchmark: writer throughput and random training-sample reads, against baselines in the same run.

    python bench/bench_store.py [--steps 200] [--samples 300]

Writer: 3 cameras of 480x640 camera-like frames at JPEG 90, vs the real-time need (3 x 50 Hz) and vs writing the
same episode to an ALOHA-style uncompressed HDF5 file. Reads: one random step (all cameras + qpos) per sample, vs the
ALOHA HDF5 layout opened per sample (as the original ACT loader does) and vs bare JPEG decoding of the same frames.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console
from rich.table import Table

from assets_store import EpisodeReader, EpisodeWriter, StoreLayout
from assets_store.codec import decode_jpeg
from assets_store.synthetic import CameraLikeFrames, joint_trajectory, synthetic_info

CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
H, W = 480, 640


def make_frames(steps: int) -> dict[str, list[np.ndarray]]:
    distinct = min(steps, 40)  # cycle a pool of real-looking frames; generating them is not what we measure
    return {c: [CameraLikeFrames(H, W, seed=i)(t) for t in range(distinct)] for i, c in enumerate(CAMS)}


def bench_writer(root: Path, steps: int, pool) -> tuple[float, float, Path]:
    layout = StoreLayout(root)
    info = synthetic_info({c: (H, W) for c in CAMS})
    qpos = joint_trajectory(steps, 14)
    t0 = time.perf_counter()
    w = EpisodeWriter(layout, "bench", info)
    for t in range(steps):
        w.add_step(qpos[t], qpos[t], t / 50, images={c: pool[c][t % len(pool[c])] for c in CAMS})
    path = w.close()
    dt = time.perf_counter() - t0
    return steps * len(CAMS) / dt, w.stats.bytes_written / w.stats.frames_written, path


def bench_hdf5_writer(path: Path, steps: int, pool) -> float:
    qpos = joint_trajectory(steps, 14)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:  # the original recorder: arrays in memory, one write per camera at the end
        f.attrs["sim"] = False
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=qpos)
        f.create_dataset("action", data=qpos)
        img = obs.create_group("images")
        for c in CAMS:
            ds = img.create_dataset(c, shape=(steps, H, W, 3), dtype="uint8", chunks=(1, H, W, 3))
            for t in range(steps):
                ds[t] = pool[c][t % len(pool[c])]
    return steps * len(CAMS) / (time.perf_counter() - t0)


def bench_reads(store_ep: Path, h5_path: Path, samples: int) -> dict[str, float]:
    reader = EpisodeReader(store_ep)
    rng = random.Random(0)
    steps = [rng.randrange(len(reader)) for _ in range(samples)]
    out = {}

    t0 = time.perf_counter()
    for t in steps:
        _ = reader.qpos[t]
        for c in CAMS:
            reader.frame(c, t)
    out["store"] = samples / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for t in steps:
        with h5py.File(h5_path, "r") as f:  # open per sample, like the original loader
            _ = f["/observations/qpos"][t]
            for c in CAMS:
                _ = f[f"/observations/images/{c}"][t]
    out["hdf5"] = samples / (time.perf_counter() - t0)

    blobs = {(c, t): reader.frame_bytes(c, t) for t in set(steps) for c in CAMS}
    t0 = time.perf_counter()
    for t in steps:
        for c in CAMS:
            decode_jpeg(blobs[(c, t)])
    out["decode"] = samples / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--samples", type=int, default=300)
    args = ap.parse_args()
    console = Console()
    pool = make_frames(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # drop the page cache effect on reads as far as we can without root tricks: read after write, same for both
        fps_store, bytes_per_frame, ep = bench_writer(tmp / "store", args.steps, pool)
        fps_h5 = bench_hdf5_writer(tmp / "episode.hdf5", args.steps, pool)
        reads = bench_reads(ep, tmp / "episode.hdf5", args.samples)
        h5_bytes = (tmp / "episode.hdf5").stat().st_size / (args.steps * len(CAMS))

    need = 50 * len(CAMS)
    t = Table(title=f"Writer: {len(CAMS)} cameras {H}x{W}, {args.steps} steps, JPEG q90, {os.cpu_count()} cores")
    for col in ("method", "frames/s", "x real time (150/s)", "bytes/frame", "vs HDF5"):
        t.add_column(col, justify="right")
    t.add_row("Zarr store (ours)", f"{fps_store:.0f}", f"{fps_store / need:.1f}x", f"{bytes_per_frame / 1e3:.0f} KB",
              f"{fps_store / fps_h5:.2f}x")
    t.add_row("ALOHA HDF5, uncompressed", f"{fps_h5:.0f}", f"{fps_h5 / need:.1f}x", f"{h5_bytes / 1e3:.0f} KB", "1.00x")
    console.print(t)
    t = Table(title=f"Random training-sample reads (1 step: {len(CAMS)} cameras + qpos), {args.samples} samples")
    for col in ("method", "samples/s", "vs decode limit", "vs HDF5 per-sample open"):
        t.add_column(col, justify="right")
    for name, label in (("store", "Zarr store (ours)"), ("hdf5", "ALOHA HDF5, open per sample"),
                        ("decode", "bare JPEG decode (limit)")):
        t.add_row(label, f"{reads[name]:.1f}", f"{reads[name] / reads['decode']:.0%}", f"{reads[name] / reads['hdf5']:.2f}x")
    console.print(t)
    console.print(f"goals: writer >= 600 frames/s -> {'met' if fps_store >= 600 else 'NOT met'}; "
                  f"reads >= 90% of decode limit -> {'met' if reads['store'] >= 0.9 * reads['decode'] else 'NOT met'}")


if __name__ == "__main__":
    main()
