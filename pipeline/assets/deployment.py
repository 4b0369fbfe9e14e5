"""deployed_policy: register the candidate in MLflow, and promote it (alias `champion` + a copy under
<store>/deploy/) only when it beats the current champion. The reason is recorded either way."""


import time
from pathlib import Path
from typing import Any, Optional

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets_store.bundle import MANIFEST, verify_bundle
from assets_store.hashing import file_sha256
from assets_store.layout import CHAMPION
from pipeline import metadata_format as fmt
from pipeline.assets.evaluation import policy_evaluation
from pipeline.lineage import upstream
from pipeline.promotion import Decision, Floor, Scores, decide, promotion_record
from pipeline.resources import MlflowResource, StoreResource

DEPLOYMENT_GROUP = "deployment"


class DeploymentConfig(Config):
    """The promotion gate: what a candidate must reach to replace the champion."""

    force: bool = Field(False, description="Promote even if the gate says no (the recorded reason says so).")
    success_floor: float = Field(
        0.0, description="Closed-loop success rate a candidate must exceed to be promoted, where a simulator judges "
                         "it (0.0: a policy that never succeeds is never deployed; below 0: no floor).")
    val_loss_ceiling: Optional[float] = Field(
        None, description="Where validation loss is the primary metric (no simulator): the most a candidate may "
                          "have to be promoted. Empty: no ceiling.")


def current_champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="ACT policies trained by the aloha pipeline")


def register_candidate(client, name: str, run_id: str, source: str, tags: dict[str, str]):
    """One model version per training run: re-materializing the gate never registers a run twice."""
    ensure_registered_model(client, name)
    for mv in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        return mv
    return client.create_model_version(name, source=source, run_id=run_id, tags=tags)


@asset(
    group_name=DEPLOYMENT_GROUP,
    deps=[policy_evaluation],
    description="Promotion gate vs the MLflow alias `champion`; promoted bundles are copied into the store's "
                "`deploy/` directory.",
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
    scores = Scores(float(ev["success_rate"]) if measured else None, float(ev["val_loss"]))

    name = mlflow.registered_model_name
    client = mlflow.client()
    source = str(ev.get("mlflow_artifact_uri") or f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/bundle")
    tags = {
        **scores.to_tags(),
        "dataset_id": str(ev.get("dataset_id", "")),
        "bundle_manifest_sha256": file_sha256(bundle_dir / MANIFEST),
        "dagster_run_id": context.run.run_id,
    }
    version = register_candidate(client, name, run_id, source, tags)
    champion = current_champion(client, name)

    if champion is not None and champion.version == version.version:
        decision = Decision(False, f"v{version.version} is already the champion")
    else:
        label = f"champion v{champion.version}" if champion is not None else "champion"
        floor = Floor(success_rate=config.success_floor, val_loss=config.val_loss_ceiling)
        decision = decide(scores, Scores.from_tags(champion.tags) if champion is not None else None, label, floor)
        if config.force and not decision.promote:
            decision = Decision(True, f"forced by run config (gate said: {decision.reason})")

    deploy_dir = store.layout.deploy_path(name, CHAMPION)
    if decision.promote:
        record = promotion_record(version.version, scores, decision, mlflow_run_id=run_id, dataset_id=tags["dataset_id"],
                                  evaluated_in_dagster_run=ev.run_id, promoted_at=time.time())
        for leaf in (version.version, CHAMPION):
            store.deploy_bundle(bundle_dir, name, leaf, record)
        client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_model_version_tag(name, version.version, "promotion", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, version.version, "promotion_reason", decision.reason)
    context.log.info(f"{name} v{version.version}: {'PROMOTED' if decision.promote else 'not promoted'}: {decision.reason}")

    champion_now = current_champion(client, name)
    metadata: dict[str, Any] = {
        "promoted": decision.promote,
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
        "candidate_bundle": MetadataValue.path(str(bundle_dir)),
        "bundle_files": MetadataValue.json(manifest["files"]),
    }
    if decision.promote or deploy_dir.exists():
        metadata["deploy_dir"] = MetadataValue.path(str(deploy_dir))
    return MaterializeResult(metadata=metadata)
