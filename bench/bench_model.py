"""ACT speed on this machine: train steps/s and batch-1 policy latency, our defaults vs an original-equivalent setup.

    ours       bf16 autocast where the CPU has native bf16 (else fp32), fused AdamW, channels_last, 1 decoder layer
    original   fp32, unfused (for-loop) AdamW, contiguous NCHW, 7 decoder layers computed (as the reference does)

Both run in the same process, interleaved, on random inputs; ratio = ours / original (steps/s) and ours / original
(latency). Then the demo's backbone choice: the small preset at 60x80 with ResNet18 cut after layer3 against the
full ResNet18 (ratio = 3 stages / 4 stages, train steps/s). Then the data loader: samples/s from a recorded
dataset (JPEG decode + resize in workers) against what the training step consumes. `--quick` measures fewer steps and cells.

    python bench/bench_model.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from model.act import ACT, act_loss
from model.config import ACTConfig

RESOLUTIONS = [(480, 640), (240, 320), (120, 160)]
OURS_BF16 = False


def make_model(base: ACTConfig, cams: int, original: bool) -> ACT:
    cfg = base.model_copy(update=dict(camera_names=[f"cam{i}" for i in range(cams)], pretrained_backbone=False,
                                      backbone_norm="frozen_bn", dec_layers=7 if original else 1))
    m = ACT(cfg)
    if not original:
        m.set_channels_last(True)
    return m


def batch(cfg: ACTConfig, bs: int, cams: int, hw):
    return (torch.randn(bs, cfg.state_dim), torch.rand(bs, cams, 3, *hw), torch.randn(bs, cfg.chunk_size, cfg.action_dim),
            torch.zeros(bs, cfg.chunk_size, dtype=torch.bool))


def train_rate(model: ACT, original: bool, inputs, steps: int, warmup: int = 1) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=1e-4,
                            fused=None if original else True, foreach=False if original else None)
    model.train()
    q, im, a, p = inputs
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=OURS_BF16 and not original):
            a_hat, mu, lv = model(q, im, a, p)
        loss = act_loss(model.cfg, a_hat, a, p, mu, lv)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return 1.0 / float(np.median(times))


@torch.inference_mode()
def latency(model: ACT, original: bool, inputs, reps: int, warmup: int = 1) -> float:
    model.eval()
    q, im = inputs[0][:1], inputs[1][:1]
    times = []
    for i in range(warmup + reps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=OURS_BF16 and not original):
            model(q, im)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000


def loader_rate(hw, cams: int, workers: int, batches: int) -> float:
    """Samples/s of the real data path from a freshly recorded 480x640 dataset, resized to hw."""
    from assets_store import CameraSpec, EpisodeInfo, EpisodeReader, EpisodeWriter, StoreLayout
    from assets_store.dataset import build_manifest, episode_content_hash, write_dataset
    from assets_store.stats import dataset_stats, episode_partial_stats
    from model.data import ChunkDataset, ResumableSampler, make_loader

    root = Path(tempfile.mkdtemp(prefix="bench_model_"))
    layout = StoreLayout(root)
    specs = [CameraSpec(f"cam{i}", 480, 640) for i in range(cams)]
    rng = np.random.default_rng(0)
    refs, parts = [], []
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for e in range(2):
        w = EpisodeWriter(layout, "bench", EpisodeInfo(robot="b", joint_names=[f"j{i}" for i in range(14)], fps=50, cameras=specs), index=e)
        for t in range(40):
            frame = np.roll(base, t * 3, axis=1)
            w.add_step(rng.normal(size=14), rng.normal(size=14), t / 50, images={s.name: frame for s in specs})
        path = w.close()
        r = EpisodeReader(path)
        parts.append(episode_partial_stats(r.qpos, r.action))
        refs.append(("bench", path.name, episode_content_hash(path), len(r)))
    m = build_manifest(refs, val_fraction=0.0, fps=50, joint_names=[f"j{i}" for i in range(14)],
                       action_names=[f"j{i}" for i in range(14)], camera_names=[s.name for s in specs])
    ds_dir = write_dataset(layout, m, dataset_stats(parts))
    ds = ChunkDataset(ds_dir, "train", chunk_size=100, image_size=hw)
    loader = make_loader(ds, 8, sampler=ResumableSampler(ds, seed=0), num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up excluded
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            n += len(next(it)["qpos"])
        except StopIteration:
            it = iter(loader)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 steps per cell, 1 camera, 120x160 (+ small at 240x320)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="ours with bf16 autocast (default: only where the CPU has native bf16)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.quick else 5)
    from model.config import bf16_is_fast

    global OURS_BF16
    OURS_BF16 = bf16_is_fast() if args.bf16 is None else args.bf16
    print(f"ours: bf16 autocast {'on' if OURS_BF16 else 'off (no native bf16 on this CPU: it is ~2x slower)'}")
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability {torch.backends.cpu.get_cpu_capability()}")
    header = f"{'config':6} {'res':>8} {'cams':>4} | {'train steps/s ours':>18} {'orig':>7} {'ratio':>6} | {'latency ms ours':>15} {'orig':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    rows = []
    for name, base in (("paper", ACTConfig()), ("small", ACTConfig.small())):
        for hw in RESOLUTIONS:
            if args.quick and hw != (120, 160) and not (name == "small" and hw == (240, 320)):
                continue
            for cams in (1, 3):
                if args.quick and cams == 3:
                    continue
                inputs = batch(base, 8, cams, hw)
                ours = make_model(base, cams, original=False)
                orig = make_model(base, cams, original=True)
                orig.load_state_dict(ours.state_dict(), strict=False)
                tr_o, tr_r = train_rate(ours, False, inputs, steps), train_rate(orig, True, inputs, steps)
                la_o, la_r = latency(ours, False, inputs, steps + 3), latency(orig, True, inputs, steps + 3)
                rows.append((name, hw, cams, tr_o, tr_r, la_o, la_r))
                print(f"{name:6} {hw[0]:>4}x{hw[1]:<4} {cams:>3} | {tr_o:>18.2f} {tr_r:>7.2f} {tr_o / tr_r:>5.2f}x | "
                      f"{la_o:>15.1f} {la_r:>8.1f} {la_o / la_r:>5.2f}x", flush=True)
    print()
    print("demo backbone: small preset, 60x80, 1 camera, fp32, train steps/s (ratio = 3 stages / 4 stages)")
    inputs = batch(ACTConfig.small(), 8, 1, (60, 80))
    rates = {}
    for stages in (4, 3):
        m = ACT(ACTConfig.small(pretrained_backbone=False, backbone_norm="group", backbone_stages=stages))
        m.set_channels_last(True)
        rates[stages] = train_rate(m, False, inputs, steps * 4, warmup=2)
        print(f"  ResNet18 to layer{stages}: {rates[stages]:6.2f} steps/s")
    print(f"  ratio {rates[3] / rates[4]:.2f}x")
    print()
    print("data loader (2 workers, JPEG 480x640 -> training resolution, batch 8) vs small-preset training consumption")
    for hw in [(120, 160)] if args.quick else RESOLUTIONS:
        for cams in (1, 3) if not args.quick else (1,):
            rate = loader_rate(hw, cams, workers=2, batches=4 if args.quick else 10)
            need = next((r[3] * 8 for r in rows if r[0] == "small" and r[1] == hw and r[2] == cams), float("nan"))
            print(f"  {hw[0]}x{hw[1]} {cams} cam: loader {rate:7.1f} samples/s, training consumes {need:7.1f} samples/s")


if __name__ == "__main__":
    main()
