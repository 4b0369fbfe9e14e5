"""act_policy: train ACT on the current dataset, track it in MLflow, and export a sealed policy bundle.

Hyperparameters are Dagster run config (typed, editable in the launchpad). The asset sits in the `training`
concurrency pool: with the instance's pool limit of 1 (written by `aloha ui`/`aloha demo`), one training runs at a
time however many runs are launched. `launcher` picks where the training process runs: in the step's process, a
Dagster Pipes subprocess, or a Pipes-launched Kubernetes pod (docs/SCALE_OUT.md); the work itself is
pipeline.training_run in every case.
"""


import sys
from pathlib import Path
from typing import Any, Literal, Optional

from dagster import AssetExecutionContext, AssetKey, Config, Failure, MaterializeResult, MetadataValue, asset

from pipeline.assets.dataset import dataset
from pipeline.resources import MlflowResource, StoreResource

TRAINING_GROUP = "training"
TRAINING_POOL = "training"


ARCH_FIELDS = (
    "hidden_dim", "dim_feedforward", "nheads", "enc_layers", "vae_enc_layers", "chunk_size", "latent_dim",
    "kl_weight", "dropout", "pretrained_backbone", "backbone_stages",
)

# passed through to model.config.TrainConfig under the same name
TRAIN_FIELDS = (
    "steps", "time_budget_s", "batch_size", "lr", "lr_backbone", "weight_decay", "grad_clip", "val_every",
    "val_batches", "checkpoint_every", "log_every", "num_workers", "seed", "num_threads", "lr_schedule",
    "warmup_steps",
)


class TrainingConfig(Config):
    """One training run. Architecture fields left empty keep the preset's value."""

    preset: str = "small"  # "small" (CPU budget) or "paper"
    steps: Optional[int] = None
    time_budget_s: Optional[float] = 900.0  # whichever of steps / time budget comes first
    batch_size: int = 8
    lr: Optional[float] = None  # None: the preset's recommended rate
    lr_backbone: Optional[float] = None
    weight_decay: float = 1e-4
    grad_clip: Optional[float] = 10.0
    val_every: int = 500
    val_batches: Optional[int] = 20  # None: the whole validation split
    checkpoint_every: int = 500
    log_every: int = 10
    num_workers: int = 1  # one JPEG-decode worker outpaces a CPU training step; more would steal its cores
    image_height: int = 120
    image_width: int = 160
    seed: int = 0
    bf16: Optional[bool] = None  # None: bf16 autocast only where the CPU/GPU has native bf16 (else ~15x slower)
    num_threads: Optional[int] = None
    device: str = "auto"  # auto: the first CUDA GPU when there is one, else the CPU
    # cosine decays to zero over the steps or the time budget: on short CPU budgets it was the difference between
    # 6% and 45-65% success (README); "constant" is the original's schedule
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 100
    # where the training process runs: this step's process, a Pipes subprocess, or a Pipes-launched pod
    launcher: Literal["in_process", "subprocess", "k8s"] = "in_process"
    k8s_image: Optional[str] = None  # launcher "k8s": an image with this project installed (and CUDA)
    k8s_namespace: Optional[str] = None
    k8s_gpus: int = 1  # nvidia.com/gpu limit of the training pod
    # architecture overrides
    hidden_dim: Optional[int] = None
    dim_feedforward: Optional[int] = None
    nheads: Optional[int] = None
    enc_layers: Optional[int] = None
    vae_enc_layers: Optional[int] = None
    chunk_size: Optional[int] = None
    latent_dim: Optional[int] = None
    kl_weight: Optional[float] = None
    dropout: Optional[float] = None
    pretrained_backbone: Optional[bool] = None
    backbone_stages: Optional[int] = None  # 4: ResNet18 to layer4 (the original); 3: to layer3, stride 16

    def model_configs(self):
        from model.config import ACTConfig, TrainConfig, bf16_is_fast

        arch = {k: getattr(self, k) for k in ARCH_FIELDS if getattr(self, k) is not None}
        act_cfg = ACTConfig.preset_named(self.preset, **arch)
        train = {k: getattr(self, k) for k in TRAIN_FIELDS}  # same names in model.config.TrainConfig
        train["image_size"] = (self.image_height, self.image_width)
        device = self.resolved_device()
        train["device"] = device
        train["bf16"] = bf16_is_fast(device) if self.bf16 is None else self.bf16
        return act_cfg, TrainConfig(**train)

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def latest_metadata(context: AssetExecutionContext, key: str) -> dict[str, Any]:
    """Plain values of the latest materialization of `key`: how file-writing assets hand results downstream."""
    event = context.instance.get_latest_materialization_event(AssetKey(key))
    if event is None or event.asset_materialization is None:
        raise Failure(f"asset {key!r} has not been materialized yet")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _metadata_values(plain: dict[str, Any]) -> dict[str, Any]:
    from pipeline.training_run import TYPED_KEYS

    wrap = {"url": MetadataValue.url, "path": MetadataValue.path, "json": MetadataValue.json, "md": MetadataValue.md}
    return {k: wrap[TYPED_KEYS[k]](v) if k in TYPED_KEYS else v for k, v in plain.items()}


def _launch_pipes(context: AssetExecutionContext, config: TrainingConfig, request) -> MaterializeResult:
    extras = {"request": request.to_json()}
    command = [sys.executable, "-m", "pipeline.training_run"]
    if config.launcher == "subprocess":
        from dagster import PipesSubprocessClient

        invocation = PipesSubprocessClient().run(context=context, command=command, extras=extras)
    else:  # "k8s": dagster-k8s is installed where Kubernetes is used, not here
        try:
            from dagster_k8s import PipesK8sClient
        except ImportError as exc:
            raise Failure("launcher 'k8s' needs the dagster-k8s package (pip install dagster-k8s==0.29.27)") from exc
        if not config.k8s_image:
            raise Failure("launcher 'k8s' needs k8s_image: an image with this project installed")
        invocation = PipesK8sClient().run(
            context=context, image=config.k8s_image, command=["python", "-m", "pipeline.training_run"],
            namespace=config.k8s_namespace, extras=extras,
            base_pod_spec={"containers": [{"resources": {"limits": {"nvidia.com/gpu": config.k8s_gpus}}}]}
            if config.k8s_gpus else None,
        )
    result = invocation.get_materialize_result()
    if result is None:
        raise Failure("the training process exited without reporting a materialization")
    return result


@asset(
    group_name=TRAINING_GROUP,
    deps=[dataset],
    pool=TRAINING_POOL,
    description="ACT trained on the current dataset; an MLflow run with params, metrics and the policy bundle.",
    kinds={"pytorch", "mlflow"},
)
def act_policy(
    context: AssetExecutionContext, config: TrainingConfig, store: StoreResource, mlflow: MlflowResource
) -> MaterializeResult:
    from pipeline.training_run import TrainingRequest, run_training

    ds = latest_metadata(context, "dataset")
    config.model_configs()  # a bad config fails here, before a process or an MLflow run is started
    request = TrainingRequest(
        config=config.model_dump(),
        dataset_id=str(ds["dataset_id"]),
        dataset_dir=str(ds["dataset_dir"]),
        store_root=str(store.layout.root),
        mlflow=mlflow.model_dump(exclude={"store"}),
        tags={"dagster_run_id": context.run.run_id, "dagster_asset": "act_policy"},
    )
    if config.launcher != "in_process":
        return _launch_pipes(context, config, request)
    return MaterializeResult(metadata=_metadata_values(run_training(request, context.log.info)))
