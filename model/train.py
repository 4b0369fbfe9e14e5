"""Train ACT on a store dataset: `python -m model.train --dataset <store>/datasets/<id> --out DIR [--steps N]`.

Also `train(...)` for in-process callers (the Dagster asset). Multi-process through torchrun:
`torchrun --nproc-per-node 2 -m model.train ...` (gloo on CPU, nccl on GPUs; DistributedSampler shards the data,
rank 0 writes checkpoints and reports metrics).

Exact resume on CPU: samples are pure functions of their index, the sampler order is a function of (seed, epoch), the
loaders own their generators, and the checkpoint carries model/optimizer/scheduler, every rank's RNG state and the
number of batches consumed. So a resumed run replays the uninterrupted run's steps bit for bit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from assets_store.schema import parse_hxw
from assets_store.stats import stats_to_json
from model.act import ACT, act_loss, count_parameters
from model.backbone import load_pretrained_into, resolve_pretrained
from model.callbacks import TrainCallback
from model.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from model.config import ACTConfig, TrainConfig
from model.data import ChunkDataset, ResumableSampler, fixed_subset, make_loader


@dataclass
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    best_val_loss: float
    final_train_loss: float
    steps: int
    wall_s: float
    history: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------- distributed helpers
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialized the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        owns = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def _all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    if info.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


# ----------------------------------------------------------------------------- one step
def batch_to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["images"] = out["images"].float().div_(255.0)  # uint8 over IPC (4x smaller), float here
    return out


def compute_loss(model: nn.Module, batch: dict[str, torch.Tensor], cfg: ACTConfig, bf16: bool) -> dict[str, torch.Tensor]:
    """Forward + loss for one batch already on the device (shared by training, validation and the DDP test)."""
    device_type = batch["qpos"].device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
        a_hat, mu, logvar = model(batch["qpos"], batch["images"], batch["actions"], batch["is_pad"])
    return act_loss(cfg, a_hat, batch["actions"], batch["is_pad"], mu, logvar)


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, cfg: ACTConfig, bf16: bool, device, info: DistInfo | None = None) -> dict[str, float]:
    """Mean loss over a loader in eval mode (posterior mean z, no dropout): touches no RNG."""
    was_training = model.training
    model.eval()
    sums = [0.0, 0.0, 0.0]
    for batch in loader:
        b = batch_to(batch, device)
        n = b["qpos"].shape[0]
        losses = compute_loss(model, b, cfg, bf16)
        sums[0] += float(losses["loss"]) * n
        sums[1] += float(losses["l1"]) * n
        sums[2] += n
    model.train(was_training)
    loss, l1, n = _all_reduce_sum(sums, info or DistInfo())
    return {"val_loss": loss / max(n, 1), "val_l1": l1 / max(n, 1)}


def make_optimizer(model: ACT, act_cfg: ACTConfig, cfg: TrainConfig, device: str) -> torch.optim.Optimizer:
    lr, lr_backbone = cfg.resolved_lrs(act_cfg)
    backbone = {id(p) for p in model.backbone_parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in backbone and p.requires_grad], "lr": lr},
        {"params": [p for p in model.backbone_parameters() if p.requires_grad], "lr": lr_backbone},
    ]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay, fused=cfg.fused_optimizer or None)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                   budget_spent: Callable[[], float] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup, then constant or cosine to zero over the budget.

    The cosine's progress is the larger of steps/steps and, with a time budget, the fraction of it spent
    (`budget_spent`), so a wall-clock run still ends at the bottom of its schedule. Progress read from the clock is
    not bit-reproducible across a resume; a pure step budget is.
    """
    warm, total, kind = cfg.warmup_steps, cfg.steps, cfg.lr_schedule

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind != "cosine":
            return 1.0
        progress = (step - warm) / max(1, total - warm) if total else 0.0
        if cfg.time_budget_s and budget_spent is not None:
            progress = max(progress, budget_spent())
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _rng_states(info: DistInfo) -> list[torch.Tensor]:
    """Every rank's CPU RNG state (dropout masks and CVAE noise differ per rank)."""
    state = torch.get_rng_state()
    if info.world == 1:
        return [state]
    states: list = [None] * info.world
    dist.all_gather_object(states, state)
    return states


