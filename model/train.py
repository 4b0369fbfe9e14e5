"""Train ACT on a store dataset: `python -m model.train --dataset <store>/datasets/<id> --out DIR [--steps N]`.

Also `train(...)` for in-process callers (the Dagster asset). Multi-process through torchrun:
`torchrun --nproc-per-node 2 -m model.train ...` (gloo on CPU, nccl on GPUs; DistributedSampler shards the data,
rank 0 writes checkpoints and reports metrics).

Exact resume on CPU: samples are pure functions of their index, the sampler order is a function of (seed, epoch), the
loaders own their generators, and the checkpoint carries model/optimizer/scheduler, every rank's RNG state and the
number of batches consumed. So a resumed run replays the uninterrupted run's steps bit for bit.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Sequence, get_args, get_origin

import torch
import torch.distributed as dist
from torch import nn

from assets_store.errors import StoreError
from assets_store.layout import LOCAL_SCHEMES, local_path_of, url_scheme
from assets_store.remote import path_or_url, remote_errors, unreachable_text
from assets_store.schema import parse_hxw
from assets_store.stats import stats_to_json
from model.act import ACT, act_loss, count_parameters
from model.augment import ImageAugment, make_augment
from model.backbone import load_pretrained_into, resolve_pretrained
from model.callbacks import RichProgressCallback, TrainCallback
from model.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from model.config import PRESETS, ACTConfig, TrainConfig, get_preset, tunable_fields, value_type
from model.data import ChunkDataset, EpisodeSource, GroupSampler, ResumableSampler, fixed_subset, make_loader


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
    return act_loss(cfg, a_hat, batch["actions"], batch["is_pad"], mu, logvar, batch.get("action_mask"))


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


# ----------------------------------------------------------------------------- building a run
def describe_groups(manifest) -> list[dict[str, Any]]:
    """A co-trained dataset's groups as a run reports them: sessions, weight (and share), padding, statistics;
    empty for a dataset without groups."""
    groups = manifest.groups
    total = sum(g.weight for g in groups) or 1.0
    return [{"name": g.name, "sessions": list(g.sessions), "weight": g.weight, "share": g.weight / total,
             "padded_actions": list(g.padded_actions), "dropped_cameras": list(g.dropped_cameras),
             "camera_map": dict(g.camera_map), "in_stats": g.in_stats} for g in groups]


@dataclass
class TrainData:
    """The loaders of one run (this rank's shard) and the datasets behind them."""

    train: ChunkDataset
    val: ChunkDataset
    val_split: str
    sampler: ResumableSampler | GroupSampler
    loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    per_rank_batch: int


def complete_architecture(act_cfg: ACTConfig, train_ds: ChunkDataset) -> tuple[ACTConfig, dict | None, str | None]:
    """A new run's architecture: the dataset's sizes and names filled in, the backbone weights settled.

    -> (config, ImageNet state dict or None, a notice for the user or None).
    """
    act_cfg = act_cfg.model_copy(update=dict(
        state_dim=train_ds.state_dim, action_dim=train_ds.action_dim, camera_names=train_ds.camera_names))
    imagenet = notice = None
    if act_cfg.pretrained_backbone:
        norm, imagenet, notice = resolve_pretrained(True)
        act_cfg = act_cfg.model_copy(update=dict(backbone_norm=norm, pretrained_backbone=imagenet is not None))
    else:
        act_cfg = act_cfg.model_copy(update=dict(backbone_norm="group"))
    return ACTConfig(**act_cfg.model_dump()), imagenet, notice  # re-validated


def build_data(dataset_dir: Path | str, train_ds: ChunkDataset, act_cfg: ACTConfig, cfg: TrainConfig,
               info: DistInfo) -> TrainData:
    val_split = "val" if train_ds.manifest.val else "train"  # a one-episode dataset validates on its training data
    val_ds = ChunkDataset(dataset_dir, val_split, chunk_size=act_cfg.chunk_size, image_size=cfg.image_size,
                          camera_names=act_cfg.camera_names, base_smoothing_window=cfg.base_smoothing_window,
                          source=train_ds.source)
    if len(train_ds) == 0:
        raise ValueError(f"{dataset_dir}: the train split has no samples")
    if len(train_ds.groups) > 1:  # co-training: groups drawn by their sampling weights
        sampler = GroupSampler(train_ds.group_samples, [g.weight for g in train_ds.groups], num_replicas=info.world,
                               rank=info.rank, seed=cfg.seed, names=[g.name for g in train_ds.groups])
    else:
        sampler = ResumableSampler(train_ds, num_replicas=info.world, rank=info.rank, seed=cfg.seed)
    per_rank_batch = cfg.batch_size // info.world if info.world > 1 else cfg.batch_size
    if per_rank_batch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the world size {info.world}")
    loader = make_loader(train_ds, per_rank_batch, sampler=sampler, num_workers=cfg.num_workers, seed=cfg.seed,
                         drop_last=len(sampler) >= per_rank_batch)
    val_idx = fixed_subset(len(val_ds), None if cfg.val_batches is None else cfg.val_batches * cfg.batch_size)
    val_loader = make_loader(torch.utils.data.Subset(val_ds, val_idx[info.rank :: info.world]), cfg.batch_size,
                             num_workers=min(cfg.num_workers, 1), drop_last=False)
    return TrainData(train_ds, val_ds, val_split, sampler, loader, val_loader, per_rank_batch)


def build_model(act_cfg: ACTConfig, cfg: TrainConfig, imagenet: dict | None, device: torch.device) -> ACT:
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = ACT(act_cfg)
    if imagenet is not None:
        load_pretrained_into(model.backbone, imagenet)
    model.to(device)
    if cfg.channels_last:
        model.set_channels_last(True)
    return model


@dataclass
class Progress:
    """Where a run stands, besides its weights and optimizer: what a checkpoint carries for an exact resume."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    elapsed_before: float = 0.0  # wall-clock seconds trained before this process started
    best_val: float = math.inf
    history: list[dict] = field(default_factory=list)
    window: list[dict[str, float]] = field(default_factory=list)  # per-step losses since the last log line


def restore(ckpt: dict[str, Any], model: ACT, opt: torch.optim.Optimizer, sched, info: DistInfo) -> Progress:
    """Load a checkpoint's model, optimizer, scheduler and this rank's RNG state. -> the run's progress."""
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    rng = ckpt["rng"]["torch"]
    if len(rng) == info.world:
        torch.set_rng_state(rng[info.rank])
    return Progress(step=ckpt["step"], epoch=ckpt["data"]["epoch"], batches_in_epoch=ckpt["data"]["batches"],
                    elapsed_before=ckpt["elapsed_s"], best_val=ckpt["best_val_loss"], history=list(ckpt["history"]),
                    window=[dict(w) for w in ckpt["window"]])


class Clock:
    """Wall-clock seconds a run has trained, across restarts: the time budget and a time-spanning cosine read it."""

    def __init__(self, time_budget_s: float | None):
        self.time_budget_s = time_budget_s
        self.before = 0.0
        self.t0: float | None = None

    def start(self, before: float) -> None:
        self.before, self.t0 = before, time.perf_counter()

    def elapsed(self) -> float:
        return self.before + (time.perf_counter() - self.t0 if self.t0 is not None else 0.0)

    def budget_spent(self) -> float:
        return self.elapsed() / self.time_budget_s if self.time_budget_s else 0.0


# ----------------------------------------------------------------------------- the loop
@dataclass
class Trainer:
    """One run's loop: training steps, metrics, validation, checkpoints, the budget."""

    model: ACT
    ddp_model: nn.Module  # the model the step runs: wrapped for DDP with several processes, compiled with cfg.compile
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    data: TrainData
    act_cfg: ACTConfig
    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    progress: Progress
    clock: Clock
    out_dir: Path
    meta: dict[str, Any]
    stats_json: dict[str, Any]
    callbacks: Sequence[TrainCallback]
    augment: ImageAugment | None = None  # training images only: validation and inference never see it
    last_loss: float = math.nan
    _validated_at: int = -1
    _checkpointed_at: int = -1
    _t_log: float = 0.0
    _steps_at_log: int = 0
    _compiled_ok: bool = False  # a step has run (and, with cfg.compile, compiled)

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST

    def payload(self) -> dict[str, Any]:
        """The checkpoint's content; every rank must call it (it gathers every rank's RNG state)."""
        p = self.progress
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": {"torch": _rng_states(self.info)},
            "data": {"epoch": p.epoch, "batches": p.batches_in_epoch},
            "step": p.step,
            "elapsed_s": self.clock.elapsed(),
            "best_val_loss": p.best_val,
            "history": p.history,
            "window": p.window,
            "act_config": self.act_cfg.model_dump(),
            "train_config": self.cfg.model_dump(),
            "stats": self.stats_json,
            "meta": self.meta,
        }

    def out_of_budget(self) -> bool:
        cfg = self.cfg
        if cfg.steps is not None and self.progress.step >= cfg.steps:
            return True
        if cfg.time_budget_s is not None:
            stop = torch.tensor([float(self.clock.elapsed() >= cfg.time_budget_s)])
            if self.info.world > 1:  # every rank must stop at the same step
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            return bool(stop.item())
        return False

    def train_step(self, batch: dict[str, torch.Tensor]) -> None:
        b = batch_to(batch, self.device)
        if self.augment is not None:
            b["images"] = self.augment(b["images"])
        self.opt.zero_grad(set_to_none=True)
        try:
            losses = compute_loss(self.ddp_model, b, self.act_cfg, self.cfg.bf16)
            losses["loss"].backward()
        except Exception as exc:
            if self.cfg.compile and not self._compiled_ok:  # the first compiled step compiles: say which option failed
                raise RuntimeError(f"compile: torch.compile of the training step failed on {self.device} "
                                   f"({type(exc).__name__}: {exc}); train without compile") from exc
            raise
        self._compiled_ok = True
        clip = self.cfg.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip) if clip else None
        self.opt.step()
        self.sched.step()
        p = self.progress
        p.step += 1
        p.batches_in_epoch += 1
        self.last_loss = float(losses["loss"].detach())
        p.window.append({k: float(v.detach()) for k, v in losses.items()}
                        | ({"grad_norm": float(grad_norm)} if grad_norm is not None else {}))

    def report_metrics(self) -> None:
        """The per-step losses since the last report, averaged over steps and ranks, plus lr and throughput."""
        p = self.progress
        keys = p.window[0].keys()
        sums = _all_reduce_sum([sum(w[k] for w in p.window) / len(p.window) for k in keys], self.info)
        metrics = {k: v / self.info.world for k, v in zip(keys, sums)}
        now = time.perf_counter()
        metrics["lr"] = self.opt.param_groups[0]["lr"]
        metrics["epoch"] = float(p.epoch)
        rate = (p.step - self._steps_at_log) / max(now - self._t_log, 1e-9)
        p.history.append({"step": p.step, **metrics})
        metrics["steps_per_s"] = rate
        metrics["samples_per_s"] = rate * self.cfg.batch_size
        self._t_log, self._steps_at_log = now, p.step
        p.window.clear()
        for cb in self.callbacks:
            cb.on_metrics(p.step, metrics)

    def validate(self) -> None:
        """Validation loss at this step (once); a new best is written to best.pt."""
        p = self.progress
        if self._validated_at == p.step:
            return
        self._validated_at = p.step
        val = evaluate_loader(self.model, self.data.val_loader, self.act_cfg, self.cfg.bf16, self.device, self.info)
        p.history.append({"step": p.step, **val})
        for cb in self.callbacks:
            cb.on_validation(p.step, val["val_loss"])
        if val["val_loss"] < p.best_val:
            p.best_val = val["val_loss"]
            data = self.payload()  # every rank joins the RNG gather
            if self.info.main:
                save_checkpoint(data, self.best_path)

    def checkpoint(self) -> None:
        """Write last.pt at this step (once)."""
        step = self.progress.step
        if self._checkpointed_at == step:
            return
        self._checkpointed_at = step
        data = self.payload()
        if self.info.main:
            save_checkpoint(data, self.last_path)
            for cb in self.callbacks:
                cb.on_checkpoint(step, self.last_path)

    def run(self) -> TrainResult:
        p, cfg, data = self.progress, self.cfg, self.data
        self.clock.start(p.elapsed_before)
        self.ddp_model.train()
        self._t_log, self._steps_at_log = time.perf_counter(), p.step
        it = iter(data.loader)
        while not self.out_of_budget():
            try:
                batch = next(it)
            except StopIteration:
                p.epoch, p.batches_in_epoch = p.epoch + 1, 0
                data.sampler.set_epoch(p.epoch)
                it = iter(data.loader)
                continue
            self.train_step(batch)
            for cb in self.callbacks:  # a progress bar moves every step, not once per log interval
                cb.on_step(p.step)
            if p.step % cfg.log_every == 0:
                self.report_metrics()
            if p.step % cfg.val_every == 0:
                self.validate()
            if p.step % cfg.checkpoint_every == 0:
                self.checkpoint()
        self.validate()  # the final state, unless this very step already did it
        self.checkpoint()
        if not self.best_path.is_file() and self.info.main:
            save_checkpoint(self.payload(), self.best_path)
        return TrainResult(self.best_path, self.last_path, p.best_val, self.last_loss, p.step, self.clock.elapsed(),
                           p.history)


