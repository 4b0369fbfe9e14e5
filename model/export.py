"""Policy bundles from this model (DESIGN.md): model.safetensors + config.json + stats.json, sealed with sha256 hashes.

No pickle: weights are safetensors, everything else JSON. `write_bundle` is the one writer (atomic); a training
checkpoint goes through `export_bundle`, an imported checkpoint through model.checkpoints_import.to_bundle.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from assets_store.bundle import CONFIG, STATS, WEIGHTS, seal_bundle
from assets_store.hashing import replace_directory
from model.checkpoint import find_checkpoint, load_checkpoint

BUNDLE_MODEL_FORMAT = "aloha-act"
BUNDLE_MODEL_VERSION = 1


def bundle_config(act_config: dict, meta: dict) -> dict[str, Any]:
    return {
        "format": BUNDLE_MODEL_FORMAT,
        "format_version": BUNDLE_MODEL_VERSION,
        "architecture": "act",
        "act": act_config,
        "camera_names": list(act_config["camera_names"]),
        "joint_names": list(meta["joint_names"]),
        "action_names": list(meta["action_names"]),
        "fps": float(meta["fps"]),
        "chunk_size": int(act_config["chunk_size"]),
        "image_size": [int(x) for x in meta["image_size"]],
        "dataset_id": meta.get("dataset_id", ""),
        # Older checkpoints do not know: "" / [] (rollout then cannot warn about another robot or task).
        "robot": str(meta.get("robot", "")),
        "tasks": [str(t) for t in meta.get("tasks", [])],
    }


def _write_files(out: Path, state_dict: dict[str, torch.Tensor], config: dict, stats_json: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
               for k, v in state_dict.items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": BUNDLE_MODEL_FORMAT})
    (out / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    (out / STATS).write_text(json.dumps(stats_json, indent=2, sort_keys=True))


def write_bundle(bundle_dir: Path, state_dict: dict[str, torch.Tensor], config: dict, stats_json: dict,
                 **manifest: Any) -> Path:
    """Write and seal a policy bundle (`manifest`: assets_store.bundle.seal_bundle's keywords).

    The one bundle writer (training export and checkpoint import): built in a temporary sibling directory and
    renamed into place, so a half-written bundle never sits under the final name.
    """
    bundle_dir = Path(bundle_dir)
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = bundle_dir.with_name(f".{bundle_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_files(tmp, state_dict, config, stats_json)
        seal_bundle(tmp, **manifest)
        replace_directory(tmp, bundle_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return bundle_dir


def export_bundle(
    checkpoint: Path,
    bundle_dir: Path,
    *,
    dataset_id: str = "",
    mlflow_run_id: str = "",
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write and seal a policy bundle from a training checkpoint (file, or run directory -> its best.pt)."""
    ckpt = load_checkpoint(find_checkpoint(checkpoint))
    meta = dict(ckpt["meta"])
    all_metrics = {"best_val_loss": float(ckpt["best_val_loss"]), "steps": float(ckpt["step"]), **(metrics or {})}
    return write_bundle(bundle_dir, ckpt["model"], bundle_config(ckpt["act_config"], meta), ckpt["stats"],
                        dataset_id=dataset_id or meta.get("dataset_id", ""), mlflow_run_id=mlflow_run_id,
                        metrics=all_metrics)
