"""policy_evaluation: validation loss from training, and closed-loop success on held-out seeds where a simulator
exists (the same rollout code as `aloha rollout`)."""


import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets_store.dataset import load_dataset
from assets_store.episode_reader import read_root_attrs
from hardware.async_policy import AsyncInference
from hardware.registry import SimViewName, episode_len, is_simulated
from hardware.rollout import RolloutEpisode, RolloutReport, make_robot_for_policy, run_rollouts
from hardware.sim.placements import heldout_seeds
from pipeline import metadata_format as fmt, plots
from pipeline.assets.training import act_policy
from pipeline.lineage import upstream
from pipeline.resources import MlflowResource, StoreResource
from pipeline.rollout_progress import RolloutProgress

EVALUATION_GROUP = "evaluation"
SIM_VIDEOS = "evaluation/videos"  # artifact folder in the training run


class EvaluationConfig(Config):
    """Closed-loop evaluation of the trained policy on the simulator (validation loss is always reported)."""

    episodes: int = Field(50, description="Held-out seeds to roll out, disjoint from the recording seeds.")
    episode_len: Optional[int] = Field(None, description=(
        "Control steps per rollout. Empty: the robot's own (ACT's 400; the mobile sim drives first: 650)."))
    temporal_ensemble_k: Optional[float] = Field(0.01, description=(
        "k of the temporal-ensembling weights exp(-k i). Empty or negative: execute each chunk open loop."))
    query_every: int = Field(1, description=(
        "Control steps between policy queries; above 1 only with temporal ensembling off."))
    seed_offset: int = Field(0, description="Start this many seeds into the held-out range (evaluate another slice).")
    closed_loop: bool = Field(True, description="Roll out on the simulator; false: validation loss only.")
    sim_view: SimViewName = Field("default", description=(
        "How the simulator renders: 'default' (the scene as recorded), or 'shifted' (every camera moved ~3 cm and "
        "turned ~3 degrees, lights dimmer and turned: hardware/sim/view.py), to measure robustness to camera pose "
        "and lighting. Physics is the same."))
    realtime: bool = Field(False, description=(
        "Run the loop on the wall clock at 50 Hz instead of the simulator's virtual clock. Only then are the loop's "
        "period, late steps and chunk ages measured (and logged); on the virtual clock inference takes no loop time."))
    asynchronous: bool = Field(False, description=(
        "Run the policy beside the loop (`aloha rollout --async`): the loop never waits for inference and a step no "
        "chunk covers holds the last action. Implies real time; needs query_every 1."))
    backend: str = Field("torch", description=(
        "Inference backend: 'torch', or 'onnx' (ONNX Runtime on the CPU, faster there; needs the onnx extra)."))
    videos: int = Field(3, ge=0, description="How many of the first held-out episodes are filmed (MP4 of the "
                                             "cameras) and logged to the training run in MLflow under "
                                             "evaluation/videos/ (0: none).")


def recorded_resolution(store: StoreResource, dataset_dir: Path) -> tuple[int, int] | None:
    """(H, W) the dataset's cameras recorded at: evaluation renders what training saw."""
    manifest, _ = load_dataset(dataset_dir)
    # A co-trained dataset's other groups may come from rigs that record at other sizes: the target robot's own
    # episodes (the groups in the statistics) say what the evaluated robot renders.
    own = {s for g in manifest.sampling_groups if g.in_stats for s in g.sessions}
    episode = next((e for e in manifest.episodes if e.session in own), None)
    if episode is None:
        return None
    cams = read_root_attrs(episode.path(store.layout)).get("cameras") or []
    first = next((c for c in cams if c.get("name") in manifest.camera_names), cams[0] if cams else None)
    return (int(first["height"]), int(first["width"])) if first else None