def train(
    dataset_dir: Path | str,
    out_dir: Path,
    act_cfg: ACTConfig,
    train_cfg: TrainConfig,
    callbacks: Sequence[TrainCallback] = (),
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train ACT on a store dataset (a directory, or its URL <store URL>/datasets/<id>) into `out_dir`; `resume`
    continues the run from out_dir's last.pt. Checkpoints of an earlier run in `out_dir` are never replaced unless
    `overwrite`."""
    dataset_dir, out_dir = path_or_url(dataset_dir), Path(out_dir)
    cfg = train_cfg
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    info = init_distributed(cfg.device)
    device = torch.device(f"cuda:{info.local_rank}" if cfg.device == "cuda" and info.world > 1 else cfg.device)
    callbacks = list(callbacks) if info.main else []

    if not resume and not overwrite and any((out_dir / name).exists() for name in (LAST, BEST)):
        raise FileExistsError(f"{out_dir}: holds checkpoints of an earlier run; resume it (--resume), or choose a new "
                              f"directory (--force replaces them)")
    ckpt = load_checkpoint(out_dir / LAST) if resume and (out_dir / LAST).is_file() else None
    if ckpt is not None:
        act_cfg = ACTConfig(**ckpt["act_config"])  # the architecture of the run being continued, not the caller's
    train_ds = ChunkDataset(dataset_dir, "train", chunk_size=act_cfg.chunk_size, image_size=cfg.image_size,
                            camera_names=act_cfg.camera_names if ckpt else None,
                            base_smoothing_window=cfg.base_smoothing_window,
                            source=EpisodeSource.from_env().with_cache(cfg.chunk_cache_dir, cfg.chunk_cache_bytes))
    imagenet = notice = None
    if ckpt is None:
        act_cfg, imagenet, notice = complete_architecture(act_cfg, train_ds)
    data = build_data(dataset_dir, train_ds, act_cfg, cfg, info)

    model = build_model(act_cfg, cfg, imagenet, device)
    opt = make_optimizer(model, act_cfg, cfg, device.type)
    clock = Clock(cfg.time_budget_s)
    sched = make_scheduler(opt, cfg, clock.budget_spent)
    torch.manual_seed(cfg.seed + info.rank)  # different dropout / CVAE noise per rank
    progress = restore(ckpt, model, opt, sched, info) if ckpt is not None else Progress()
    del ckpt
    data.sampler.start_at(progress.epoch, progress.batches_in_epoch * data.per_rank_batch)
    ddp_model = model
    if info.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:  # only the step: validation and checkpoints use the model itself (same parameters)
        ddp_model = torch.compile(ddp_model)

    manifest = train_ds.manifest
    meta = {
        "dataset_id": manifest.id,
        "joint_names": list(manifest.joint_names),
        "action_names": list(manifest.action_names or manifest.joint_names),
        "camera_names": list(act_cfg.camera_names),
        "fps": float(manifest.fps),
        "image_size": list(cfg.image_size),
        "robot": manifest.robot,  # what the policy was trained for: rollout on another robot or task needs --force
        "tasks": list(train_ds.tasks),
    }
    for cb in callbacks:
        cb.on_start({
            "steps": cfg.steps, "start_step": progress.step, "time_budget_s": cfg.time_budget_s, "notice": notice,
            "parameters": count_parameters(model), "train_samples": len(train_ds), "val_samples": len(data.val),
            "camera_names": act_cfg.camera_names, "world_size": info.world, "act_config": act_cfg.model_dump(),
            "train_config": cfg.model_dump(), "dataset_id": meta["dataset_id"], "out_dir": str(out_dir),
            "val_split": data.val_split, "resumed": progress.step > 0, "groups": describe_groups(manifest),
        })
    trainer = Trainer(model, ddp_model, opt, sched, data, act_cfg, cfg, info, device, progress, clock, out_dir, meta,
                      stats_to_json(train_ds.stats), callbacks, make_augment(act_cfg, cfg.image_size))
    result = trainer.run()
    for cb in callbacks:
        cb.on_end(result)
    if info.owns_group:
        dist.barrier()
        dist.destroy_process_group()
    return result


# ----------------------------------------------------------------------------- CLI
class GroupsNotice(TrainCallback):
    """Prints a co-trained dataset's groups when a run starts (what `python -m model.train` samples)."""

    def on_start(self, info: dict[str, Any]) -> None:
        for g in info.get("groups") or []:
            extra = "".join([f"; padded {', '.join(g['padded_actions'])}" if g["padded_actions"] else "",
                             f"; dropped cameras {', '.join(g['dropped_cameras'])}" if g["dropped_cameras"] else "",
                             "".join(f"; its {own} as {cam}" for cam, own in (g.get("camera_map") or {}).items()),
                             "" if g["in_stats"] else "; not in the statistics"])
            print(f"group {g['name']}: weight {g['weight']:g} ({g['share']:.0%} of samples), "
                  f"sessions {', '.join(g['sessions'])}{extra}", flush=True)


# Option names kept from earlier releases where they differ from the field they set
CLI_NAMES = {"time_budget_s": "time_budget", "pretrained_backbone": "pretrained", "num_threads": "threads"}


def _option(name: str, f) -> inspect.Parameter:
    """A CLI option for one config field: its type, its description as help; left out, the preset's value."""
    import typer

    kind, _ = value_type(f)
    extra: dict[str, Any] = {}
    if get_origin(kind) is tuple:  # (H, W)
        kind, extra["metavar"] = str, "HxW"
    elif get_origin(kind) is Literal and not all(isinstance(v, str) for v in get_args(kind)):
        values = get_args(kind)
        kind, extra["min"], extra["max"] = type(values[0]), min(values), max(values)
    flag = name.replace("_", "-")
    decls = [f"--{flag}/--no-{flag}"] if kind is bool else [f"--{flag}"]
    option = typer.Option(*decls, help=f.description, show_default=False, **extra)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[kind], option])


