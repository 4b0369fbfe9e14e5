"""Validation loss of a checkpoint or bundle on a dataset's validation split (the same loss the trainer reports)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from assets_store.bundle import CONFIG, WEIGHTS
from model.act import ACT
from model.checkpoint import find_checkpoint, load_checkpoint
from model.config import ACTConfig
from model.data import ChunkDataset, fixed_subset, make_loader
from model.train import evaluate_loader


def load_model(path: Path) -> tuple[ACT, dict]:
    """A bundle directory (has config.json) or a checkpoint file / run directory -> (model, config with image_size)."""
    path = Path(path)
    if path.is_dir() and (path / CONFIG).is_file():
        config = json.loads((path / CONFIG).read_text())
        model = ACT(ACTConfig(**config["act"]))
        model.load_state_dict(load_file(str(path / WEIGHTS)))
        return model, config
    ckpt = load_checkpoint(find_checkpoint(path))
    model = ACT(ACTConfig(**ckpt["act_config"]))
    model.load_state_dict(ckpt["model"])
    return model, {"image_size": ckpt["meta"]["image_size"], "bf16": ckpt["train_config"].get("bf16", False)}


def validation_loss(checkpoint_or_bundle: Path, dataset_dir: Path, batches: int | None = None,
                    batch_size: int = 8, bf16: bool = False, num_workers: int = 0) -> float:
    model, config = load_model(checkpoint_or_bundle)
    cfg = model.cfg
    ds = ChunkDataset(dataset_dir, "val", chunk_size=cfg.chunk_size, image_size=tuple(config["image_size"]),
                      camera_names=cfg.camera_names)
    if len(ds) == 0:
        ds = ChunkDataset(dataset_dir, "train", chunk_size=cfg.chunk_size, image_size=tuple(config["image_size"]),
                          camera_names=cfg.camera_names)
    idx = fixed_subset(len(ds), None if batches is None else batches * batch_size)
    loader = make_loader(torch.utils.data.Subset(ds, idx), batch_size, num_workers=num_workers, drop_last=False)
    return evaluate_loader(model, loader, cfg, bf16, torch.device("cpu"))["val_loss"]
