"""An object-store root for the pipeline and `aloha ui`: only the data moves; the pipeline's own files, the Dagster
instance and MLflow's SQLite stay on this machine (the S3 protocol itself: tests/e2e/test_s3_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from assets_store import StoreLayout
from assets_store.layout import local_state_root
from pipeline.cli.app import build_app
from pipeline.cli.ui import mlflow_ui_launch, ui_launch
from pipeline.resources import MlflowResource, StoreResource

URL = "memory://robot-data/aloha"


@pytest.fixture
def bare_env(tmp_path, monkeypatch) -> Path:
    """A working directory of its own, with none of the store or Dagster variables set."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for var in ("ALOHA_STORE", "ALOHA_LOCAL_STORE", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    return cwd


def test_a_url_store_keeps_its_state_in_one_local_directory_per_url(bare_env, tmp_path, monkeypatch):
    state = local_state_root(URL)
    assert state.parent == bare_env / ".aloha_state" and state.name.startswith("memory_robot-data_aloha-")
    assert local_state_root(URL + "/") == state and local_state_root("memory://robot-data/other") != state
    layout = StoreLayout.of_root(URL)
    assert (layout.root, layout.data_url) == (state, URL)
    assert layout.mlflow_tracking_uri == f"sqlite:///{state}/mlflow/mlflow.db" and layout.dagster_home.is_relative_to(state)
    assert str(layout.raw_dir) == f"{URL}/raw"  # only the recordings are read from the URL
    assert StoreResource(root=URL).layout == layout  # the pipeline's resource agrees with `aloha ui`
    assert not list(bare_env.iterdir())  # working out a layout creates nothing
    assert MlflowResource(store=StoreResource(root=URL)).resolved_tracking_uri == layout.mlflow_tracking_uri

    monkeypatch.setenv("ALOHA_LOCAL_STORE", str(tmp_path / "pipeline-local"))
    assert StoreLayout.of_root(URL).root == tmp_path / "pipeline-local"
    assert StoreLayout.of_root(URL, tmp_path / "given").root == tmp_path / "given"  # StoreResource.local_root
    assert StoreLayout.of_root(tmp_path / "plain") == StoreLayout(tmp_path / "plain")  # local roots as before


def test_aloha_ui_on_a_url_store_uses_dagster_home_when_set(bare_env, tmp_path, monkeypatch):
    layout, cmd, env = ui_launch(URL, "127.0.0.1", 3000)
    assert env["DAGSTER_HOME"] == str(layout.root / "dagster_home")
    assert (env["ALOHA_STORE"], env["ALOHA_LOCAL_STORE"]) == (URL, str(layout.root))
    assert "enabled: false" in (layout.root / "dagster_home" / "dagster.yaml").read_text()

    home = tmp_path / "my_dagster_home"  # Dagster's own setting: a production dagster.yaml, kept as it is
    home.mkdir()
    (home / "dagster.yaml").write_text("storage:\n  postgres: {}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    _, _, env = ui_launch(URL, "127.0.0.1", 3000)
    assert env["DAGSTER_HOME"] == str(home)
    assert (home / "dagster.yaml").read_text() == "storage:\n  postgres: {}\n"

    store = tmp_path / "store"  # a local store keeps its own instance, whatever $DAGSTER_HOME says (as before)
    _, _, env = ui_launch(str(store), "127.0.0.1", 3000)
    assert env["DAGSTER_HOME"] == str(store / "dagster_home") and env["ALOHA_STORE"] == str(store)


def test_aloha_mlflow_ui_opens_the_database_the_pipeline_logs_to(bare_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ALOHA_LOCAL_STORE", str(tmp_path / "state"))
    result = CliRunner().invoke(build_app(), ["mlflow-ui", "--store", URL])
    assert result.exit_code == 1 and "no MLflow database yet" in result.output, result.output  # one line, no server
    assert result.exception is None or isinstance(result.exception, SystemExit)
    layout = StoreLayout.of_root(URL)
    layout.mlflow_db.parent.mkdir(parents=True)
    layout.mlflow_db.write_bytes(b"")
    launched, cmd, _ = mlflow_ui_launch(URL, "127.0.0.1", 5001)
    # A URL root: the local state folder's SQLite file, never a path built from the URL (the old Makefile's bug)
    assert cmd[1:] == ["ui", "--backend-store-uri", f"sqlite:///{tmp_path / 'state' / 'mlflow' / 'mlflow.db'}",
                       "--host", "127.0.0.1", "--port", "5001"]
    assert launched.mlflow_tracking_uri == MlflowResource(store=StoreResource(root=URL)).resolved_tracking_uri
    local = StoreLayout(tmp_path / "store")  # a local root: its own database, as before
    local.mlflow_dir.mkdir(parents=True)
    local.mlflow_db.write_bytes(b"")
    _, cmd, _ = mlflow_ui_launch(str(local.root), "127.0.0.1", 5000)
    assert cmd[3] == f"sqlite:///{tmp_path / 'store' / 'mlflow' / 'mlflow.db'}"


def test_aloha_ui_refuses_an_unusable_local_state_directory_in_one_line(bare_env, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ALOHA_LOCAL_STORE", str(blocker / "state"))
    result = CliRunner().invoke(build_app(), ["ui", "--store", URL, "--port", "1"])
    assert result.exit_code == 1, result.output
    assert f"error: local state {blocker / 'state'}: {blocker} is not a directory" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_deploying_to_a_bucket_writes_the_promotion_record_before_the_manifest(tmp_path, monkeypatch):
    """A robot pulling between the two writes must never get the new bundle with the old bundle's record."""
    import json

    from assets_store.bundle import MANIFEST
    from assets_store.remote import RemoteStore
    from s3_kit import placeholder_bundle

    url = "memory://deploy-order/aloha"
    monkeypatch.setenv("ALOHA_LOCAL_STORE", str(tmp_path / "local"))
    store = StoreResource(root=url)
    remote = RemoteStore.at(url)  # fsspec's one in-memory filesystem: the one deploy_bundle writes to
    record_key = remote.promotion_record_key("aloha-act", "champion")
    writes: list[str] = []
    for method in ("put_file", "pipe_file"):
        inner = getattr(remote.fs, method)

        def recorded(path, *args, _inner=inner, _dest_at=1 if method == "put_file" else 0, **kwargs):
            writes.append((path, *args)[_dest_at])
            return _inner(path, *args, **kwargs)

        monkeypatch.setattr(remote.fs, method, recorded)
    store.deploy_bundle(placeholder_bundle(tmp_path / "b", dataset_id="two"), "aloha-act", "champion",
                        {"dataset_id": "two", "rule": "validation loss"})
    assert writes.index(record_key) < writes.index(f"{remote.deploy_key('aloha-act', 'champion')}/{MANIFEST}")
    assert writes[-1].endswith(f"/{MANIFEST}")
    assert json.loads(remote.fs.cat_file(record_key))["dataset_id"] == "two"


def test_a_training_process_of_its_own_reads_the_dataset_from_the_bucket(tmp_path):
    from pipeline.assets.training import training_dataset

    local = str(tmp_path / "local" / "datasets" / "abc")
    on_bucket = StoreLayout(tmp_path / "local", data_url=URL)
    for launcher in ("subprocess", "k8s"):  # a pod cannot see the pipeline machine's disk
        assert training_dataset(on_bucket, "abc", local, launcher) == f"{URL}/datasets/abc"
    assert training_dataset(on_bucket, "abc", local, "in_process") == local  # the step's own copy
    assert training_dataset(StoreLayout(tmp_path / "store"), "abc", local, "k8s") == local  # a local store: as before
