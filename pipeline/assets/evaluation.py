"""policy_evaluation: validation loss from training, and closed-loop success on held-out seeds where a simulator
exists (the same rollout code as `aloha rollout`)."""


import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets_store.dataset import load_dataset
from assets_store.episode_reader import read_root_attrs
from pipeline import plots
from pipeline.assets.training import act_policy, latest_metadata
from pipeline.resources import MlflowResource, StoreResource

EVALUATION_GROUP = "evaluation"


class EvaluationConfig(Config):
    episodes: int = 50  # held-out seeds, disjoint from the recording seeds
    episode_len: int = 400  # ACT's sim horizon: success = max reward reached within it
    temporal_ensemble_k: Optional[float] = 0.01  # None: execute each chunk open loop
    query_every: int = 1
    seed_offset: int = 0
    closed_loop: bool = True  # False: validation loss only


def heldout(n: int, offset: int) -> list[int]:
    from hardware.sim import heldout_seeds

    return heldout_seeds(n, offset)


def recorded_resolution(store: StoreResource, dataset_dir: Path) -> tuple[int, int] | None:
    """(H, W) the dataset's cameras recorded at: evaluation renders what training saw."""
    manifest, _ = load_dataset(dataset_dir)
    if not manifest.episodes:
        return None
    attrs = read_root_attrs(manifest.episodes[0].path(store.layout))
    cams = attrs.get("cameras") or []
    return (int(cams[0]["height"]), int(cams[0]["width"])) if cams else None


@asset(
    group_name=EVALUATION_GROUP,
    deps=[act_policy],
    description="Validation loss, and closed-loop success rate over held-out seeds when the robot is a simulator.",
)
def policy_evaluation(
    context: AssetExecutionContext, config: EvaluationConfig, store: StoreResource, mlflow: MlflowResource
) -> MaterializeResult:
    from hardware.rollout import make_robot_for_policy, run_rollouts
    from model.policy import Policy

    trained = latest_metadata(context, "act_policy")
    ds = latest_metadata(context, "dataset")
    bundle_dir = Path(str(trained["bundle_dir"]))
    run_id = str(trained["mlflow_run_id"])
    manifest, _ = load_dataset(Path(str(ds["dataset_dir"])))
    val_loss = float(trained["val_loss"])

    metadata: dict[str, Any] = {
        "mlflow_run_id": run_id,
        "mlflow_run": MetadataValue.url(str(trained["mlflow_run"])),
        "dataset_id": str(trained["dataset_id"]),
        "bundle_dir": MetadataValue.path(str(bundle_dir)),
        "val_loss": val_loss,
        "robot": manifest.robot,
    }
    eval_metrics: dict[str, float] = {"eval/val_loss": val_loss}
    simulated = manifest.robot.startswith("sim-")
    if config.closed_loop and simulated and config.episodes > 0:
        policy = Policy.from_bundle(
            bundle_dir, device="cpu", temporal_ensemble_k=config.temporal_ensemble_k, query_every=config.query_every
        )
        resolution = recorded_resolution(store, Path(str(ds["dataset_dir"])))
        robot = make_robot_for_policy(manifest.robot, policy, resolution=resolution)
        seeds = heldout(config.episodes, config.seed_offset)
        done = {"n": 0}

        def progress(ep) -> None:
            done["n"] += 1
            context.log.info(
                f"rollout {done['n']}/{len(seeds)} seed {ep.seed}: success={ep.success} max_reward={ep.max_reward}"
            )

        report = run_rollouts(robot, policy, seeds, num_steps=config.episode_len, on_episode=progress)
        successes = [bool(e.success) for e in report.episodes]
        rewards = [float(e.max_reward or 0.0) for e in report.episodes]
        rate = float(np.mean(successes)) if successes else 0.0
        metadata.update(
            {
                "success_rate": rate,
                "successes": int(sum(successes)),
                "episodes": len(successes),
                "seeds": f"{seeds[0]}..{seeds[-1]}",
                "mean_max_reward": float(np.mean(rewards)) if rewards else 0.0,
                "temporal_ensemble_k": config.temporal_ensemble_k if config.temporal_ensemble_k is not None else -1.0,
                "latency_ms_p50": report.latency_ms.p50,
                "latency_ms_p99": report.latency_ms.p99,
                "primary_metric": "success_rate",
            }
        )
        eval_metrics.update(
            {
                "eval/success_rate": rate,
                "eval/mean_max_reward": metadata["mean_max_reward"],
                "eval/latency_ms_p50": report.latency_ms.p50,
                "eval/latency_ms_p99": report.latency_ms.p99,
            }
        )
        try:
            metadata["success_per_seed"] = MetadataValue.md(
                plots.success_per_seed(seeds, rewards, successes, report.max_reward or 4.0)
            )
        except Exception as exc:
            context.log.warning(f"success plot skipped: {exc}")
    else:
        metadata["primary_metric"] = "val_loss"
        if not simulated:
            context.log.info(f"robot {manifest.robot!r} has no simulator: validation loss only")

    # The training run is over; its evaluation joins it as extra metrics on the same MLflow run.
    from mlflow.entities import Metric

    client = mlflow.client()
    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in eval_metrics.items()])
    return MaterializeResult(metadata=metadata)
