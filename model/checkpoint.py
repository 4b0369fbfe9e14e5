"""Training checkpoints: one torch file of plain containers and tensors, written atomically, read weights_only.

A checkpoint holds everything a killed run needs to continue as if never stopped (model, optimizer, scheduler, RNG
states of every rank, data position, history, best validation loss) plus what inference and export need (configs,
normalization statistics, names). Loading never unpickles arbitrary objects: `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

FORMAT = "aloha-act-checkpoint"
VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    """Write to a temporary sibling, fsync, then rename: a crash leaves the previous file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ACT training checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)!r})")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')!r}; this software reads version {VERSION}")
    return ckpt


def find_checkpoint(path: Path) -> Path:
    """A checkpoint file, or a run directory (its best.pt, else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no {BEST} or {LAST} in this run directory")
    return path
