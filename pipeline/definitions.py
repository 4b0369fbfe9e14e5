"""The code location: `workspace.yaml` loads `defs` from here. Tests and `aloha demo` call `build_definitions`
with an explicit store instead of relying on the environment."""

from __future__ import annotations

import os
from typing import Optional

from dagster import Definitions

from pipeline.assets.dataset import dataset
from pipeline.assets.deployment import deployed_policy
from pipeline.assets.evaluation import policy_evaluation
from pipeline.assets.ingest import raw_episodes, validated_episodes
from pipeline.assets.real_evaluation import real_robot_evaluation
from pipeline.assets.training import act_policy
from pipeline.jobs import ingest_session_job, real_evaluation_job, train_and_deploy_job
from pipeline.resources import MlflowResource, StoreResource
from pipeline.sensors import dataset_automation_sensor, finalized_sessions_sensor, rollout_sessions_sensor
from assets_store.layout import DEFAULT_MODEL_NAME

ASSETS = [raw_episodes, validated_episodes, dataset, act_policy, policy_evaluation, real_robot_evaluation,
          deployed_policy]
EXECUTOR_ENV = "ALOHA_DAGSTER_EXECUTOR"


def executor_from_env(name: Optional[str] = None):
    """Executor by name (docs/SCALE_OUT.md): scaling out is an environment setting, not a code change."""
    name = (name if name is not None else os.environ.get(EXECUTOR_ENV, "")).strip().lower()
    if not name:
        return None  # Dagster's default: multiprocess, in-process for execute_in_process
    if name == "in_process":
        from dagster import in_process_executor

        return in_process_executor
    if name == "multiprocess":
        from dagster import multiprocess_executor

        return multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # only installed where Kubernetes is used

        return k8s_job_executor
    raise ValueError(f"${EXECUTOR_ENV}={name!r}: expected in_process, multiprocess or k8s")


def build_definitions(
    store_root: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
    mlflow_artifacts_uri: Optional[str] = None,
    registered_model_name: str = DEFAULT_MODEL_NAME,
    mlflow_ui_url: Optional[str] = None,
) -> Definitions:
    store = StoreResource(root=store_root)
    mlflow = MlflowResource(
        store=store,
        tracking_uri=mlflow_tracking_uri,
        artifacts_uri=mlflow_artifacts_uri,
        registered_model_name=registered_model_name,
        ui_url=mlflow_ui_url,
    )
    return Definitions(
        assets=ASSETS,
        jobs=[ingest_session_job, train_and_deploy_job, real_evaluation_job],
        sensors=[finalized_sessions_sensor, dataset_automation_sensor, rollout_sessions_sensor],
        resources={"store": store, "mlflow": mlflow},
        executor=executor_from_env(),
    )


defs = build_definitions()
