"""ResNet18 feature extractor: the last stage's map only, stride 32, as in ACT (or stride 16 with 3 stages).

Two flavours, recorded in ACTConfig.backbone_norm so a checkpoint always rebuilds the same network:
  * "frozen_bn": torchvision ResNet18 with FrozenBatchNorm2d, ImageNet weights through torchvision's weights API
    (the original setup). The statistics are constants, so a shard of a batch sees exactly what the full batch sees.
  * "group": the same ResNet18 with GroupNorm, trained from scratch. Used when the ImageNet weights are not cached and
    cannot be downloaded (no internet): trainable BatchNorm would also train, but couples samples within a batch.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

log = logging.getLogger(__name__)

STAGE_CHANNELS = {3: 256, 4: 512}  # ResNet18 layer3 / layer4 output channels
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class ResNetBackbone(nn.Module):
    """conv1 .. layer4 of a ResNet18; (B, 3, H, W) normalized images -> (B, 512, H/32, W/32).

    stages=3 stops after layer3: (B, 256, H/16, W/16). At small CPU resolutions layer4 sees a 2x3 map that is mostly
    padding, yet holds 75% of the weights and ~40% of a training step; dropping it gives 1.7x the steps per second and
    quadruples the image tokens.
    """

    def __init__(self, norm: str = "frozen_bn", stages: int = 4):
        super().__init__()
        if stages not in STAGE_CHANNELS:
            raise ValueError(f"stages must be one of {sorted(STAGE_CHANNELS)}, got {stages}")
        norm_layer = FrozenBatchNorm2d if norm == "frozen_bn" else _group_norm
        net = resnet18(weights=None, norm_layer=norm_layer)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.layer4 = net.layer4 if stages == 4 else nn.Identity()  # Identity: no weights, no state-dict keys
        self.out_channels = STAGE_CHANNELS[stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def imagenet_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)


def load_imagenet_state_dict(allow_download: bool = True) -> dict[str, torch.Tensor] | None:
    """ResNet18 ImageNet weights from torchvision's cache, else a download; None when neither works."""
    if not allow_download and not imagenet_weights_path().is_file():
        return None
    try:
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, weights_only=True)
    except Exception as exc:  # offline, proxy, corrupt cache
        log.debug("ImageNet weights unavailable: %s", exc)
        return None


def pretrained_notice() -> str:
    return (
        "NOTICE: ResNet18 ImageNet weights are not cached and could not be downloaded "
        f"(expected {imagenet_weights_path()}). Training the backbone FROM SCRATCH with GroupNorm. "
        "Place resnet18-f37072fd.pth there (or allow the download) to get the original pretrained setup."
    )


def load_pretrained_into(backbone: ResNetBackbone, state: dict[str, torch.Tensor]) -> None:
    own = backbone.state_dict()
    picked = {k: v for k, v in state.items() if k in own}  # drops fc.*, num_batches_tracked (and layer4.* at 3 stages)
    missing = sorted(set(own) - set(picked))
    if missing:
        raise ValueError(f"ImageNet state dict lacks backbone keys: {missing[:5]}")
    backbone.load_state_dict(picked)


def resolve_pretrained(pretrained: bool, allow_download: bool = True) -> tuple[str, dict | None, str | None]:
    """-> (backbone_norm, imagenet state dict or None, notice or None)."""
    if not pretrained:
        return "group", None, None
    state = load_imagenet_state_dict(allow_download)
    if state is None:
        notice = pretrained_notice()
        warnings.warn(notice, stacklevel=2)
        return "group", None, notice
    return "frozen_bn", state, None
