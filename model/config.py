"""The one training configuration: the ACT architecture (ACTConfig), one training run (TrainConfig), named presets.

Every setting, its default and its description is written here once. The `python -m model.train` options and the
`act_policy` run config of the Dagster launchpad are generated from these fields, so a field added here appears in
both. A preset is a named recipe: the values it changes from these defaults.

Defaults are the paper's table (arXiv 2304.13705, table of hyperparameters) with one deliberate exception:

    dec_layers = 1.  The reference code builds 7 decoder layers but returns the output of the FIRST one (it stacks
    the intermediate outputs and indexes [0]), so layers 2-7 never influence an action and receive no gradient.
    One decoder layer + the final LayerNorm computes exactly what the original trains, at 1/7 of the decoder cost.
    LeRobot made the same choice. Ask for more layers and this model really uses the last one.

Data-dependent sizes (state_dim, action_dim, camera_names) are filled in from the dataset by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import UnionType
from typing import Any, ClassVar, Literal, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from assets_store.schema import DEFAULT_CAMERA

DEFAULT_CACHE_BYTES = 2 << 30  # the node-local chunk cache's bound when none is set (model.data.ChunkCache)

PAPER_LR = 1e-5
SMALL_LR = 1e-4


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


class ACTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not settings a user picks: the dataset's sizes and names and the backbone normalization (it follows
    # pretrained_backbone) are filled in by the trainer; recommended_lr and preset come with the preset.
    NOT_TUNABLE: ClassVar[frozenset[str]] = frozenset(
        {"state_dim", "action_dim", "camera_names", "backbone_norm", "recommended_lr", "preset"})

    # transformer
    hidden_dim: int = Field(512, description="Transformer width (d_model).")
    dim_feedforward: int = Field(3200, description="Transformer feed-forward width.")
    nheads: int = Field(8, description="Attention heads (must divide hidden_dim).")
    enc_layers: int = Field(4, description="Transformer encoder layers.")
    dec_layers: int = Field(1, description="Transformer decoder layers: 1 computes what the original trains (see "
                                           "model/config.py); more layers really use the last one.")
    vae_enc_layers: int = Field(4, description="CVAE encoder layers (the original reuses enc_layers).")
    dropout: float = Field(0.1, description="Transformer dropout, in [0, 1).")
    # CVAE
    latent_dim: int = Field(32, description="CVAE latent size.")
    kl_weight: float = Field(10.0, description="Weight of the KL term in the loss (the paper's beta).")
    use_vae: bool = Field(True, description="Train with the CVAE encoder (False: z = 0 always).")
    # action chunking
    chunk_size: int = Field(100, description="Actions predicted per query (the chunk k).")
    # vision
    backbone: Literal["resnet18"] = Field("resnet18", description="Image backbone.")
    backbone_stages: Literal[3, 4] = Field(4, description=(
        "ResNet18 stages kept: 4 = the original (layer4, stride 32, 512 channels); 3 = up to layer3 (stride 16, "
        "256 channels), for small images where layer4 sees a few pixels (model/backbone.py)."))
    pretrained_backbone: bool = Field(True, description=(
        "ImageNet weights via torchvision when cached or downloadable (frozen BatchNorm); else trained from scratch."))
    backbone_norm: Literal["frozen_bn", "group"] = Field("frozen_bn", description=(
        "frozen_bn: the original (pretrained statistics, frozen); group: the from-scratch fallback that trains with "
        "any batch size and keeps DDP shards independent of each other."))
    loss_normalization: Literal["valid", "all"] = Field("valid", description=(
        "valid: the L1 sum divided by the number of unpadded elements (LeRobot today); all: by every element "
        "including padding (the original code)."))
    # training-time image augmentation (model/augment.py): never applied at inference
    augment: bool = Field(False, description=(
        "Augment training images on the training device: random resized crop, small rotation, colour jitter, drawn "
        "per camera and sample (model/augment.py). Never applied at inference."))
    augment_crop_scale: float = Field(0.9, gt=0.0, le=1.0, description=(
        "Augmentation: smallest fraction of the image area a random crop keeps (aspect kept); 1 = no crop."))
    augment_rotation_deg: float = Field(5.0, ge=0.0, le=180.0, description=(
        "Augmentation: largest rotation in degrees, either way; 0 = none."))
    augment_brightness: float = Field(0.3, ge=0.0, description="Augmentation: colour jitter of brightness (0 = none).")
    augment_contrast: float = Field(0.4, ge=0.0, description="Augmentation: colour jitter of contrast (0 = none).")
    augment_saturation: float = Field(0.5, ge=0.0, description="Augmentation: colour jitter of saturation (0 = none).")
    augment_hue: float = Field(0.0, ge=0.0, le=0.5, description="Augmentation: colour jitter of hue, at most 0.5 "
                                                                "(0 = none).")
    mask_padded_actions: bool = Field(True, description=(
        "Co-training: action dimensions a group lacks (a static episode's base velocities, padded with 0) do not "
        "count in the loss. False: they count, as in the original (act-plus-plus) code."))
    # data-dependent, filled by the trainer from the dataset
    state_dim: int = Field(14, description="Joint positions per step (from the dataset).")
    action_dim: int = Field(14, description="Action dimensions per step (from the dataset).")
    camera_names: list[str] = Field(default_factory=lambda: [DEFAULT_CAMERA], description="Cameras, in order (from the dataset).")
    recommended_lr: float = Field(PAPER_LR, description="The learning rate this architecture was tuned with; "
                                                        "TrainConfig.lr empty picks it up.")
    preset: str = Field("paper", description="The preset this configuration started from.")

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
        return PAPER.act_config(**overrides)

    @classmethod
    def small(cls, **overrides) -> "ACTConfig":
        return SMALL.act_config(**overrides)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    NOT_TUNABLE: ClassVar[frozenset[str]] = frozenset()

    # budget: whichever comes first; at least one must be set
    steps: int | None = Field(2000, description=(
        "Step budget. Training ends at the steps or the time budget, whichever comes first; set at least one."))
    time_budget_s: float | None = Field(None, description="Wall-clock budget in seconds (see steps).")
    batch_size: int = Field(8, description="Samples per optimizer step (over all processes).")
    lr: float | None = Field(None, description=(
        "Learning rate; empty: the architecture's recommended rate (1e-5 paper, 1e-4 small)."))
    lr_backbone: float | None = Field(None, description="Learning rate of the backbone; empty: the same as lr.")
    weight_decay: float = Field(1e-4, description="AdamW weight decay.")
    grad_clip: float | None = Field(10.0, description="Gradient-norm clipping; empty or 0: none.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description=(
        "constant: the original's; cosine: decays to zero over the steps or the time budget."))
    warmup_steps: int = Field(0, description="Linear learning-rate warmup steps.")
    val_every: int = Field(200, description="Validation loss every N steps (and at the end).")
    val_batches: int | None = Field(20, description="Validation batches each time; empty: the whole validation split.")
    checkpoint_every: int = Field(200, description="Write last.pt every N steps (and at the end).")
    log_every: int = Field(10, description="Report training metrics (averaged) every N steps.")
    num_workers: int = Field(2, description="Data-loader processes decoding JPEG frames.")
    image_size: tuple[int, int] = Field((480, 640), description="(H, W) training resolution; frames are resized to it.")
    seed: int = Field(0, description="Seed of the initial weights, the sample order, dropout and CVAE noise.")
    bf16: bool | None = Field(None, description=(
        "bf16 autocast; empty: only where the device has native bf16 (AVX512-BF16/AMX CPUs, Ampere+ GPUs), "
        "being much slower elsewhere."))
    fused_optimizer: bool = Field(True, description="Fused AdamW kernel where torch has one for the device.")
    channels_last: bool = Field(True, description="channels-last memory format for the convolutions.")
    compile: bool = Field(False, description=(
        "torch.compile the training step's model (forward and backward). Pays on a GPU at large batches: on an H100 "
        "at batch 32 bf16, 7.7 -> 14.3 steps/s after ~50 s of compiling; at batch 8 only 20.9 -> 23.5 (issue 16). "
        "Short runs, small batches and CPUs rarely win back the compile time."))
    device: str = Field("cpu", description="torch device: cpu, cuda or cuda:N.")
    chunk_cache_dir: str | None = Field(None, description=(
        "Node-local directory caching the frame chunks of episodes read from an object store; empty: "
        "$ALOHA_CHUNK_CACHE, else no cache (every frame fetched)."))
    chunk_cache_bytes: int | None = Field(None, gt=0, description=(
        "Bound of that directory in bytes, for the whole node (every DataLoader worker and rank sharing it); "
        "empty: $ALOHA_CHUNK_CACHE_BYTES, else 2 GiB."))
    num_threads: int | None = Field(None, description="torch intra-op threads; empty: torch's default.")
    base_smoothing_window: int = Field(
        5, ge=1, description="Mobile base: recorded base velocities are smoothed by a centred moving average over "
                             "this many steps before training (Mobile ALOHA's recipe: 5; 1 = as recorded).")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.steps is None and self.time_budget_s is None:
            raise ValueError("set steps or time_budget_s (or both): training needs a budget")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        h, w = self.image_size
        if h < 32 or w < 32:
            raise ValueError(f"image_size must be at least 32x32 (ResNet stride), got {self.image_size}")
        for name in ("batch_size", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.bf16 is None:  # settled once, for the device asked for: a checkpoint records what was used
            self.bf16 = bf16_is_fast(self.device)
        return self

    def resolved_lrs(self, act: ACTConfig) -> tuple[float, float]:
        lr = self.lr if self.lr is not None else act.recommended_lr
        return lr, (self.lr_backbone if self.lr_backbone is not None else lr)


def tunable_fields(cls: type[ACTConfig] | type[TrainConfig]) -> dict[str, FieldInfo]:
    """The fields a user sets (what the CLI options and the Dagster run config are generated from)."""
    return {name: f for name, f in cls.model_fields.items() if name not in cls.NOT_TUNABLE}


def value_type(f: FieldInfo) -> tuple[Any, bool]:
    """A field's type without its `| None` -> (type, whether the field may be left empty)."""
    if get_origin(f.annotation) in (Union, UnionType):
        (inner,) = [a for a in get_args(f.annotation) if a is not type(None)]
        return inner, True
    return f.annotation, False


