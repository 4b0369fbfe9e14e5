"""Helpers of the model tests (a module of its own: `conftest` is ambiguous once tests/ and tests/model/ both have one,
and DDP worker processes import these by module name)."""

from __future__ import annotations

import numpy as np
import torch

from assets_store import CameraSpec, EpisodeInfo, EpisodeReader, EpisodeWriter, StoreLayout
from assets_store.dataset import build_manifest, episode_content_hash, write_dataset
from assets_store.stats import dataset_stats, episode_partial_stats
from model.config import ACTConfig, TrainConfig

JOINTS = ["j0", "j1", "j2"]
ACTIONS = ["j0", "j1", "j2", "base_v"]  # A != J, like Mobile ALOHA
CAMS = [CameraSpec("top", 48, 64), CameraSpec("wrist", 48, 64)]


def make_dataset(root, lengths=(30, 26, 34, 28), seed=0):
    """Episodes whose actions are a function of what the cameras see (brightness encodes the phase)."""
    layout = StoreLayout(root)
    rng = np.random.default_rng(seed)
    refs, partials = [], []
    for i, n in enumerate(lengths):
        info = EpisodeInfo(robot="tiny", joint_names=JOINTS, action_names=ACTIONS, fps=50.0, cameras=CAMS,
                           task="tiny-task")
        w = EpisodeWriter(layout, "s1", info, index=i, workers=1)
        phase0 = rng.uniform(0, 1)
        for t in range(n):
            ph = phase0 + t / n
            qpos = np.array([np.sin(2 * np.pi * ph), np.cos(2 * np.pi * ph), ph], np.float32)
            action = np.array([np.sin(2 * np.pi * (ph + 0.05)), np.cos(2 * np.pi * (ph + 0.05)), ph + 0.02, 0.5 * ph], np.float32)
            img = np.zeros((48, 64, 3), np.uint8)
            img[..., 0] = int(255 * (ph % 1.0))
            img[: int(48 * (ph % 1.0)), :, 1] = 200
            imgs = {"top": img, "wrist": img[:, ::-1].copy()}
            w.add_step(qpos, action, t / 50.0, images=imgs)
        path = w.close()
        r = EpisodeReader(path)
        partials.append(episode_partial_stats(r.qpos, r.action))
        refs.append(("s1", path.name, episode_content_hash(path), len(r)))
    manifest = build_manifest(refs, val_fraction=0.25, robot="tiny", fps=50.0, joint_names=JOINTS,
                              action_names=ACTIONS, camera_names=[c.name for c in CAMS])
    return write_dataset(layout, manifest, dataset_stats(partials))


def tiny_act(**over) -> ACTConfig:
    base = dict(hidden_dim=32, dim_feedforward=64, nheads=2, enc_layers=1, vae_enc_layers=1, dec_layers=1,
                chunk_size=10, dropout=0.0, pretrained_backbone=False, backbone_norm="group",
                state_dim=3, action_dim=4, camera_names=["top", "wrist"], recommended_lr=1e-3, kl_weight=1.0)
    return ACTConfig(**{**base, **over})


def tiny_train(**over) -> TrainConfig:
    base = dict(steps=20, batch_size=8, lr=1e-3, lr_backbone=1e-3, val_every=10, val_batches=2, checkpoint_every=10,
                log_every=1, num_workers=0, image_size=(32, 48), bf16=False, seed=0)
    return TrainConfig(**{**base, **over})
