"""act_policy: train ACT on the current dataset, track it in MLflow, and export a sealed policy bundle.

Hyperparameters are Dagster run config (typed, editable in the launchpad). The asset sits in the `training`
concurrency pool: with the instance's pool limit of 1 (written by `aloha ui`/`aloha demo`), one training runs at a
time however many runs are launched. Training runs in-process here; docs/SCALE_OUT.md moves it to its own pod.
"""


import resource
import time
from pathlib import Path
from typing import Any, Optional

from dagster import AssetExecutionContext, AssetKey, Config, Failure, MaterializeResult, MetadataValue, asset

from assets_store.bundle import verify_bundle
from assets_store.dataset import load_dataset
from pipeline import plots
from pipeline.assets.dataset import dataset
from pipeline.resources import MlflowResource, StoreResource

TRAINING_GROUP = "training"
TRAINING_POOL = "training"


ARCH_FIELDS = (
    "hidden_dim", "dim_feedforward", "nheads", "enc_layers", "vae_enc_layers", "chunk_size", "latent_dim",
    "kl_weight", "pretrained_backbone",
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
    # architecture overrides
    hidden_dim: Optional[int] = None
    dim_feedforward: Optional[int] = None
    nheads: Optional[int] = None
    enc_layers: Optional[int] = None
    vae_enc_layers: Optional[int] = None
    chunk_size: Optional[int] = None
    latent_dim: Optional[int] = None
    kl_weight: Optional[float] = None
    pretrained_backbone: Optional[bool] = None

    def model_configs(self):
        from model.config import ACTConfig, TrainConfig, bf16_is_fast

        arch = {k: getattr(self, k) for k in ARCH_FIELDS if getattr(self, k) is not None}
        act_cfg = ACTConfig.preset_named(self.preset, **arch)
        train = dict(
            steps=self.steps,
            time_budget_s=self.time_budget_s,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_backbone=self.lr_backbone,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            val_every=self.val_every,
            val_batches=self.val_batches,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
            num_workers=self.num_workers,
            image_size=(self.image_height, self.image_width),
            seed=self.seed,
            num_threads=self.num_threads,
        )
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


class MlflowTrainingLogger:
    """A model.callbacks.TrainCallback: per-step metrics (batched by the run handle) and cheap process metrics."""

    def __init__(self, run, context: AssetExecutionContext, log_every_s: float = 30.0):
        self.run = run
        self.context = context
        self.history: list[dict[str, float]] = []
        self._last_log = 0.0
        self._log_every_s = log_every_s
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()

    def on_start(self, info: Any) -> None:
        self.context.log.info(f"training started: {info}")

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.run.log_metrics(values, step)
        if "loss" in values:
            self.history.append({"step": step, "loss": values["loss"]})
        now = time.perf_counter()
        if now - self._last_log >= self._log_every_s:
            self._last_log = now
            self.run.log_metrics(self._system_metrics(now), step)  # psutil is not installed: the stdlib suffices
            self.context.log.info(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def _system_metrics(self, now: float) -> dict[str, float]:
        wall = max(now - self._t0, 1e-9)
        return {
            "system/process_cpu_percent": 100.0 * (time.process_time() - self._cpu0) / wall,
            "system/max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }

    def on_validation(self, step: int, val_loss: float) -> None:
        self.run.log_metrics({"val_loss": float(val_loss)}, step)
        self.history.append({"step": step, "val_loss": float(val_loss)})
        self.context.log.info(f"step {step}: val_loss={val_loss:.4g}")

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def on_end(self, result: Any) -> None:
        self.run.flush()


def flat_params(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


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
    from model.callbacks import TrainCallback
    from model.export import export_bundle
    from model.train import train

    ds = latest_metadata(context, "dataset")
    dataset_id, dataset_dir = str(ds["dataset_id"]), Path(str(ds["dataset_dir"]))
    manifest, _ = load_dataset(dataset_dir)
    act_cfg, train_cfg = config.model_configs()

    tags = {
        "dataset_id": dataset_id,
        "dagster_run_id": context.run.run_id,
        "dagster_asset": "act_policy",
        "robot": manifest.robot,
    }
    with mlflow.run(run_name=f"act-{dataset_id}", tags=tags) as run:
        out_dir = store.layout.runs_dir / run.run_id
        run.set_tags({"output_dir": str(out_dir)})
        run.log_params(
            {
                **flat_params("model", act_cfg.model_dump()),
                **flat_params("train", train_cfg.model_dump()),
                "dataset.id": dataset_id,
                "dataset.episodes_train": len(manifest.train),
                "dataset.episodes_val": len(manifest.val),
                "dataset.steps": manifest.num_steps,
            }
        )
        logger = MlflowTrainingLogger(run, context)

        class _Callback(TrainCallback):  # adapts to the model package's callback base without subclassing twice
            def on_start(self, info):
                logger.on_start(info)

            def on_metrics(self, step, metrics):
                logger.on_metrics(step, metrics)

            def on_validation(self, step, val_loss):
                logger.on_validation(step, val_loss)

            def on_checkpoint(self, step, path):
                logger.on_checkpoint(step, path)

            def on_end(self, result):
                logger.on_end(result)

        result = train(dataset_dir, out_dir, act_cfg, train_cfg, callbacks=(_Callback(),))
        metrics = {
            "val_loss": _num(result.best_val_loss),
            "final_train_loss": _num(result.final_train_loss),
            "train_steps": float(result.steps),
            "train_wall_s": float(result.wall_s),
        }
        run.log_metrics({k: v for k, v in metrics.items() if v is not None}, int(result.steps))
        checkpoint = result.best_checkpoint or result.last_checkpoint
        bundle_dir = export_bundle(
            checkpoint,
            out_dir / "bundle",
            dataset_id=dataset_id,
            mlflow_run_id=run.run_id,
            metrics={k: v for k, v in metrics.items() if v is not None},
        )
        bundle_manifest = verify_bundle(bundle_dir)
        run.log_artifacts(bundle_dir, "bundle")
        run.flush()
        run_url = mlflow.run_url(run.experiment_id, run.run_id)
        artifact_uri = f"{run.artifact_uri.rstrip('/')}/bundle"

    history = logger.history or list(_history_rows(result.history))
    metadata: dict[str, Any] = {
        "dataset_id": dataset_id,
        "mlflow_run_id": run.run_id,
        "mlflow_experiment_id": run.experiment_id,
        "mlflow_run": MetadataValue.url(run_url),
        "mlflow_artifact_uri": artifact_uri,
        "bundle_dir": MetadataValue.path(str(bundle_dir)),
        "bundle_files": MetadataValue.json(bundle_manifest["files"]),
        "steps": int(result.steps),
        "wall_s": float(result.wall_s),
        "val_loss": metrics["val_loss"] if metrics["val_loss"] is not None else float("nan"),
        "final_train_loss": metrics["final_train_loss"] if metrics["final_train_loss"] is not None else float("nan"),
    }
    try:
        metadata["loss_curve"] = MetadataValue.md(plots.loss_curve(history))
    except Exception as exc:  # the plot is a nicety
        context.log.warning(f"loss curve skipped: {exc}")
    return MaterializeResult(metadata=metadata)


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def _history_rows(history: Any):
    for row in history or []:
        if isinstance(row, dict) and "step" in row:
            yield row