# ----------------------------------------------------------------------------- the loop
def train(
    dataset_dir: Path,
    out_dir: Path,
    act_cfg: ACTConfig,
    train_cfg: TrainConfig,
    callbacks: Sequence[TrainCallback] = (),
    resume: bool = False,
) -> TrainResult:
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    cfg = train_cfg
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    info = init_distributed(cfg.device)
    device = torch.device(f"cuda:{info.local_rank}" if cfg.device == "cuda" and info.world > 1 else cfg.device)
    callbacks = list(callbacks) if info.main else []
    last_path, best_path = out_dir / LAST, out_dir / BEST

    ckpt = load_checkpoint(last_path) if resume and last_path.is_file() else None
    notice = None
    imagenet = None
    train_ds = ChunkDataset(dataset_dir, "train", chunk_size=act_cfg.chunk_size, image_size=cfg.image_size,
                            camera_names=act_cfg.camera_names if ckpt else None)
    if ckpt is not None:
        act_cfg = ACTConfig(**ckpt["act_config"])  # the architecture of the run being continued, not the caller's
    else:
        act_cfg = act_cfg.model_copy(update=dict(
            state_dim=train_ds.state_dim, action_dim=train_ds.action_dim, camera_names=train_ds.camera_names))
        if act_cfg.pretrained_backbone:
            norm, imagenet, notice = resolve_pretrained(True)
            act_cfg = act_cfg.model_copy(update=dict(backbone_norm=norm, pretrained_backbone=imagenet is not None))
        else:
            act_cfg = act_cfg.model_copy(update=dict(backbone_norm="group"))
        act_cfg = ACTConfig(**act_cfg.model_dump())  # re-validate

    val_split = "val" if train_ds.manifest.val else "train"  # a one-episode dataset validates on its training data
    val_ds = ChunkDataset(dataset_dir, val_split, chunk_size=act_cfg.chunk_size, image_size=cfg.image_size,
                          camera_names=act_cfg.camera_names)
    if len(train_ds) == 0:
        raise ValueError(f"{dataset_dir}: the train split has no samples")

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = ACT(act_cfg)
    if imagenet is not None:
        load_pretrained_into(model.backbone, imagenet)
    model.to(device)
    if cfg.channels_last:
        model.set_channels_last(True)
    opt = make_optimizer(model, act_cfg, cfg, device.type)
    clock = {"t0": None, "before": 0.0}  # wall-clock spent, for a time-budgeted schedule

    def budget_spent() -> float:
        now = clock["before"] + (time.perf_counter() - clock["t0"] if clock["t0"] is not None else 0.0)
        return now / cfg.time_budget_s if cfg.time_budget_s else 0.0

    sched = make_scheduler(opt, cfg, budget_spent)

    sampler = ResumableSampler(train_ds, num_replicas=info.world, rank=info.rank, seed=cfg.seed)
    per_rank_batch = cfg.batch_size // info.world if info.world > 1 else cfg.batch_size
    if per_rank_batch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the world size {info.world}")
    drop_last = len(sampler) >= per_rank_batch
    loader = make_loader(train_ds, per_rank_batch, sampler=sampler, num_workers=cfg.num_workers, seed=cfg.seed,
                         drop_last=drop_last)
    val_idx = fixed_subset(len(val_ds), None if cfg.val_batches is None else cfg.val_batches * cfg.batch_size)
    val_loader = make_loader(torch.utils.data.Subset(val_ds, val_idx[info.rank :: info.world]), cfg.batch_size,
                             num_workers=min(cfg.num_workers, 1), drop_last=False)

    step, epoch, batches_in_epoch, elapsed_before = 0, 0, 0, 0.0
    history: list[dict] = []
    window: list[dict[str, float]] = []  # per-step losses since the last log line (checkpointed: exact resume)
    best_val = math.inf
    torch.manual_seed(cfg.seed + info.rank)  # different dropout / CVAE noise per rank
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, history, best_val = ckpt["step"], list(ckpt["history"]), ckpt["best_val_loss"]
        epoch, batches_in_epoch = ckpt["data"]["epoch"], ckpt["data"]["batches"]
        elapsed_before = ckpt["elapsed_s"]
        window = [dict(w) for w in ckpt["window"]]
        rng = ckpt["rng"]["torch"]
        if len(rng) == info.world:
            torch.set_rng_state(rng[info.rank])
        del ckpt
    sampler.start_at(epoch, batches_in_epoch * per_rank_batch)

    ddp_model = model
    if info.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    meta = {
        "dataset_id": train_ds.manifest.id,
        "joint_names": list(train_ds.manifest.joint_names),
        "action_names": list(train_ds.manifest.action_names or train_ds.manifest.joint_names),
        "camera_names": list(act_cfg.camera_names),
        "fps": float(train_ds.manifest.fps),
        "image_size": list(cfg.image_size),
    }
    stats_json = stats_to_json(train_ds.stats)

    def payload() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": {"torch": _rng_states(info)},
            "data": {"epoch": epoch, "batches": batches_in_epoch},
            "step": step,
            "elapsed_s": elapsed_before + (time.perf_counter() - t0),
            "best_val_loss": best_val,
            "history": history,
            "window": window,
            "act_config": act_cfg.model_dump(),
            "train_config": cfg.model_dump(),
            "stats": stats_json,
            "meta": meta,
        }

    for cb in callbacks:
        cb.on_start({
            "steps": cfg.steps, "start_step": step, "time_budget_s": cfg.time_budget_s, "notice": notice,
            "parameters": count_parameters(model), "train_samples": len(train_ds), "val_samples": len(val_ds),
            "camera_names": act_cfg.camera_names, "world_size": info.world, "act_config": act_cfg.model_dump(),
            "train_config": cfg.model_dump(), "dataset_id": meta["dataset_id"], "out_dir": str(out_dir),
            "val_split": val_split, "resumed": step > 0,
        })

    done = {"val": -1, "ckpt": -1}

    def validate_and_checkpoint(do_val: bool, do_ckpt: bool) -> None:
        nonlocal best_val
        if do_val and done["val"] != step:
            done["val"] = step
            val = evaluate_loader(model, val_loader, act_cfg, cfg.bf16, device, info)
            history.append({"step": step, **val})
            for cb in callbacks:
                cb.on_validation(step, val["val_loss"])
            if val["val_loss"] < best_val:
                best_val = val["val_loss"]
                data = payload()  # every rank joins the RNG gather
                if info.main:
                    save_checkpoint(data, best_path)
        if do_ckpt and done["ckpt"] != step:
            done["ckpt"] = step
            data = payload()
            if info.main:
                save_checkpoint(data, last_path)
                for cb in callbacks:
                    cb.on_checkpoint(step, last_path)

    t0 = time.perf_counter()
    clock["t0"], clock["before"] = t0, elapsed_before
    ddp_model.train()
    last_loss = math.nan
    t_log, steps_at_log = time.perf_counter(), step
    it = iter(loader)

    def out_of_budget() -> bool:
        if cfg.steps is not None and step >= cfg.steps:
            return True
        if cfg.time_budget_s is not None:
            spent = elapsed_before + time.perf_counter() - t0
            stop = torch.tensor([float(spent >= cfg.time_budget_s)])
            if info.world > 1:  # every rank must stop at the same step
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            return bool(stop.item())
        return False

    while not out_of_budget():
        try:
            batch = next(it)
        except StopIteration:
            epoch, batches_in_epoch = epoch + 1, 0
            sampler.set_epoch(epoch)
            it = iter(loader)
            continue
        b = batch_to(batch, device)
        losses = compute_loss(ddp_model, b, act_cfg, cfg.bf16)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip else None
        opt.step()
        sched.step()
        step += 1
        batches_in_epoch += 1
        last_loss = float(losses["loss"].detach())
        window.append({k: float(v.detach()) for k, v in losses.items()} | ({"grad_norm": float(grad_norm)} if grad_norm is not None else {}))

        if step % cfg.log_every == 0:
            keys = window[0].keys()
            sums = _all_reduce_sum([sum(w[k] for w in window) / len(window) for k in keys], info)
            metrics = {k: v / info.world for k, v in zip(keys, sums)}
            now = time.perf_counter()
            metrics["lr"] = opt.param_groups[0]["lr"]
            metrics["epoch"] = float(epoch)
            rate = (step - steps_at_log) / max(now - t_log, 1e-9)
            history.append({"step": step, **metrics})
            metrics["steps_per_s"] = rate
            metrics["samples_per_s"] = rate * cfg.batch_size
            t_log, steps_at_log = now, step
            window.clear()
            for cb in callbacks:
                cb.on_metrics(step, metrics)
        validate_and_checkpoint(step % cfg.val_every == 0, step % cfg.checkpoint_every == 0)

    validate_and_checkpoint(True, True)  # the final state, unless this very step already did it
    if not best_path.is_file() and info.main:
        save_checkpoint(payload(), best_path)
    wall = elapsed_before + time.perf_counter() - t0
    result = TrainResult(best_path, last_path, best_val, last_loss, step, wall, history)
    for cb in callbacks:
        cb.on_end(result)
    if info.owns_group:
        dist.barrier()
        dist.destroy_process_group()
    return result


