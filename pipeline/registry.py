"""The MLflow model registry as the gate and the evaluations use it: the champion alias, one version per run."""

from __future__ import annotations

from assets_store.layout import CHAMPION


def current_champion(client, name: str):
    """The model version the alias `champion` points at, None when there is none yet."""
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