# steps and time_budget_s are one budget: a caller who sets either replaces both
BUDGET_FIELDS = ("steps", "time_budget_s")


@dataclass(frozen=True)
class Preset:
    """A named recipe: the values it changes from ACTConfig's and TrainConfig's defaults."""

    name: str
    description: str
    act: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)

    def derive(self, name: str, description: str, *, act: Mapping[str, Any] | None = None,
               train: Mapping[str, Any] | None = None) -> "Preset":
        """A preset that changes this one's values."""
        return Preset(name, description, {**self.act, **(act or {})}, {**self.train, **(train or {})})

    def act_config(self, **overrides: Any) -> ACTConfig:
        return ACTConfig(**{**self.act, "preset": self.name, **overrides})

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The preset's run with `overrides`; setting steps or time_budget_s replaces the preset's whole budget."""
        return TrainConfig(**self.train_values(**overrides))

    def train_values(self, **overrides: Any) -> dict[str, Any]:
        """train_config's values before validation (an empty bf16 stays empty: "auto" for the device to settle)."""
        if any(k in overrides for k in BUDGET_FIELDS):
            overrides = {**dict.fromkeys(BUDGET_FIELDS), **overrides}
        return {**self.values(TrainConfig), **overrides}

    def values(self, cls: type[ACTConfig] | type[TrainConfig]) -> dict[str, Any]:
        """Every field of `cls` as this preset sets it (unvalidated)."""
        own = self.act if cls is ACTConfig else self.train
        return {name: own[name] if name in own else f.get_default(call_default_factory=True)
                for name, f in cls.model_fields.items()}


