"""real_robot_evaluation: success on the robot, counted from the labelled rollout sessions each bundle ran.

`aloha rollout --record` stores rollouts as episodes marked with the bundle's manifest hash (assets_store.rollouts);
the operator's labels and the session's annotation log say which worked. This asset reports the candidate's (the
policy the evaluation judged) and the champion's success rate with a Wilson 95% interval and links to every
rollout, and logs the first few rollouts' videos to each bundle's training run. The promotion gate counts the same
rollouts itself when it runs (`real_success`), so a label added since this asset ran still counts.
"""


import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets_store import EpisodeReader, StoreError
from assets_store.bundle import bundle_identity
from assets_store.layout import StoreLayout, episode_stem
from assets_store.rollouts import LabelledRollout, RolloutTally, labelled_rollouts
from hardware.registry import is_simulated
from pipeline import metadata_format as fmt
from pipeline.assets.evaluation import EVALUATION_GROUP, artifact_links, policy_evaluation
from pipeline.lineage import upstream
from pipeline.promotion import RealSuccess
from pipeline.registry import current_champion
from pipeline.resources import MlflowResource, StoreResource

REAL_VIDEOS = "evaluation/real_videos"  # artifact folder in each bundle's MLflow training run
MAX_TABLE_ROWS = 200  # rollouts listed per bundle in the metadata table; the counts cover all of them


class RealEvaluationConfig(Config):
    """Success on the real robot from the labelled rollouts recorded with the candidate's and the champion's bundles."""

    videos: int = Field(3, ge=0, description="How many rollout episodes per bundle (the first ones) are rendered "
                                             "to MP4 from their stored frames and logged to the bundle's MLflow "
                                             "training run under evaluation/real_videos/ (0: none).")


def real_success(layout: StoreLayout, bundle_manifest_sha256: str) -> tuple[RealSuccess, RolloutTally]:
    """The bundle's labelled rollouts on real robots in the store now, as the gate's score and the tally it came
    from (a simulator's rollouts are counted apart: the simulator evaluation already judges them)."""
    tally = labelled_rollouts(layout, bundle_manifest_sha256, simulated=is_simulated)
    return RealSuccess(tally.successes, tally.count), tally


@dataclass(frozen=True)
class Judged:
    key: str  # metadata prefix: candidate | champion
    label: str  # in words: candidate, champion v3
    sha: str  # bundle manifest sha256
    run_id: str | None  # its MLflow training run


def _judged(ev, client, model_name: str) -> list[Judged]:
    out = [Judged("candidate", "candidate", bundle_identity(Path(str(ev["bundle_dir"]))), str(ev["mlflow_run_id"]))]
    champion = current_champion(client, model_name)
    sha = (champion.tags or {}).get("bundle_manifest_sha256") if champion is not None else None
    if sha and sha != out[0].sha:
        out.append(Judged("champion", f"champion v{champion.version}", sha, champion.run_id))
    return out


def rollout_table(judged: list[tuple[Judged, RolloutTally]]) -> str:
    """Markdown: one row per counted rollout, with the reference `aloha episodes show` takes and its path."""
    rows = ["| bundle | rollout | label | labelled by | takeover steps | episode |", "|---|---|---|---|---|---|"]
    for who, tally in judged:
        for r in tally.rollouts[:MAX_TABLE_ROWS]:
            label = f"{r.label} (taken over: counts as a failure)" if r.label == "success" and r.taken_over else r.label
            rows.append(f"| {who.label} | `{r.ref}` | {label} | {r.label_source} | {r.takeover_steps} "
                        f"| [{r.episode}](file://{r.path}) |")
        if tally.count > MAX_TABLE_ROWS:
            rows.append(f"| {who.label} | ... {tally.count - MAX_TABLE_ROWS} more | | | | |")
    return "\n".join(rows) if len(rows) > 2 else "no labelled rollouts yet"


