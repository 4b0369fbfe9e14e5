"""Typed configuration: the ACT architecture (ACTConfig) and one training run (TrainConfig).

Defaults are the paper's table (arXiv 2304.13705, table of hyperparameters) with one deliberate exception:

    dec_layers = 1.  The reference code builds 7 decoder layers but returns the output of the FIRST one (it stacks
    the intermediate outputs and indexes [0]), so layers 2-7 never influence an action and receive no gradient.
    One decoder layer + the final LayerNorm computes exactly what the original trains, at 1/7 of the decoder cost.
    LeRobot made the same choice. Ask for more layers and this model really uses the last one.

Data-dependent sizes (state_dim, action_dim, camera_names) are filled in from the dataset by the trainer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from assets_store.schema import DEFAULT_CAMERA

PAPER_LR = 1e-5


def bf16_is_fast(device: str = "cpu") -> bool:
    """bf16 autocast pays off only with native bf16 math: AVX512-BF16/AMX on CPU, Ampere+ on CUDA.

    On an AVX2-only CPU (this machine) it was measured ~2x SLOWER than fp32, so the default follows the hardware.
    """
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags

SMALL_LR = 1e-4


class ACTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # transformer
    hidden_dim: int = 512
    dim_feedforward: int = 3200
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 1  # see the module docstring: what the original effectively trains
    vae_enc_layers: int = 4  # the original reuses enc_layers for the CVAE encoder
    dropout: float = 0.1
    # CVAE
    latent_dim: int = 32
    kl_weight: float = 10.0
    use_vae: bool = True
    # action chunking
    chunk_size: int = 100
    # vision
    backbone: Literal["resnet18"] = "resnet18"
    # ResNet stages kept: 4 = the original (layer4, stride 32, 512 channels); 3 = up to layer3 (stride 16,
    # 256 channels), the CPU demo's choice at 60x80 where layer4 sees 2x3 pixels (model/backbone.py)
    backbone_stages: Literal[3, 4] = 4
    pretrained_backbone: bool = True  # ImageNet weights via torchvision when cached or downloadable
    # "frozen_bn": the original (pretrained statistics, frozen); "group": from-scratch fallback that trains
    # with any batch size and keeps DDP shards independent of each other.
    backbone_norm: Literal["frozen_bn", "group"] = "frozen_bn"
    # loss: "valid" divides the L1 sum by the number of unpadded elements (LeRobot today);
    # "all" divides by every element including padding (the original code).
    loss_normalization: Literal["valid", "all"] = "valid"
    # data-dependent, filled by the trainer from the dataset
    state_dim: int = 14
    action_dim: int = 14
    camera_names: list[str] = Field(default_factory=lambda: [DEFAULT_CAMERA])
    # the learning rate this architecture was tuned with; TrainConfig.lr=None picks it up
    recommended_lr: float = PAPER_LR
    preset: str = "paper"

    @model_validator(mode="after")
    def _check(self) -> "ACTConfig":
        if self.hidden_dim % self.nheads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be divisible by nheads {self.nheads}")
        if self.hidden_dim % 2:
            raise ValueError("hidden_dim must be even (2-D sine position embedding)")
        for name in ("enc_layers", "dec_layers", "chunk_size", "latent_dim", "state_dim", "action_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.camera_names:
            raise ValueError("at least one camera is required")
        return self

    @classmethod
    def paper(cls, **overrides) -> "ACTConfig":
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> "ACTConfig":
        """CPU budget preset: ~7 train steps/s at 120x160 on 2 cores (FACTS.md)."""
        base = dict(
            hidden_dim=256, dim_feedforward=1024, enc_layers=2, vae_enc_layers=2, dec_layers=1,
            chunk_size=50, recommended_lr=SMALL_LR, preset="small",
        )
        return cls(**{**base, **overrides})

    @classmethod
    def preset_named(cls, name: str, **overrides) -> "ACTConfig":
        if name == "paper":
            return cls.paper(**overrides)
        if name == "small":
            return cls.small(**overrides)
        raise ValueError(f"unknown preset {name!r}; expected 'paper' or 'small'")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # budget: whichever comes first; at least one must be set
    steps: int | None = 2000
    time_budget_s: float | None = None
    batch_size: int = 8
    lr: float | None = None  # None: ACTConfig.recommended_lr (1e-5 paper, 1e-4 small preset)
    lr_backbone: float | None = None  # None: same as lr (the paper uses 1e-5 for both)
    weight_decay: float = 1e-4
    grad_clip: float | None = 10.0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # the original is constant; cosine spans the budget
    warmup_steps: int = 0
    val_every: int = 200
    val_batches: int | None = 20  # None: the whole validation split
    checkpoint_every: int = 200
    log_every: int = 10
    num_workers: int = 2
    image_size: tuple[int, int] = (480, 640)  # (H, W) training resolution; inputs are resized to it
    seed: int = 0
    bf16: bool = Field(default_factory=bf16_is_fast)  # autocast to bfloat16 where the hardware has native bf16
    fused_optimizer: bool = True
    channels_last: bool = True
    device: str = "cpu"
    num_threads: int | None = None  # torch intra-op threads; None keeps torch's default

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.steps is None and self.time_budget_s is None:
            raise ValueError("set steps or time_budget_s (or both): training needs a budget")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr_schedule == "cosine" and self.steps is None and self.time_budget_s is None:
            raise ValueError("a cosine schedule needs steps or a time budget (its length)")
        h, w = self.image_size
        if h < 32 or w < 32:
            raise ValueError(f"image_size must be at least 32x32 (ResNet stride), got {self.image_size}")
        for name in ("batch_size", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        return self

    @classmethod
    def small(cls, **overrides) -> "TrainConfig":
        """Pairs with ACTConfig.small(): 120x160 images, lr 1e-4, cosine to zero over the budget.

        The cosine matters for short CPU budgets: on the sim transfer cube, 20 minutes at a constant 1e-4 gave 6%
        success, the same budget decaying to zero 45-65% (README, Benchmarks).
        """
        base = dict(image_size=(120, 160), lr=SMALL_LR, lr_backbone=SMALL_LR, lr_schedule="cosine", warmup_steps=100)
        return cls(**{**base, **overrides})

    def resolved_lrs(self, act: ACTConfig) -> tuple[float, float]:
        lr = self.lr if self.lr is not None else act.recommended_lr
        return lr, (self.lr_backbone if self.lr_backbone is not None else lr)
