"""The production profile of docs/SCALE_OUT.md, on one machine: Dagster's instance on a real PostgreSQL server (through
dagster-postgres), MLflow behind a real `mlflow server`, training in a Dagster Pipes subprocess.

The only difference from the embedded profile (tests/test_pipeline_graph.py) is configuration: the instance's
dagster.yaml and the MLflow resource's URIs. Both servers run from a temporary directory on loopback ports and are
stopped by their PIDs. Skipped only where the PostgreSQL server binaries are not installed (scripts/setup.sh
installs the Debian package `postgresql`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance

from assets_store.bundle import verify_bundle
from pipeline.definitions import build_definitions
from pipeline.jobs import INGEST_JOB, TRAIN_JOB
from pipeline.partitions import SESSIONS
from pipeline_kit import make_session, migrated_mlflow_db, tiny_run_config

PG_USER = "aloha"
MODEL = "aloha-act"


def postgres_bin() -> Path | None:
    """Where initdb and postgres live: on PATH, else Debian's versioned directory."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, proc: subprocess.Popen, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    """Stop a server we started, by its process group (its own PID: it leads a new session), then wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def workdir():
    # Not pytest's tmp_path: its parents are private to root, and PostgreSQL refuses to run as root.
    path = Path(tempfile.mkdtemp(prefix="aloha-production-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postgres(workdir):
    """A PostgreSQL server on 127.0.0.1 (trust authentication, loopback only) with a `dagster` database."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; scripts/setup.sh does it)")
    import psycopg2

    pgdir = workdir / "postgres"
    pgdir.mkdir()
    run_as: dict = {}
    if os.geteuid() == 0:  # the server refuses root: run it as an unprivileged user that owns its directory
        nobody = pwd.getpwnam("nobody")
        os.chown(workdir, nobody.pw_uid, nobody.pw_gid)
        os.chown(pgdir, nobody.pw_uid, nobody.pw_gid)
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    env = {**os.environ, "HOME": str(pgdir), "LC_ALL": "C"}
    subprocess.run([str(bindir / "initdb"), "-D", str(pgdir / "data"), "-U", PG_USER, "--auth=trust", "--no-sync",
                    "-E", "UTF8"], check=True, capture_output=True, env=env, cwd=pgdir, **run_as)
    port = free_port()
    with open(pgdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgdir / "data"), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(pgdir), "-c", "fsync=off", "-c", "max_connections=50"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=pgdir, start_new_session=True, **run_as,
        )

    def connect(db: str = "postgres"):
        return psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname=db, connect_timeout=2)

    def accepting() -> bool:
        try:
            connect().close()
            return True
        except psycopg2.OperationalError:
            return False

    try:
        wait_until(accepting, proc, "postgres")
        conn = connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE dagster")
        conn.close()
        yield port, connect
    finally:
        stop(proc, signal.SIGINT)  # "fast" shutdown: disconnect clients, write a clean checkpoint


@pytest.fixture
def mlflow_server(workdir, tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts, both in the temporary directory."""
    root = workdir / "mlflow"
    root.mkdir()
    shutil.copy(migrated_mlflow_db(tmp_path_factory), root / "mlflow.db")  # migrations cost seconds: once per run
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, proc, "mlflow server", timeout_s=90)
        yield url, root
    finally:
        stop(proc)


DAGSTER_YAML = """\
storage:
  postgres:
    postgres_db:
      hostname: 127.0.0.1
      port: {port}
      username: {user}
      db_name: dagster
      scheme: postgresql+psycopg2   # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3, not installed
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def materializations(result) -> dict:
    return {
        ev.materialization.asset_key.to_user_string(): {k: v.value for k, v in ev.materialization.metadata.items()}
        for ev in result.get_asset_materialization_events()
    }


def test_whole_graph_on_postgres_and_an_mlflow_server(layout, workdir, postgres, mlflow_server):
    pg_port, connect = postgres
    tracking_uri, mlflow_root = mlflow_server
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(port=pg_port, user=PG_USER))
    make_session(layout, "s1", 3)

    # configuration, not code: the instance from dagster.yaml, the MLflow resource pointed at the server
    # (artifacts go through the server by default when the tracking URI is one)
    defs = build_definitions(store_root=str(layout.root), mlflow_tracking_uri=tracking_uri)
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        instance.add_dynamic_partitions(SESSIONS, ["s1"])
        ingest = defs.resolve_job_def(INGEST_JOB).execute_in_process(partition_key="s1", instance=instance)
        assert ingest.success
        # eval_episodes=0: promotion on validation loss, so an untrained policy still reaches deployment
        train = defs.resolve_job_def(TRAIN_JOB).execute_in_process(
            instance=instance, run_config=tiny_run_config(eval_episodes=0, launcher="subprocess"))
        assert train.success
        meta = {**materializations(ingest), **materializations(train)}
        run_ids = {ingest.run_id, train.run_id}

    assert meta["validated_episodes"]["episodes_kept"] == 3
    trained = meta["act_policy"]
    assert trained["launcher"] == "subprocess" and trained["steps"] == 2
    assert meta["dataset"]["episodes"] == 3 and "deployed_policy" in meta

    # Dagster's runs and events live in PostgreSQL, nowhere under the store
    conn = connect("dagster")
    with conn.cursor() as cur:
        cur.execute("SELECT run_id FROM runs")
        assert run_ids <= {row[0] for row in cur.fetchall()}
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] >= 6
    conn.close()
    assert not layout.dagster_home.exists()

    # The training subprocess logged to the server: params, metrics, artifacts through its proxy, the registry
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(trained["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.steps"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {"bundle/model.safetensors", "bundle/manifest.json"} <= {a.path for a in client.list_artifacts(run.info.run_id, "bundle")}
    assert list((mlflow_root / "artifacts").rglob("model.safetensors"))  # stored by the server, not the client
    assert not layout.mlflow_dir.exists()  # nothing fell back to the embedded SQLite file
    version = client.get_model_version(MODEL, str(meta["deployed_policy"]["candidate_version"]))
    assert version.run_id == run.info.run_id
    assert meta["deployed_policy"]["promoted"] is True  # the first candidate, on validation loss
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == version.version
    assert verify_bundle(layout.deploy_dir / MODEL / "champion")["mlflow_run_id"] == run.info.run_id