def closed_loop_evaluation(
    bundle_dir: Path,
    robot: str,
    config: EvaluationConfig,
    resolution: tuple[int, int] | None = None,
    on_episode: Callable[[RolloutEpisode], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    video_dir: Path | None = None,
) -> RolloutReport:
    """The bundle on the simulator over held-out seeds: `aloha rollout`'s check and loop, with this config. With
    `video_dir`, the first `config.videos` episodes are filmed there (the others are not: an MP4 per seed would
    cost more than the evaluation)."""
    from model.policy import Policy

    if config.asynchronous and config.query_every != 1:
        raise ValueError(f"query_every: asynchronous inference queries the policy as often as it can; expected 1, "
                         f"got {config.query_every}")
    policy = Policy.from_bundle(bundle_dir, device="cpu", temporal_ensemble_k=config.temporal_ensemble_k,
                                query_every=config.query_every, backend=config.backend)
    bot = make_robot_for_policy(robot, policy, resolution=resolution, view=config.sim_view)
    seeds = heldout_seeds(config.episodes, config.seed_offset)
    return run_rollouts(bot, policy, seeds, num_steps=config.episode_len or episode_len(robot), on_episode=on_episode,
                        on_step=on_step, video_dir=video_dir, videos=config.videos,
                        realtime=config.realtime or config.asynchronous,
                        async_inference=AsyncInference("hold") if config.asynchronous else None)


def loop_metrics(report: RolloutReport) -> tuple[dict[str, Any], dict[str, float]]:
    """The loop's timing as (asset metadata, MLflow eval metrics): measured only when the loop ran in real time; on a
    virtual clock every period is the nominal 20 ms, so nothing is logged but which clock it was."""
    if not report.realtime:
        return {"loop_clock": "virtual clock (not measured; run config realtime: true measures the loop)"}, {}
    values: dict[str, float] = {
        "loop_period_ms_p50": report.period_ms.p50,
        "loop_period_ms_p99": report.period_ms.p99,
        "late_steps": report.late_steps,
    }
    if report.inference == "async":
        values.update({"chunk_age_steps_p50": report.chunk_age_steps.p50,
                       "chunk_age_steps_p99": report.chunk_age_steps.p99,
                       "fallback_steps": report.fallback_steps})
    metadata: dict[str, Any] = {"loop_clock": f"real time ({report.inference} inference)"}
    metadata.update({k: v if isinstance(v, int) else fmt.significant(v) for k, v in values.items()})
    return metadata, {f"eval/{k}": float(v) for k, v in values.items()}


def artifact_links(run_url: str, artifacts: list[str]) -> str:
    """Markdown: each artifact linked into the MLflow run's artifact view."""
    return "\n".join(f"- [{a}]({run_url}/artifacts/{a})" for a in artifacts)


def log_videos(client, run_id: str, video_dir: Path, warn: Callable[[str], Any]) -> list[str]:
    """Log every MP4 under `video_dir` to the run under SIM_VIDEOS; their artifact paths. An upload that fails is
    warned about and leaves no links: the evaluation's numbers still stand (as in the real evaluation)."""
    from mlflow.exceptions import MlflowException

    files = sorted(video_dir.glob("*.mp4"))
    if not files:
        return []
    try:
        client.log_artifacts(run_id, str(video_dir), SIM_VIDEOS)
    except (MlflowException, OSError) as exc:  # e.g. an artifact store that is down or full
        warn(f"evaluation videos not logged to MLflow run {run_id}: {exc}")
        return []
    return [f"{SIM_VIDEOS}/{f.name}" for f in files]


@asset(
    group_name=EVALUATION_GROUP,
    deps=[act_policy],
    description="Validation loss, and closed-loop success rate over held-out seeds when the robot is a simulator.",
)
def policy_evaluation(
    context: AssetExecutionContext, config: EvaluationConfig, store: StoreResource, mlflow: MlflowResource
) -> MaterializeResult:
    # The policy this run trained (else the latest one), and the dataset that policy was trained on.
    trained = upstream(context, "act_policy")
    bundle_dir = Path(str(trained["bundle_dir"]))
    run_id = str(trained["mlflow_run_id"])
    dataset_dir = store.layout.dataset_dir(str(trained["dataset_id"]))
    manifest, _ = load_dataset(dataset_dir)
    val_loss = float(trained["val_loss"])

    metadata: dict[str, Any] = {
        "mlflow_run_id": run_id,
        "mlflow_run": MetadataValue.url(str(trained["mlflow_run"])),
        "mlflow_artifact_uri": str(trained["mlflow_artifact_uri"]),
        "trained_in_dagster_run": trained.run_id,
        "dataset_id": str(trained["dataset_id"]),
        "bundle_dir": MetadataValue.path(str(bundle_dir)),
        "val_loss": val_loss,
        "robot": manifest.robot,
    }
    eval_metrics: dict[str, float] = {"eval/val_loss": val_loss}
    simulated = is_simulated(manifest.robot)
    if config.closed_loop and simulated and config.episodes > 0:
        resolution = recorded_resolution(store, dataset_dir)
        progress = RolloutProgress(context.log.info, config.episodes, config.episode_len or episode_len(manifest.robot))
        video_dir = Path(tempfile.mkdtemp(prefix="eval-videos-")) if config.videos else None
        try:
            report = closed_loop_evaluation(bundle_dir, manifest.robot, config, resolution,
                                            on_episode=progress.on_episode, on_step=progress.on_step,
                                            video_dir=video_dir)
            videos = [] if video_dir is None else log_videos(mlflow.client(), run_id, video_dir, context.log.warning)
        finally:
            if video_dir is not None:
                shutil.rmtree(video_dir, ignore_errors=True)  # ours: made above
        if videos:
            metadata["videos"] = MetadataValue.md(artifact_links(str(trained["mlflow_run"]), videos))
        summary = report.summary
        rate = float(summary.rate or 0.0)
        metadata.update(
            {
                "success_rate": rate,  # raw: the promotion gate reads it back
                "success": fmt.share(summary.successes, summary.episodes),
                "successes": summary.successes,
                "episodes": summary.episodes,
                "seeds": f"{report.episodes[0].seed}..{report.episodes[-1].seed}",
                "mean_max_reward": fmt.significant(summary.mean_max_reward),
                "sim_view": config.sim_view,
                "temporal_ensemble_k": config.temporal_ensemble_k if config.temporal_ensemble_k is not None else -1.0,
                "latency_ms_p50": fmt.significant(report.latency_ms.p50),
                "latency_ms_p99": fmt.significant(report.latency_ms.p99),
                "backend": config.backend,
                "primary_metric": "success_rate",
            }
        )
        loop_metadata, loop_eval = loop_metrics(report)
        metadata.update(loop_metadata)
        eval_metrics.update(loop_eval)
        eval_metrics.update(
            {
                "eval/success_rate": rate,
                "eval/mean_max_reward": summary.mean_max_reward,
                "eval/latency_ms_p50": report.latency_ms.p50,
                "eval/latency_ms_p99": report.latency_ms.p99,
            }
        )
        try:
            metadata["success_per_seed"] = MetadataValue.md(plots.success_per_seed(report))
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