def cli_app():
    """`python -m model.train`: one option per tunable field of model.config, over a named preset."""
    import typer

    fields = {CLI_NAMES.get(n, n): (cls, n, f) for cls in (ACTConfig, TrainConfig) for n, f in tunable_fields(cls).items()}
    fixed = [
        # a string: a Path would fold s3://bucket/... into s3:/bucket/...
        inspect.Parameter("dataset", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, typer.Option(
            help="dataset directory <store>/datasets/<id>, or its object-store URL (s3://.../datasets/<id>)")]),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, typer.Option(
            help="local run directory for checkpoints (a path or file:// URL; not an object store)")]),
        inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY, default="paper", annotation=Annotated[
            Literal[tuple(PRESETS)], typer.Option(help="named preset (model/config.py). " + " ".join(
                f"{p.name}: {p.description}" for p in PRESETS.values()))]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
            help="continue from OUT/last.pt")]),
        inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
            help="replace the checkpoints of an earlier run in OUT (without it such an OUT is refused)")]),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=Annotated[bool, typer.Option(
            help="rich progress bar")]),
    ]

    def main(dataset: str, out: str, preset: str, resume: bool, force: bool, progress: bool, **options: Any) -> None:
        chosen = get_preset(preset)
        given = {cls: {} for cls in (ACTConfig, TrainConfig)}
        for option, value in options.items():
            if value is None:
                continue
            cls, name, f = fields[option]
            if get_origin(f.annotation) is tuple:  # "HxW"
                try:
                    value = parse_hxw(value)
                except ValueError as exc:
                    raise typer.BadParameter(str(exc), param_hint=f"--{option.replace('_', '-')}") from None
            given[cls][name] = value
        act, tcfg = chosen.act_config(**given[ACTConfig]), chosen.train_config(**given[TrainConfig])
        is_main = int(os.environ.get("RANK", "0")) == 0
        cbs = ([GroupsNotice()] if is_main else []) + ([RichProgressCallback()] if progress and is_main else [])
        if url_scheme(out) not in (None, *LOCAL_SCHEMES):  # checkpoints are local files (Path(URL) makes `s3:/`)
            typer.echo(f"error: --out {out}: a run directory is local (a path or file:// URL), not an object store; "
                       "train into a local directory", err=True)
            raise typer.Exit(2)
        try:
            result = train(dataset, local_path_of(out), act, tcfg, cbs, resume=resume, overwrite=force)
        except (StoreError, FileExistsError) as exc:  # a user's mistake (no such dataset, an occupied OUT): one line
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except remote_errors() as exc:  # the dataset's object store: no network, no endpoint, no credentials
            typer.echo(f"error: {unreachable_text(dataset, exc)}", err=True)
            raise typer.Exit(1) from None
        if is_main and not progress:
            print(f"steps={result.steps} best_val={result.best_val_loss:.5f} best={result.best_checkpoint}")

    main.__doc__ = "Train ACT on a store dataset. Options left out take the preset's value."
    params = fixed + [_option(option, f) for option, (_, _, f) in fields.items()]
    main.__signature__ = inspect.Signature(params)
    main.__annotations__ = {p.name: p.annotation for p in params}
    app = typer.Typer(add_completion=False)
    app.command()(main)
    return app


if __name__ == "__main__":
    cli_app()()
