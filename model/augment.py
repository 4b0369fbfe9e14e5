"""Training-time image augmentation: random resized crop, small rotation and colour jitter, as ACT++ and LeRobot use.

Applied by the training step to the batch already on the training device (torchvision.transforms.v2 on tensors), so
DataLoader workers stay the same and validation, export and inference never see it: model/policy.py does not import
this module. Every image (each camera of each sample) draws its own parameters from torch's global RNG, which the
checkpoint carries, so `--resume` stays exact. The settings are ACTConfig's `augment*` fields, so they are recorded in
the checkpoint and in the bundle's config.json.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from model.config import ACTConfig


class ImageAugment:
    """(B, N, 3, H, W) float images in [0, 1] -> the same shape, each of the B*N images transformed on its own."""

    def __init__(self, cfg: ACTConfig, image_size: tuple[int, int]):
        h, w = image_size
        steps = []
        if cfg.augment_crop_scale < 1.0:  # keep the aspect ratio: the policy sees undistorted geometry
            steps.append(v2.RandomResizedCrop((h, w), scale=(cfg.augment_crop_scale, 1.0), ratio=(w / h, w / h),
                                              antialias=True))
        if cfg.augment_rotation_deg > 0:
            steps.append(v2.RandomRotation(cfg.augment_rotation_deg))
        steps.append(v2.ColorJitter(brightness=cfg.augment_brightness, contrast=cfg.augment_contrast,
                                    saturation=cfg.augment_saturation, hue=cfg.augment_hue))
        self.transform = v2.Compose(steps)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(-1, *images.shape[-3:])
        out = torch.stack([self.transform(img) for img in flat])
        return out.reshape(images.shape)


def make_augment(cfg: ACTConfig, image_size: tuple[int, int]) -> ImageAugment | None:
    """The training step's augmentation, None when the configuration leaves it off (the default)."""
    return ImageAugment(cfg, image_size) if cfg.augment else None
