"""One training run without Dagster: train ACT, track it in MLflow, export and seal the bundle.

The `act_policy` asset calls `run_training` in its own process (launcher "in_process"), or starts
`python -m pipeline.training_run` through Dagster Pipes (launcher "subprocess", or a Kubernetes pod with "k8s"): the
child reads the same config from the Pipes extras, streams its log lines back, and reports the same metadata. So
moving training to its own (GPU) process or pod is a run-config change, not a code change.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from dagster import MetadataValue

from assets_store.bundle import verify_bundle
from assets_store.dataset import load_dataset
from assets_store.remote import path_or_url
from model.callbacks import TrainCallback
from model.config import ACTConfig, TrainConfig
from pipeline import metadata_format as fmt, plots
from pipeline.resources import MlflowResource, StoreResource

Log = Callable[[str], None]

# metadata keys with a type other than what the value says (how the Dagster UI should render them)
TYPED_KEYS = {"mlflow_run": "url", "bundle_dir": "path", "bundle_files": "json", "loss_curve": "md"}


def typed_metadata(plain: dict[str, Any]) -> dict[str, Any]:
    """The run's plain metadata values as Dagster renders them (the in-process launcher's materialization)."""
    wrap = {"url": MetadataValue.url, "path": MetadataValue.path, "json": MetadataValue.json, "md": MetadataValue.md}
    return {k: wrap[TYPED_KEYS[k]](v) if k in TYPED_KEYS else v for k, v in plain.items()}


class MlflowTrainingLogger(TrainCallback):
    """Per-step metrics to MLflow (batched by the run handle) and cheap process metrics."""

    def __init__(self, run, log: Log, log_every_s: float = 30.0):
        self.run = run
        self.log = log
        self.history: list[dict[str, float]] = []
        self._last_log = 0.0
        self._log_every_s = log_every_s
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()

    def on_start(self, info: Any) -> None:
        # The configs as the trainer settled them (dataset sizes filled in, the backbone after an offline fallback),
        # not as requested: the run's params are what the bundle holds.
        self.run.log_params({**flat_params("model", info["act_config"]), **flat_params("train", info["train_config"])})
        self.log(f"training started: {info}")

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.run.log_metrics(values, step)
        if "loss" in values:
            self.history.append({"step": step, "loss": values["loss"]})
        now = time.perf_counter()
        if now - self._last_log >= self._log_every_s:
            self._last_log = now
            self.run.log_metrics(self._system_metrics(now), step)  # psutil is not installed: the stdlib suffices
            self.log(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def _system_metrics(self, now: float) -> dict[str, float]:
        wall = max(now - self._t0, 1e-9)
        return {
            "system/process_cpu_percent": 100.0 * (time.process_time() - self._cpu0) / wall,
            "system/max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }

    def on_validation(self, step: int, val_loss: float) -> None:
        self.run.log_metrics({"val_loss": float(val_loss)}, step)
        self.history.append({"step": step, "val_loss": float(val_loss)})
        self.log(f"step {step}: val_loss={val_loss:.4g}")

    def on_end(self, result: Any) -> None:
        self.run.flush()


@dataclass
class TrainingRequest:
    """What a training run needs; plain values so it crosses a process boundary as JSON (the Pipes extras)."""

    act_config: dict[str, Any]  # model.config.ACTConfig, resolved from the run config
    train_config: dict[str, Any]  # model.config.TrainConfig, device and bf16 settled
    launcher: str
    dataset_id: str
    dataset_dir: str
    store_root: str
    mlflow: dict[str, Any]  # MlflowResource fields other than `store`
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainingRequest":
        return cls(**data)

    def resources(self) -> tuple[StoreResource, MlflowResource]:
        store = StoreResource(root=self.store_root)
        return store, MlflowResource(store=store, **self.mlflow)


def flat_params(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


def run_training(request: TrainingRequest, log: Log) -> dict[str, Any]:
    """Train, log to MLflow, export + verify the bundle. -> the asset's metadata as plain values (see TYPED_KEYS)."""
    from model.export import export_bundle  # torch loads when a run starts, not when Dagster loads the code
    from model.train import train

    store, mlflow = request.resources()
    dataset_id, dataset_dir = request.dataset_id, path_or_url(request.dataset_dir)  # a bucket's URL stays one
    manifest, _ = load_dataset(dataset_dir)
    act_cfg, train_cfg = ACTConfig(**request.act_config), TrainConfig(**request.train_config)
    tags = {"dataset_id": dataset_id, "robot": manifest.robot, **request.tags}

    with mlflow.run(run_name=f"act-{dataset_id}", tags=tags) as run:
        out_dir = store.layout.run_dir(run.run_id)
        run.set_tags({"output_dir": str(out_dir), "launcher": request.launcher})
        run.log_params(
            {
                "dataset.id": dataset_id,
                "dataset.episodes_train": len(manifest.train),
                "dataset.episodes_val": len(manifest.val),
                "dataset.steps": manifest.num_steps,
            }
        )
        logger = MlflowTrainingLogger(run, log)
        result = train(dataset_dir, out_dir, act_cfg, train_cfg, callbacks=(logger,))
        metrics = {
            "val_loss": _num(result.best_val_loss),
            "final_train_loss": _num(result.final_train_loss),
            "train_steps": float(result.steps),
            "train_wall_s": float(result.wall_s),
        }
        known = {k: v for k, v in metrics.items() if v is not None}
        run.log_metrics(known, int(result.steps))
        bundle_dir = export_bundle(
            result.best_checkpoint or result.last_checkpoint,
            store.layout.run_bundle_dir(run.run_id),
            dataset_id=dataset_id,
            mlflow_run_id=run.run_id,
            metrics=known,
        )
        bundle_manifest = verify_bundle(bundle_dir)
        run.log_artifacts(bundle_dir, "bundle")
        run.flush()
        run_url = mlflow.run_url(run.experiment_id, run.run_id)
        artifact_uri = f"{run.artifact_uri.rstrip('/')}/bundle"

    history = logger.history or [r for r in result.history or [] if isinstance(r, dict) and "step" in r]
    metadata: dict[str, Any] = {
        "dataset_id": dataset_id,
        "mlflow_run_id": run.run_id,
        "mlflow_experiment_id": run.experiment_id,
        "mlflow_run": run_url,
        "mlflow_artifact_uri": artifact_uri,
        "bundle_dir": str(bundle_dir),
        "bundle_files": bundle_manifest["files"],
        "steps": int(result.steps),
        "wall_s": float(result.wall_s),  # raw: `aloha demo` reads it back
        "training_time": fmt.duration(result.wall_s),
        "val_loss": metrics["val_loss"] if metrics["val_loss"] is not None else float("nan"),  # raw: the gate's
        "final_train_loss": fmt.significant(metrics["final_train_loss"] if metrics["final_train_loss"] is not None
                                            else float("nan")),
        "launcher": request.launcher,
    }
    try:
        metadata["loss_curve"] = plots.loss_curve(history)
    except Exception as exc:  # the plot is a nicety
        log(f"loss curve skipped: {exc}")
    return metadata


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def main() -> None:
    """The Pipes child: `python -m pipeline.training_run`, started by the act_policy asset."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        request = TrainingRequest.from_json(dict(pipes.get_extra("request")))
        metadata = run_training(request, pipes.log.info)
        pipes.report_asset_materialization(
            metadata={k: {"raw_value": v, "type": TYPED_KEYS.get(k, "__infer__")} for k, v in metadata.items()}
        )


if __name__ == "__main__":
    main()
