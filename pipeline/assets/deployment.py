"""deployed_policy: register the candidate in MLflow, and promote it (alias `champion` + a copy under
<store>/deploy/) only when it beats the current champion: on real success when both have enough labelled rollouts,
else on simulator success or validation loss. The rule and the reason are recorded either way."""


import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets_store.bundle import bundle_identity, verify_bundle
from assets_store.layout import CHAMPION
from pipeline import metadata_format as fmt
from pipeline.assets.evaluation import policy_evaluation
from pipeline.assets.real_evaluation import real_robot_evaluation, real_success
from pipeline.lineage import upstream
from pipeline.promotion import (
    DEFAULT_MIN_REAL_ROLLOUTS, FORCED, RULES, Decision, Floor, RealSuccess, Scores, decide, promotion_record,
)
from pipeline.registry import current_champion, register_candidate
from pipeline.resources import MlflowResource, StoreResource

DEPLOYMENT_GROUP = "deployment"


class DeploymentConfig(Config):
    """The promotion gate: what a candidate must reach to replace the champion."""

    force: bool = Field(False, description="Promote even if the gate says no (the recorded reason says so).")
    success_floor: float = Field(
        0.0, description="Closed-loop success rate a candidate must exceed to be promoted, where a simulator judges "
                         "it or real rollouts decide (0.0: a policy that never succeeds is never deployed; below 0: "
                         "no floor).")
    val_loss_ceiling: Optional[float] = Field(
        None, description="Where validation loss is the primary metric (no simulator): the most a candidate may "
                          "have to be promoted. Empty: no ceiling.")
    min_real_rollouts: int = Field(
        DEFAULT_MIN_REAL_ROLLOUTS, ge=1,
        description="Labelled real rollouts (`aloha rollout --record`, not excluded) that BOTH the candidate and the "
                    "champion need before real success decides; with fewer, simulator success or validation loss "
                    "does.")


def tag_decision(client, name: str, version: str, decision: Decision, real: RealSuccess) -> None:
    """The decision on the model version: tags (`aloha pull --from mlflow` rebuilds the record from them) and the
    description the MLflow UI shows."""
    client.set_model_version_tag(name, version, "promotion", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, version, "promotion_reason", decision.reason)
    client.set_model_version_tag(name, version, "promotion_rule", decision.rule)
    for key, value in Scores(None, None, real).to_tags().items():  # the real counts this decision saw
        client.set_model_version_tag(name, version, key, value)
    verdict = "promoted" if decision.promote else "not promoted"
    client.update_model_version(name, version, description=f"{verdict} on {RULES[decision.rule]}: {decision.reason}")


@asset(
    group_name=DEPLOYMENT_GROUP,
    deps=[policy_evaluation, real_robot_evaluation],
    description="Promotion gate vs the MLflow alias `champion` (real success from labelled rollouts when both have "
                "enough, else simulator success or validation loss); promoted bundles are copied under the store's "
                "deploy/ folder.",
    kinds={"mlflow"},
)
def deployed_policy(
    context: AssetExecutionContext, config: DeploymentConfig, store: StoreResource, mlflow: MlflowResource
) -> MaterializeResult:
    # The candidate is the policy this run evaluated (else the latest evaluation's): the evaluation names the
    # training run, bundle and artifacts it judged, so promotion never pairs one run's scores with another's bundle.
    ev = upstream(context, "policy_evaluation")
    run_id = str(ev["mlflow_run_id"])
    bundle_dir = Path(str(ev["bundle_dir"]))
    manifest = verify_bundle(bundle_dir)
    measured = ev.get("primary_metric") == "success_rate"
    sha = bundle_identity(bundle_dir)
    # Real rollouts are counted now, not when real_robot_evaluation last ran: a label added since still counts.
    real, tally = real_success(store.layout, sha)
    scores = Scores(float(ev["success_rate"]) if measured else None, float(ev["val_loss"]), real)

    name = mlflow.registered_model_name
    client = mlflow.client()
    source = str(ev.get("mlflow_artifact_uri") or f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/bundle")
    tags = {
        **scores.to_tags(),
        "dataset_id": str(ev.get("dataset_id", "")),
        "bundle_manifest_sha256": sha,
        "dagster_run_id": context.run.run_id,
    }
    version = register_candidate(client, name, run_id, source, tags)
    champion = current_champion(client, name)
    champion_scores = None
    if champion is not None:
        champion_sha = (champion.tags or {}).get("bundle_manifest_sha256")
        champion_real = real_success(store.layout, champion_sha)[0] if champion_sha else RealSuccess(0, 0)
        champion_scores = dataclasses.replace(Scores.from_tags(champion.tags), real=champion_real)

    already = champion is not None and champion.version == version.version
    if already:
        decision = Decision(False, f"v{version.version} is already the champion")
    else:
        label = f"champion v{champion.version}" if champion is not None else "champion"
        floor = Floor(success_rate=config.success_floor, val_loss=config.val_loss_ceiling)
        decision = decide(scores, champion_scores, label, floor, config.min_real_rollouts)
        if config.force and not decision.promote:
            decision = Decision(True, f"forced by run config (gate said: {decision.reason})", FORCED)
    for problem in tally.problems:
        context.log.warning(f"real rollout not counted: {problem}")

    deploy_dir = store.layout.deploy_path(name, CHAMPION)
    if decision.promote:
        record = promotion_record(version.version, scores, decision, mlflow_run_id=run_id, dataset_id=tags["dataset_id"],
                                  evaluated_in_dagster_run=ev.run_id, promoted_at=time.time(),
                                  bundle_manifest_sha256=sha)  # `aloha pull` checks the record is this bundle's
        for leaf in (version.version, CHAMPION):
            store.deploy_bundle(bundle_dir, name, leaf, record)
        client.set_registered_model_alias(name, CHAMPION, version.version)
    if not already:  # re-gating the champion itself leaves the decision that promoted it as it was
        tag_decision(client, name, version.version, decision, real)
    context.log.info(f"{name} v{version.version}: {'PROMOTED' if decision.promote else 'not promoted'}: {decision.reason}")

    champion_now = current_champion(client, name)
    metadata: dict[str, Any] = {
        "promoted": decision.promote,
        "rule": decision.rule,
        "reason": decision.reason,
        "registered_model": name,
        "candidate_version": int(version.version),
        "champion_version": int(champion_now.version) if champion_now is not None else -1,
        "mlflow_run_id": run_id,
        "evaluated_in_dagster_run": ev.run_id,
        "mlflow_model": MetadataValue.url(mlflow.model_version_url(name, version.version)),
        "primary_metric": scores.primary,
        "candidate_success_rate": fmt.percent(scores.success_rate) if scores.success_rate is not None else "not measured",
        "candidate_val_loss": fmt.number(scores.val_loss),
        "candidate_real_success": str(real),
        "candidate_real_successes": real.successes,
        "candidate_real_rollouts": real.rollouts,
        "candidate_bundle": MetadataValue.path(str(bundle_dir)),
        "bundle_files": MetadataValue.json(manifest["files"]),
    }
    if champion_scores is not None:
        metadata["champion_real_success"] = str(champion_scores.real)
    if decision.promote or deploy_dir.exists():
        metadata["deploy_dir"] = MetadataValue.path(str(deploy_dir))
    return MaterializeResult(metadata=metadata)