# ----------------------------------------------------------------------------- CLI
def _cli() -> None:
    import typer

    app = typer.Typer(add_completion=False)

    @app.command()
    def main(
        dataset: Path = typer.Option(..., help="dataset directory <store>/datasets/<id>"),
        out: Path = typer.Option(..., help="run directory for checkpoints"),
        steps: int | None = typer.Option(None, help="step budget"),
        time_budget: float | None = typer.Option(None, help="wall-clock budget in seconds"),
        preset: str = typer.Option("paper", help="paper | small"),
        batch_size: int | None = typer.Option(None),
        lr: float | None = typer.Option(None),
        lr_backbone: float | None = typer.Option(None),
        chunk_size: int | None = typer.Option(None),
        backbone_stages: int | None = typer.Option(None, min=3, max=4, help="ResNet18 stages (4: the original)"),
        image_size: str | None = typer.Option(None, help="HxW training resolution, e.g. 120x160"),
        val_every: int | None = typer.Option(None),
        checkpoint_every: int | None = typer.Option(None),
        num_workers: int | None = typer.Option(None),
        seed: int = typer.Option(0),
        bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (default: where the hardware is fast at it)"),
        pretrained: bool = typer.Option(True, help="ImageNet backbone when available"),
        device: str = typer.Option("cpu"),
        threads: int | None = typer.Option(None, help="torch threads"),
        resume: bool = typer.Option(False, help="continue from OUT/last.pt"),
        progress: bool = typer.Option(True, help="rich progress bar"),
    ):
        act_over = {"pretrained_backbone": pretrained}
        if chunk_size:
            act_over["chunk_size"] = chunk_size
        if backbone_stages:
            act_over["backbone_stages"] = backbone_stages
        act = ACTConfig.preset_named(preset, **act_over)
        tr: dict[str, Any] = {"steps": steps, "time_budget_s": time_budget, "seed": seed,
                              "device": device, "num_threads": threads}
        if bf16 is not None:
            tr["bf16"] = bf16
        if steps is None and time_budget is None:
            tr["steps"] = 2000
        for name, val in (("batch_size", batch_size), ("lr", lr), ("lr_backbone", lr_backbone), ("val_every", val_every),
                          ("checkpoint_every", checkpoint_every), ("num_workers", num_workers)):
            if val is not None:
                tr[name] = val
        if image_size:
            tr["image_size"] = parse_hxw(image_size)
        tcfg = TrainConfig.small(**tr) if preset == "small" else TrainConfig(**tr)
        from model.callbacks import RichProgressCallback

        is_main = int(os.environ.get("RANK", "0")) == 0
        cbs = [RichProgressCallback()] if progress and is_main else []
        result = train(dataset, out, act, tcfg, cbs, resume=resume)
        if is_main and not progress:
            print(f"steps={result.steps} best_val={result.best_val_loss:.5f} best={result.best_checkpoint}")

    app()


if __name__ == "__main__":
    _cli()