PAPER = Preset("paper", "The paper's recipe: 480x640, lr 1e-5, constant, 2000 steps.")

SMALL = PAPER.derive(
    "small", "CPU budget: ~7 train steps/s at 120x160 on 2 cores (FACTS.md); lr 1e-4, cosine to zero.",
    act=dict(hidden_dim=256, dim_feedforward=1024, enc_layers=2, vae_enc_layers=2, dec_layers=1, chunk_size=50,
             recommended_lr=SMALL_LR),
    # The cosine matters for short CPU budgets: on the sim transfer cube, 20 minutes at a constant 1e-4 gave 6%
    # success, the same budget decaying to zero 45-65% (README, Benchmarks).
    train=dict(image_size=(120, 160), lr=SMALL_LR, lr_backbone=SMALL_LR, lr_schedule="cosine", warmup_steps=100),
)

# What a plain `train_and_deploy` run trains (the act_policy run config's defaults).
SMALL_15MIN = SMALL.derive(
    "small_15min", "The small preset on a 15-minute wall-clock budget: a plain train_and_deploy run.",
    train=dict(
        steps=None, time_budget_s=900.0, val_every=500, checkpoint_every=500,
        num_workers=1,  # one JPEG-decode worker outpaces a CPU training step; more would steal its cores
        lr=None, lr_backbone=None,  # empty: the architecture's rate, so another architecture brings its own
    ),
)

# `aloha demo`: 20 minutes on a 2-core CPU, scripted transfer-cube episodes, then closed-loop success in the sim.
DEMO = SMALL_15MIN.derive(
    "demo", "aloha demo: 20 CPU minutes at 60x80, ResNet18 to layer3, no dropout, cosine from 2e-4.",
    act=dict(
        # ResNet18 up to layer3 (stride 16): at 60x80 layer4 sees a 2x3 map yet costs ~40% of a step. Dropping it
        # took the same 20 min from 3,525 to 4,942 steps, val loss 0.037 -> 0.025 (README, Benchmarks).
        backbone_stages=3,
        # No transformer dropout: a 20-min budget underfits, and dropout's random masks cost ~11% of a CPU step.
        # With 3 stages, 0.1 -> 0 took 4,942 -> 6,168 steps, val loss 0.025 -> 0.009, success 77% (30 seeds) ->
        # 86% (50).
        dropout=0.0,
    ),
    train=dict(
        time_budget_s=20 * 60.0,
        # What the policy sees. On the 2-core CPU (20 min on 1 thread, cosine, 20 held-out seeds) 120x160 / 72x96 /
        # 60x80 trained 1458 / 2500 / 2741 steps and succeeded 45% / 65% / 75%: with a from-scratch backbone, more
        # steps beat more pixels (the cube is still 2 px wide at 60x80). README, Benchmarks.
        image_size=(60, 80),
        # 2e-4 fitted better than the small preset's 1e-4 in the same budget (val loss 0.043 vs 0.060 at 72x96)
        lr=2e-4, lr_backbone=2e-4,
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (PAPER, SMALL, SMALL_15MIN, DEMO)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