def log_rollout_videos(client, run_id: str, rollouts: list[LabelledRollout], n: int, warn) -> list[str]:
    """Render the first `n` rollouts' cameras to MP4 and log them to the run (skipping those already there);
    the artifact paths. A rollout that cannot be rendered is warned about and the others still go."""
    from hardware.visualize import write_video

    out = []
    with tempfile.TemporaryDirectory(prefix="real-videos-") as tmp:
        for r in rollouts[:n]:
            folder = f"{REAL_VIDEOS}/{r.session}"
            artifact = f"{folder}/{episode_stem(r.episode)}.mp4"
            if artifact not in {a.path for a in client.list_artifacts(run_id, folder)}:
                try:
                    local = write_video(EpisodeReader(r.path), Path(tmp) / r.session / f"{episode_stem(r.episode)}.mp4")
                except (StoreError, ValueError, OSError) as exc:
                    warn(f"{r.path}: no video: {exc}")
                    continue
                client.log_artifact(run_id, str(local), folder)
            out.append(artifact)
    return out


@asset(
    group_name=EVALUATION_GROUP,
    deps=[policy_evaluation],
    description="Success rate on the robot (Wilson 95% interval) of the candidate and the champion, from the labelled "
                "rollout sessions run with their bundles, with a link to every rollout and the first rollouts' videos.",
)
def real_robot_evaluation(
    context: AssetExecutionContext, config: RealEvaluationConfig, store: StoreResource, mlflow: MlflowResource
) -> MaterializeResult:
    from mlflow.exceptions import MlflowException

    ev = upstream(context, "policy_evaluation")
    client = mlflow.client()
    judged = [(who, real_success(store.layout, who.sha)[1]) for who in _judged(ev, client, mlflow.registered_model_name)]
    metadata: dict[str, Any] = {"mlflow_run_id": str(ev["mlflow_run_id"]), "evaluated_in_dagster_run": ev.run_id}
    for who, tally in judged:
        for problem in tally.problems:
            context.log.warning(f"not counted: {problem}")
        score = RealSuccess(tally.successes, tally.count)
        context.log.info(f"{who.label}: real success {score} from sessions {tally.sessions}")
        metadata.update({
            f"{who.key}": str(score),
            f"{who.key}_bundle_manifest_sha256": who.sha,
            f"{who.key}_successes": tally.successes,
            f"{who.key}_rollouts": tally.count,
            f"{who.key}_with_takeover": tally.with_takeover,
            f"{who.key}_unlabelled": tally.unlabelled,
            f"{who.key}_excluded": tally.excluded,
            f"{who.key}_simulated": tally.simulated,
            f"{who.key}_sessions": MetadataValue.json(tally.sessions),
        })
        if tally.count:
            lo, hi = tally.interval
            metadata.update({
                f"{who.key}_success": fmt.share(tally.successes, tally.count),
                f"{who.key}_ci95": f"{fmt.percent(lo)} - {fmt.percent(hi)}",
                f"{who.key}_success_rate": fmt.significant(tally.rate),
                f"{who.key}_ci95_low": fmt.significant(lo),
                f"{who.key}_ci95_high": fmt.significant(hi),
            })
        if who.run_id and config.videos and tally.rollouts:
            try:
                videos = log_rollout_videos(client, who.run_id, tally.rollouts, config.videos, context.log.warning)
                run = client.get_run(who.run_id)
            except (MlflowException, OSError) as exc:  # the run was deleted, say: the counts above still stand
                context.log.warning(f"{who.label}: videos not logged to MLflow run {who.run_id}: {exc}")
                continue
            if videos:
                metadata[f"{who.key}_videos"] = MetadataValue.md(
                    artifact_links(mlflow.run_url(run.info.experiment_id, who.run_id), videos))
    if len(judged) > 1:
        metadata["champion_version"] = judged[1][0].label.removeprefix("champion v")
    metadata["rollouts"] = MetadataValue.md(rollout_table(judged))
    problems = [p for _, t in judged for p in t.problems]
    if problems:
        metadata["not_counted"] = MetadataValue.md("\n".join(f"- {p}" for p in problems[:MAX_TABLE_ROWS]))
    return MaterializeResult(metadata=metadata)
