"""Tiny sealed policy bundles for the simulator's joints (untrained: fast, deterministic, never succeed)."""

from __future__ import annotations

import numpy as np

POLICY_HW = (32, 32)  # the tiny policy's input size; a simulator renders at it


def tiny_sim_bundle(path, cameras, robot="", chunk_size: int = 10):
    """A sealed bundle of an untrained ACT for the simulator's joints (fast, deterministic, never succeeds)."""
    import torch

    from assets_store.stats import NormStats
    from hardware.sim import constants as C
    from model.act import ACT
    from model.config import ACTConfig
    from model.checkpoints_import import to_bundle

    torch.manual_seed(0)
    cfg = ACTConfig(hidden_dim=32, dim_feedforward=64, nheads=2, enc_layers=1, vae_enc_layers=1, dec_layers=1,
                    chunk_size=chunk_size, dropout=0.0, pretrained_backbone=False, backbone_norm="group",
                    state_dim=14, action_dim=14, camera_names=list(cameras))
    unit = NormStats(np.zeros(14), np.full(14, 0.1), -np.ones(14), np.ones(14), 1)
    return to_bundle(ACT(cfg), {"qpos": unit, "action": unit}, path, joint_names=list(C.JOINT_NAMES),
                     action_names=list(C.JOINT_NAMES), fps=50.0, image_size=POLICY_HW, robot=robot)


def policy_inputs(seed: int, cameras):
    """One observation for a tiny bundle's policy: qpos near zero, frames of random pixels at another size (resized)."""
    rng = np.random.default_rng(seed)
    qpos = rng.normal(0, 0.1, 14).astype(np.float32)
    return qpos, {c: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for c in cameras}
