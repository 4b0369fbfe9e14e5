"""Training-sample reads from an object store: a loopback S3 server (moto) against local disk, in the same run.

One dataset of recorded-like episodes (JPEG frames, one chunk per frame) is read as the trainer reads it
(`model.data.ChunkDataset`, one sample = every camera's frame at one step, decoded and resized) from

    local disk      the store on this machine
    S3, no cache    every frame fetched from the bucket (s3fs over HTTP on 127.0.0.1)
    S3, cache cold  the node-local chunk cache empty: fetched, then written to the cache
    S3, cache warm  the same samples again: served from the cache directory

Loopback S3 has no network latency: a real bucket adds tens of milliseconds per fetch, which only widens the gap the
cache closes. Needs the `dev` extra (moto[server], s3fs).

    python bench/bench_object_store.py [--episodes 4] [--steps 40] [--samples 120] [--hw 240x320] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
# This checkout's packages first, the tests' kits (the loopback S3 server) last: tests/ holds folders named like the
# packages (tests/assets_store, ...) that would otherwise be imported as empty namespace packages.
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))

from assets_store import CameraSpec, EpisodeInfo, EpisodeReader, EpisodeWriter, StoreLayout, finalize_session  # noqa: E402
from assets_store.dataset import build_manifest, episode_content_hash, write_dataset  # noqa: E402
from assets_store.remote import RemoteStore  # noqa: E402
from assets_store.stats import dataset_stats, episode_partial_stats  # noqa: E402
from assets_store.sync import sync_session  # noqa: E402
from model.data import ChunkDataset, EpisodeSource  # noqa: E402
from s3_kit import loopback_s3  # noqa: E402


def make_store(root: Path, episodes: int, steps: int, hw: tuple[int, int], cams: int) -> Path:
    layout = StoreLayout(root)
    specs = [CameraSpec(f"cam{i}", *hw) for i in range(cams)]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
    refs, parts = [], []
    joints = [f"j{i}" for i in range(14)]
    for e in range(episodes):
        w = EpisodeWriter(layout, "bench", EpisodeInfo(robot="b", joint_names=joints, fps=50, cameras=specs), index=e)
        for t in range(steps):
            frame = np.roll(base, t * 3 + e, axis=1)
            w.add_step(rng.normal(size=14), rng.normal(size=14), t / 50, images={s.name: frame for s in specs})
        path = w.close()
        r = EpisodeReader(path)
        parts.append(episode_partial_stats(r.qpos, r.action))
        refs.append(("bench", path.name, episode_content_hash(path), len(r)))
    finalize_session(layout, "bench")
    m = build_manifest(refs, val_fraction=0.0, fps=50, joint_names=joints, action_names=joints,
                       camera_names=[s.name for s in specs])
    return write_dataset(layout, m, dataset_stats(parts))


ROWS = ("local disk", "S3, no cache", "S3, cache cold", "S3, cache warm")


def samples_per_s(ds: ChunkDataset, order: list[int]) -> float:
    t = time.perf_counter()
    for i in order:
        ds[i]
    return len(order) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--cams", type=int, default=2)
    ap.add_argument("--hw", default="240x320")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker (model.data._worker_init); steadier on a shared machine
    hw = tuple(int(x) for x in args.hw.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench_object_store_"))
    dataset_dir = make_store(work / "store", args.episodes, args.steps, hw, args.cams)
    image_size = (hw[0] // 2, hw[1] // 2)
    with loopback_s3(work / "moto.log", "bench") as env:
        os.environ.update(env)
        url = "s3://bench/aloha"
        t = time.perf_counter()
        report = sync_session(StoreLayout(work / "store"), "bench", RemoteStore.at(url))
        sync_s = time.perf_counter() - t
        kw = dict(chunk_size=20, image_size=image_size)
        local = ChunkDataset(dataset_dir, "all", source=EpisodeSource(), **kw)
        order = np.random.default_rng(1).permutation(len(local))[: args.samples].tolist()
        samples_per_s(local, order)  # warm-up (torch kernels, page cache, open readers), not measured
        # Interleaved rounds, median per row: a shared machine's load drifts; each round's cache starts empty.
        rates: dict[str, list[float]] = {name: [] for name in ROWS}
        for r in range(args.rounds):
            rates["local disk"].append(samples_per_s(local, order))
            remote = ChunkDataset(dataset_dir, "all", source=EpisodeSource(url), **kw)
            rates["S3, no cache"].append(samples_per_s(remote, order))
            cached = ChunkDataset(dataset_dir, "all", source=EpisodeSource(url, work / f"cache-{r}", 1 << 30), **kw)
            rates["S3, cache cold"].append(samples_per_s(cached, order))
            rates["S3, cache warm"].append(samples_per_s(cached, order))
        rows = [(name, float(np.median(rates[name]))) for name in ROWS]
    print(f"{args.episodes} episodes x {args.steps} steps, {args.cams} cameras {hw[0]}x{hw[1]} JPEG, "
          f"{args.samples} random samples resized to {image_size[0]}x{image_size[1]}; sync of "
          f"{len(report.uploaded)} files ({report.bytes_uploaded / 1e6:.1f} MB) took {sync_s:.1f} s; median of "
          f"{args.rounds} interleaved rounds ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"| {'read from':<16} | {'samples/s':>9} | {'vs local':>8} |")
    print(f"|{'-' * 18}|{'-' * 11}|{'-' * 10}|")
    for name, rate in rows:
        print(f"| {name:<16} | {rate:9.1f} | {rate / rows[0][1]:7.2f}x |")


if __name__ == "__main__":
    main()
