"""Dagster resources: where the store lives, and a small MLflow client wrapper (not dagster-mlflow).

Both default to paths derived from one store root (DESIGN.md, "Embedded defaults"), always absolute so the CLI,
the Dagster steps and the training code agree; both can point elsewhere through configuration alone.
"""


import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

from dagster import ConfigurableResource
from pydantic import Field

from assets_store import StoreLayout
from assets_store.bundle import copy_bundle
from assets_store.hashing import write_json_atomic
from assets_store.layout import DEFAULT_MODEL_NAME
from assets_store.remote import RemoteStore
from assets_store.sync import publish_bundle
from pipeline.instance import REPO_ROOT



DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `make mlflow-ui` serves


class StoreResource(ConfigurableResource):
    """The episode store. `root` empty: $ALOHA_STORE, else ./.aloha_store (resolved when a step runs).

    Every path under it comes from `layout` (`assets_store.layout.StoreLayout`). A `root` that is an object-store URL
    (s3://...) holds the recordings, synced there by `aloha sync`; the pipeline's own files (reports, datasets, runs,
    deployments, the embedded Dagster and MLflow) then live under `local_root`.
    """

    root: Optional[str] = Field(None, description=(
        "Store root: a directory, or an object-store URL (s3://, gs://, az://) holding the recordings. Empty: "
        "$ALOHA_STORE, else ./.aloha_store."))
    local_root: Optional[str] = Field(None, description=(
        "With an object-store root: where the pipeline's own files live (reports, Dagster and MLflow state). Empty: "
        "$ALOHA_LOCAL_STORE, else `./.aloha_state/<URL>-<hash>`."))

    @property
    def layout(self) -> StoreLayout:
        return StoreLayout.of_root(self.root, self.local_root)

    def deploy_bundle(self, bundle_dir: Path, name: str, version: str | int, record: dict[str, Any]) -> None:
        """Put the verified bundle and its promotion record at <store>/deploy/<name>/<version> (replaced atomically);
        with an object-store root, in the bucket as well (manifest last), where robots `aloha pull --store URL`."""
        layout = self.layout
        copy_bundle(bundle_dir, layout.deploy_path(name, version))
        write_json_atomic(layout.promotion_record_path(name, version), record)
        if layout.data_url:
            remote = RemoteStore.at(layout.data_url)
            body = json.dumps(record, indent=2, sort_keys=True).encode()
            # The record before the manifest: a robot that sees the new bundle never reads the old one's record.
            publish_bundle(bundle_dir, remote, remote.deploy_key(name, version),
                           beside={remote.promotion_record_key(name, version): body})


class MlflowResource(ConfigurableResource):
    """Tracking + registry through `MlflowClient` only, so no fluent global run state leaks between steps."""

    store: StoreResource
    tracking_uri: Optional[str] = Field(None, description=(
        "MLflow tracking and registry URI. Empty: an SQLite database in the store (mlflow/mlflow.db)."))
    # A local default with a tracking server would leave artifacts on whichever machine trained first.
    artifacts_uri: Optional[str] = Field(None, description=(
        "Where run artifacts go. Empty: through the tracking server when it is one (mlflow-artifacts:/), else "
        "the store's mlflow/artifacts directory."))
    experiment_name: str = Field(DEFAULT_MODEL_NAME, description="MLflow experiment of the training runs.")
    registered_model_name: str = Field(DEFAULT_MODEL_NAME, description="MLflow registered model the gate promotes.")
    ui_url: Optional[str] = Field(None, description=(
        f"Address of the MLflow UI, for the links in asset metadata. Empty: the tracking server when "
        f"tracking_uri is one (http/https), else {DEFAULT_MLFLOW_UI} (where `make mlflow-ui` serves)."))

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        layout = self.store.layout
        layout.mlflow_dir.mkdir(parents=True, exist_ok=True)
        return layout.mlflow_tracking_uri

    @property
    def resolved_artifacts_uri(self) -> str:
        if self.artifacts_uri:
            return self.artifacts_uri
        if (self.tracking_uri or "").startswith(("http://", "https://")):
            return "mlflow-artifacts:/"
        return self.store.layout.mlflow_artifacts_uri

    def client(self):
        from mlflow.tracking import MlflowClient

        uri = self.resolved_tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def experiment_id(self, client=None) -> str:
        client = client or self.client()
        exp = client.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            return exp.experiment_id
        # Without an explicit location MLflow would put artifacts under the current directory.
        location = f"{self.resolved_artifacts_uri.rstrip('/')}/{self.experiment_name}"
        return client.create_experiment(self.experiment_name, artifact_location=location)

    @contextlib.contextmanager
    def run(self, run_name: str, tags: dict[str, str] | None = None) -> Iterator["RunHandle"]:
        """A tracked run that always ends FINISHED or FAILED, whatever happens inside (Ctrl-C included)."""
        client = self.client()
        exp_id = self.experiment_id(client)
        all_tags = {"git_commit": git_commit(), **(tags or {})}
        run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
        handle = RunHandle(client, run.info.run_id, exp_id, run.info.artifact_uri)
        status = "FAILED"
        try:
            yield handle
            status = "FINISHED"
        finally:
            try:
                handle.flush()
            finally:
                client.set_terminated(handle.run_id, status)

    @property
    def resolved_ui_url(self) -> str:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if (self.tracking_uri or "").startswith(("http://", "https://")):
            return self.tracking_uri.rstrip("/")  # a tracking server serves its own UI
        return DEFAULT_MLFLOW_UI

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.resolved_ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, name: str, version: str | int) -> str:
        return f"{self.resolved_ui_url}/#/models/{name}/versions/{version}"


class RunHandle:
    """One MLflow run: params at once, metrics buffered and sent in batches (a synchronous log costs ~9 ms)."""

    def __init__(self, client, run_id: str, experiment_id: str, artifact_uri: str, batch_size: int = 200):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.artifact_uri = artifact_uri
        self.batch_size = batch_size
        self._metrics: list = []

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # the backend caps params per batch at 100
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in metrics.items():
            if v is None:
                continue
            self._metrics.append(Metric(k, float(v), ts, int(step)))
        if len(self._metrics) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        while self._metrics:
            batch, self._metrics = self._metrics[:1000], self._metrics[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)


def _param_str(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
