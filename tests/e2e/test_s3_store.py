"""The store on a real S3 protocol: an S3-compatible server (moto in server mode) on 127.0.0.1, started here as a
subprocess and stopped by its PID, reached through the real s3fs / fsspec / Zarr stack.

A recorded session is synced (`aloha sync`, one run killed midway and resumed), its episodes read back from the
bucket, a few training steps read their frames from the bucket through the node-local chunk cache, and a deployed
bundle is pulled from the bucket (`aloha pull --store s3://...`) with every hash verified.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader, StoreLayout, finalize_session
from assets_store.bundle import verify_bundle
from assets_store.dataset import build_manifest, episode_content_hash, write_dataset
from assets_store.layout import CHAMPION, FINALIZED_MARKER
from assets_store.remote import RemoteStore
from assets_store.stats import dataset_stats, episode_partial_stats
from assets_store.sync import publish_bundle, session_files
from assets_store.synthetic import write_synthetic_episode
from pipeline.cli.app import build_app
from s3_kit import loopback_s3, placeholder_bundle

REPO = Path(__file__).resolve().parents[2]
BUCKET = "robot-data"
runner = CliRunner()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3 server's URL root for this module; the AWS_* variables point every client (and child) at it."""
    with loopback_s3(tmp_path_factory.mktemp("moto") / "server.log", BUCKET) as env:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            yield f"s3://{BUCKET}"


def _record(layout: StoreLayout, session: str, episodes: int = 2, steps: int = 12) -> list[Path]:
    paths = [write_synthetic_episode(layout, session, steps=steps, seed=i, joints=3) for i in range(episodes)]
    finalize_session(layout, session)
    return paths


def test_a_sync_killed_midway_resumes_and_the_session_appears_only_once_complete(layout, s3, tmp_path):
    _record(layout, "rig1")
    url = f"{s3}/killed"
    remote = RemoteStore.at(url)
    # A real `aloha sync` process, killed (SIGKILL) right after its fourth file is uploaded and verified.
    child = textwrap.dedent(f"""
        import os, signal, sys
        from assets_store import StoreLayout
        from assets_store.remote import RemoteStore
        from assets_store.sync import sync_session
        done = []
        def on_file(rel, uploaded):
            done.append(rel)
            print(rel, flush=True)
            if len(done) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        sync_session(StoreLayout({str(layout.root)!r}), "rig1", RemoteStore.at({url!r}), on_file=on_file)
    """)
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    uploaded_before = proc.stdout.split()
    assert len(uploaded_before) == 4
    remote.refresh()
    assert not remote.is_session_finalized("rig1")  # the sensor cannot see a half-uploaded session

    app = build_app()
    result = runner.invoke(app, ["sync", "rig1", "--to", url, "--store", str(layout.root)])
    assert result.exit_code == 0, result.output
    files = session_files(layout, "rig1")
    assert f"{len(files) - 4 + 1} files uploaded" in result.output and "4 already there" in result.output
    remote.refresh()
    assert remote.is_session_finalized("rig1")
    held = remote.files(remote.session_key("rig1"))
    assert set(held) == {*files, FINALIZED_MARKER}

    again = runner.invoke(app, ["sync", "rig1", "--to", url, "--store", str(layout.root)])
    assert again.exit_code == 0 and "0 files uploaded" in again.output


def test_sync_refuses_a_session_that_is_not_finalized(layout, s3):
    write_synthetic_episode(layout, "open", steps=4, joints=3)
    result = runner.invoke(build_app(), ["sync", "open", "--to", f"{s3}/refused", "--store", str(layout.root)])
    assert result.exit_code == 1
    assert f"error: {layout.session_dir('open')}: not finalized" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert RemoteStore.at(f"{s3}/refused").files(f"{BUCKET}/refused") == {}


def test_training_reads_its_frames_from_the_bucket_through_the_node_local_cache(layout, s3, tmp_path, monkeypatch):
    from model.config import ACTConfig, TrainConfig
    from model.data import ChunkDataset, EpisodeSource, make_loader
    from model.train import train

    paths = _record(layout, "rig2", episodes=2, steps=16)
    refs, partials = [], []
    for p in paths:
        r = EpisodeReader(p)
        partials.append(episode_partial_stats(r.qpos, r.action))
        refs.append(("rig2", p.name, episode_content_hash(p), len(r)))
    cams = EpisodeReader(paths[0]).camera_names
    manifest = build_manifest(refs, val_fraction=0.5, robot="tiny", fps=50.0, joint_names=["a", "b", "c"],
                              camera_names=cams)
    dataset_dir = write_dataset(layout, manifest, dataset_stats(partials))
    url = f"{s3}/train"
    assert runner.invoke(build_app(), ["sync", "rig2", "--to", url, "--store", str(layout.root)]).exit_code == 0
    local_frames = EpisodeReader(paths[0]).frames(cams[0])
    # The episodes now exist only in the bucket: every read below goes over S3.
    layout.session_dir("rig2").rename(tmp_path / "moved-away")

    cache_dir = tmp_path / "chunk-cache"
    monkeypatch.setenv("ALOHA_STORE", url)
    monkeypatch.setenv("ALOHA_CHUNK_CACHE", str(cache_dir))
    source = EpisodeSource.from_env()
    assert source.store_url == url and source.cache_dir == cache_dir
    ds = ChunkDataset(dataset_dir, "all", chunk_size=4, image_size=(32, 48))
    assert all(p.startswith(f"{url}/raw/rig2/") for p in ds.paths)
    ds[0]
    ds[0]
    assert (ds._cache.misses, ds._cache.hits) == (1, 1) and ds._cache.total_bytes > 0
    first = ds._reader(0)
    np.testing.assert_array_equal(first.frame(cams[0], 0), local_frames[0])
    # DataLoader worker processes (forked) open their own S3 clients, readers and cache index.
    batches = list(make_loader(ds, 8, num_workers=2, persistent=False))
    assert sum(len(b["qpos"]) for b in batches) == 8 * (len(ds) // 8)

    act = ACTConfig(hidden_dim=32, dim_feedforward=64, nheads=2, enc_layers=1, vae_enc_layers=1, dec_layers=1,
                    chunk_size=4, dropout=0.0, pretrained_backbone=False, backbone_norm="group", state_dim=3,
                    action_dim=3, camera_names=cams, recommended_lr=1e-3, kl_weight=1.0)
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, lr_backbone=1e-3, val_every=3, val_batches=1,
                      checkpoint_every=3, log_every=1, num_workers=0, image_size=(32, 48), bf16=False, seed=0,
                      chunk_cache_dir=str(tmp_path / "configured-cache"), chunk_cache_bytes=1 << 20)
    result = train(dataset_dir, tmp_path / "run", act, cfg)
    assert result.steps == 3 and np.isfinite(result.final_train_loss)
    cached = [p for p in (tmp_path / "configured-cache").iterdir() if not p.name.startswith(".")]
    assert cached  # the trainer's frames came through the node-local cache its config names (over the variable's)


def test_pull_from_the_bucket_verifies_every_hash(layout, s3, tmp_path):
    bundle = placeholder_bundle(tmp_path / "built")
    url = f"{s3}/deployed"
    remote = RemoteStore.at(url)
    publish_bundle(bundle, remote, remote.deploy_key("aloha-act", CHAMPION))

    app = build_app()
    dest = tmp_path / "robot" / "policy"
    result = runner.invoke(app, ["pull", "--store", url, "--to", str(dest)])
    assert result.exit_code == 0, result.output
    assert verify_bundle(dest)["dataset_id"] == "ds1"
    assert "ok dataset ds1, MLflow run run1" in result.output

    # A file altered in the bucket: refused, and the bundle pulled before is untouched.
    remote.fs.pipe_file(f"{remote.deploy_key('aloha-act', CHAMPION)}/model.safetensors", b"tampered")
    again = runner.invoke(app, ["pull", "--store", url, "--to", str(dest), "--force"])
    assert again.exit_code == 1
    assert "model.safetensors: sha256 mismatch" in " ".join(again.output.split())
    assert (dest / "model.safetensors").read_bytes() == b"weights" * 100

    missing = runner.invoke(app, ["pull", "--store", url, "--to", str(tmp_path / "other"), "--version", "7"])
    assert missing.exit_code == 1 and "no deployed bundle 'aloha-act' 7" in " ".join(missing.output.split())


def test_the_pipeline_reads_the_sessions_from_the_bucket(layout, s3, tmp_path, tmp_path_factory, monkeypatch):
    from dagster import AssetKey, DagsterInstance, SkipReason, build_sensor_context

    from assets_store.dataset import load_dataset
    from pipeline.definitions import build_definitions
    from pipeline.resources import StoreResource
    from pipeline.sensors import finalized_sessions_sensor
    from pipeline_kit import corrupt_frame, ingest, make_session, metadata

    paths = make_session(layout, "rig3", 3)
    corrupt_frame(paths[1])
    hashes = {p.name: episode_content_hash(p) for p in paths}
    url = f"{s3}/pipeline"
    local = tmp_path / "pipeline-local"
    monkeypatch.setenv("ALOHA_LOCAL_STORE", str(local))  # reports, datasets, Dagster and MLflow stay local
    instance = DagsterInstance.ephemeral()
    context = build_sensor_context(instance=instance, resources={"store": StoreResource(root=url)})
    assert isinstance(finalized_sessions_sensor(context), SkipReason)  # nothing in the bucket yet

    from assets_store.annotations import annotate

    annotate(layout, "rig3", 2, "exclude", by="ana", reason="the cube fell off the table")  # curated on the rig
    synced = runner.invoke(build_app(), ["sync", "rig3", "--to", url, "--store", str(layout.root)])
    assert synced.exit_code == 0 and "annotation log uploaded" in synced.output
    layout.session_dir("rig3").rename(tmp_path / "moved-away")  # from now on the episodes exist only in the bucket
    layout.annotations_path("rig3").unlink()  # ... and so does the annotation log
    result = finalized_sessions_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["rig3"]

    defs = build_definitions(store_root=url)
    ingested = ingest(defs, instance, "rig3")
    assert ingested.success
    validated = metadata(ingested, "validated_episodes")
    assert validated["episodes_kept"] == 2 and validated["episodes_quarantined"] == 1
    assert "episode_000001.zarr" in validated["quarantine_reasons"]
    record = json.loads((local / "quarantine" / "rig3" / "episode_000001.zarr.json").read_text())
    assert any(r.startswith("frames_decodable:") and "step 3" in r for r in record["reasons"])

    built = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey("dataset")])
    assert built.success
    dataset_dir = Path(metadata(built, "dataset")["dataset_dir"])
    assert dataset_dir.is_relative_to(local)
    manifest, _ = load_dataset(dataset_dir)
    assert {(r.episode, r.content_hash) for r in manifest.episodes} == {  # hashed from the bucket, curated by its log
        (name, h) for name, h in hashes.items() if name not in ("episode_000001.zarr", "episode_000002.zarr")}
    # The dataset is in the bucket too (manifest last), and a trainer can read it and its episodes from there alone.
    from model.data import ChunkDataset, EpisodeSource

    in_bucket = f"{url}/datasets/{manifest.id}"
    assert load_dataset(in_bucket)[0] == manifest
    from_bucket = ChunkDataset(in_bucket, "all", chunk_size=4, image_size=(32, 48), source=EpisodeSource())
    assert from_bucket.paths[0].startswith(f"{url}/raw/rig3/") and from_bucket[0]["images"].shape == (1, 3, 32, 48)

    # Training reads the frames from the bucket (the local dataset records where its episodes are); the bundle is
    # deployed under the local root ...
    from pipeline.jobs import TRAIN_JOB
    from pipeline_kit import install_mlflow_db, migrated_mlflow_db, tiny_run_config

    install_mlflow_db(migrated_mlflow_db(tmp_path_factory), StoreLayout(local))
    # A training process of its own (as a pod would be) reads the dataset from the bucket, by its URL.
    trained = defs.resolve_job_def(TRAIN_JOB).execute_in_process(instance=instance,
                                                                 run_config=tiny_run_config(launcher="subprocess"))
    assert trained.success
    assert metadata(trained, "act_policy")["launcher"] == "subprocess"
    assert metadata(trained, "act_policy")["steps"] == 2
    assert metadata(trained, "deployed_policy")["promoted"] is True
    deployed = StoreLayout(local).deploy_path("aloha-act", CHAMPION)
    assert verify_bundle(deployed)["dataset_id"] == manifest.id
    # ... and in the bucket, where a robot pulls it with every hash verified.
    dest = tmp_path / "robot" / "policy"
    monkeypatch.setenv("ALOHA_STORE", url)
    pulled = runner.invoke(build_app(), ["pull", "--to", str(dest)])  # the store: $ALOHA_STORE, the bucket
    assert pulled.exit_code == 0, pulled.output
    assert verify_bundle(dest) == verify_bundle(deployed)
    assert "promoted on:" in pulled.output and "unknown" not in pulled.output.split("promoted on:")[1].split("\n")[0]


def test_verbs_that_need_a_local_store_refuse_an_object_store_root_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALOHA_STORE", "s3://robot-data/aloha")
    app = build_app()
    for args in (["episodes", "list"], ["replay", "s1/0"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "error: store root s3://robot-data/aloha: an object-store URL" in " ".join(result.output.split())
        assert result.exception is None or isinstance(result.exception, SystemExit)
    monkeypatch.delenv("ALOHA_STORE")
    # The same root given as --store (it used to become the local folder `s3:/robot-data/aloha`).
    for args in (["demo"], ["episodes", "list"], ["record", "--robot", "sim-insertion", "--session", "s1"]):
        result = runner.invoke(app, [*args, "--store", "s3://robot-data/aloha"])
        assert result.exit_code == 2, (args, result.output)
        assert "error: store root s3://robot-data/aloha: an object-store URL" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []  # no local folder named `s3:`
    plain = runner.invoke(app, ["sync", "s1", "--to", str(tmp_path / "bucket")])
    assert plain.exit_code == 2 and "error: --to must be a URL" in " ".join(plain.output.split())


def test_aloha_ui_on_a_bucket_keeps_the_dagster_and_mlflow_state_local(layout, s3, tmp_path, monkeypatch):
    """`aloha ui --store s3://...`: the code location gets the URL, the Dagster instance and MLflow's SQLite stay in
    a local state directory, and the real `dagster` CLI, in that environment, ingests the session from the bucket."""
    from dagster import DagsterInstance

    from pipeline.cli.ui import ui_launch
    from pipeline.partitions import SESSIONS
    from pipeline.resources import MlflowResource, StoreResource
    from pipeline_kit import make_session

    make_session(layout, "rig4", 2)
    url = f"{s3}/ui"
    assert runner.invoke(build_app(), ["sync", "rig4", "--to", url, "--store", str(layout.root)]).exit_code == 0
    layout.session_dir("rig4").rename(tmp_path / "moved-away")  # the episodes exist only in the bucket
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for var in ("ALOHA_STORE", "ALOHA_LOCAL_STORE", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)

    local, cmd, env = ui_launch(url, "127.0.0.1", 3000)
    state = local.root  # one local state directory per store URL
    assert state.parent == cwd / ".aloha_state" and state.name.startswith("s3_robot-data_ui-")
    assert (env["ALOHA_STORE"], env["ALOHA_LOCAL_STORE"]) == (url, str(state))
    assert env["DAGSTER_HOME"] == str(state / "dagster_home") and cmd[1:3] == ["dev", "-w"]
    with monkeypatch.context() as mp:  # what the code location builds from that environment
        for var in ("ALOHA_STORE", "ALOHA_LOCAL_STORE"):
            mp.setenv(var, env[var])
        assert MlflowResource(store=StoreResource()).resolved_tracking_uri == f"sqlite:///{state}/mlflow/mlflow.db"

    DagsterInstance.from_config(env["DAGSTER_HOME"]).add_dynamic_partitions(SESSIONS, ["rig4"])
    out = subprocess.run(
        [cmd[0], "asset", "materialize", "-m", "pipeline.definitions", "-a", "defs",
         "--select", "raw_episodes,validated_episodes", "--partition", "rig4"],
        # in_process: one process, not one per step (each would import the pipeline again)
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO), "ALOHA_DAGSTER_EXECUTOR": "in_process"},
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Executing steps in process" in out.stderr  # the executor the environment named
    runs = DagsterInstance.from_config(env["DAGSTER_HOME"]).get_runs()
    assert len(runs) == 1 and runs[0].is_success  # recorded in the local instance
    summary = json.loads(local.session_summary_path("rig4").read_text())  # the pipeline's reports: local
    assert len(summary["episodes"]) == 2
    remote = RemoteStore.at(url)
    remote.refresh()
    assert {rel.split("/")[0] for rel in remote.files(remote.key(""))} == {"raw"}  # only the data is in the bucket


def test_python_m_model_train_reads_a_dataset_by_its_bucket_url(layout, s3, tmp_path, monkeypatch):
    paths = _record(layout, "rig5", episodes=2, steps=16)
    url = f"{s3}/cli-train"
    assert runner.invoke(build_app(), ["sync", "rig5", "--to", url, "--store", str(layout.root)]).exit_code == 0
    refs = [("rig5", p.name, episode_content_hash(p), len(EpisodeReader(p))) for p in paths]
    partials = [episode_partial_stats(EpisodeReader(p).qpos, EpisodeReader(p).action) for p in paths]
    manifest = build_manifest(refs, val_fraction=0.5, robot="tiny", fps=50.0, joint_names=["a", "b", "c"],
                              camera_names=EpisodeReader(paths[0]).camera_names)
    write_dataset(StoreLayout(tmp_path / "builder", data_url=url), manifest, dataset_stats(partials))
    layout.session_dir("rig5").rename(tmp_path / "moved-away")  # the episodes exist only in the bucket
    monkeypatch.delenv("ALOHA_STORE")  # the dataset's URL alone says where its episodes are

    out = subprocess.run(
        [sys.executable, "-m", "model.train", "--dataset", f"{url}/datasets/{manifest.id}", "--out",
         str(tmp_path / "run"), "--preset", "small", "--steps", "2", "--hidden-dim", "32", "--dim-feedforward", "64",
         "--nheads", "2", "--enc-layers", "1", "--vae-enc-layers", "1", "--chunk-size", "4", "--no-pretrained",
         "--image-size", "32x48", "--batch-size", "4", "--num-workers", "0", "--val-batches", "1", "--no-bf16",
         "--no-progress", "--threads", "1"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "steps=2" in out.stdout and (tmp_path / "run" / "last.pt").is_file()
    assert not (REPO / "s3:").exists() and not (tmp_path / "s3:").exists()  # the old `Path(URL)` folder

    from model.train import cli_app

    missing = runner.invoke(cli_app(), ["--dataset", f"{url}/datasets/nope", "--out", str(tmp_path / "run2")])
    assert missing.exit_code == 1
    assert f"error: {url}/datasets/nope: expected a dataset directory" in " ".join(missing.output.split())


def test_a_long_running_sensor_sees_a_session_another_client_wrote_after_its_first_tick(layout, s3, tmp_path):
    """The sensor lives as long as the Dagster daemon: a listing s3fs cached on its first tick must not hide a
    session that a robot's `aloha sync` (another process, another client) finalized since."""
    import s3fs
    from dagster import DagsterInstance, build_sensor_context

    from assets_store.sync import sync_session
    from pipeline.resources import StoreResource
    from pipeline.sensors import finalized_sessions_sensor

    url = f"{s3}/long-running"
    _record(layout, "first", episodes=1, steps=4)
    sync_session(layout, "first", RemoteStore.at(url))
    instance = DagsterInstance.ephemeral()
    context = build_sensor_context(instance=instance, resources={"store": StoreResource(root=url)})
    assert [r.partition_key for r in finalized_sessions_sensor(context).run_requests] == ["first"]
    instance.add_dynamic_partitions("sessions", ["first"])

    _record(layout, "second", episodes=1, steps=4)
    other = s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    other.put(str(layout.session_dir("second")), f"{BUCKET}/long-running/raw/second", recursive=True)
    assert other.exists(f"{BUCKET}/long-running/raw/second/{FINALIZED_MARKER}")
    result = finalized_sessions_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["second"]


def test_train_refuses_an_object_store_out_in_one_line(tmp_path, monkeypatch):
    from model.train import cli_app

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli_app(), ["--dataset", str(tmp_path / "ds"), "--out", "s3://robot-data/aloha/runs/r1"])
    assert result.exit_code == 2, result.output
    assert "error: --out s3://robot-data/aloha/runs/r1: a run directory is local" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []  # the old `Path(URL)`: a local folder named `s3:`
    # file:// is a local path: it gets as far as the dataset (which does not exist)
    local = runner.invoke(cli_app(), ["--dataset", str(tmp_path / "ds"), "--out", (tmp_path / "run").as_uri()])
    assert local.exit_code == 1 and "--out" not in local.output


@pytest.fixture
def unreachable_s3(monkeypatch):
    """An S3 endpoint nothing listens on, with no credentials anywhere: botocore's errors, not OSError."""
    import s3fs
    from s3_kit import free_port

    s3fs.S3FileSystem.clear_instance_cache()  # a client made for the live server would still reach it
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield "s3://nowhere/aloha"
    s3fs.S3FileSystem.clear_instance_cache()


def test_an_unreachable_object_store_is_one_error_line(layout, s3, unreachable_s3, tmp_path, monkeypatch):
    from model.train import cli_app

    _record(layout, "rig6", episodes=1, steps=4)
    url = unreachable_s3
    for args in (["sync", "rig6", "--to", url, "--store", str(layout.root)],
                 ["pull", "--store", url, "--to", str(tmp_path / "policy")]):
        result = runner.invoke(build_app(), args)
        assert result.exit_code == 1, (args, result.output)
        assert f"error: cannot reach {url}: Could not connect to the endpoint" in " ".join(result.output.split())
        assert result.exception is None or isinstance(result.exception, SystemExit)
    trained = runner.invoke(cli_app(), ["--dataset", f"{url}/datasets/x", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 1 and f"error: cannot reach {url}/datasets/x" in " ".join(trained.output.split())
    assert trained.exception is None or isinstance(trained.exception, SystemExit)

    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = runner.invoke(build_app(), ["sync", "rig6", "--to", url, "--store", str(layout.root)])
    assert result.exit_code == 1
    assert f"error: cannot reach {url}: Unable to locate credentials" in " ".join(result.output.split())
    assert not (tmp_path / "policy").exists()


def test_pull_reports_a_failed_read_of_the_bucket_as_a_read(s3, tmp_path, monkeypatch):
    import errno

    url = f"{s3}/denied"
    remote = RemoteStore.at(url)
    publish_bundle(placeholder_bundle(tmp_path / "built"), remote, remote.deploy_key("aloha-act", CHAMPION))

    def denied(rpath, lpath, **kwargs):
        raise PermissionError(errno.EACCES, "Access Denied", rpath)

    monkeypatch.setattr(remote.fs, "get_file", denied)  # the client `aloha pull` gets (fsspec's instance cache)
    dest = tmp_path / "policy"
    result = runner.invoke(build_app(), ["pull", "--store", url, "--to", str(dest)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert f"error: could not read {url}: Access Denied" in out and "could not write" not in out
    assert not dest.exists()


def test_sync_with_a_bucket_store_root_asks_for_the_local_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALOHA_STORE", "s3://robot-data/aloha")
    result = runner.invoke(build_app(), ["sync", "s1", "--to", "s3://robot-data/aloha"])
    assert result.exit_code == 2
    assert "give --store <local store>" in " ".join(result.output.split())


def test_the_object_store_benchmark_starts_as_documented(tmp_path):
    """`python bench/bench_object_store.py`, run from anywhere: tests/ (for the S3 kit) must not shadow the packages
    with its folders of the same names."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_object_store.py"), "--help"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--samples" in out.stdout


def test_a_dataset_given_by_its_url_reads_its_episodes_from_its_own_store(layout, tmp_path, monkeypatch):
    """A training pod with $ALOHA_STORE naming one bucket, handed a dataset of another bucket by URL."""
    import uuid

    from model.data import ChunkDataset

    from assets_store.sync import sync_session

    paths = _record(layout, "rig7", episodes=1, steps=6)
    url = f"memory://own-{uuid.uuid4().hex[:8]}/aloha"
    sync_session(layout, "rig7", RemoteStore.at(url))
    r = EpisodeReader(paths[0])
    manifest = build_manifest([("rig7", paths[0].name, episode_content_hash(paths[0]), len(r))], val_fraction=0.0,
                              camera_names=r.camera_names)
    write_dataset(StoreLayout(tmp_path / "builder", data_url=url), manifest,
                  dataset_stats([episode_partial_stats(r.qpos, r.action)]))
    monkeypatch.setenv("ALOHA_STORE", "memory://another-bucket/aloha")
    ds = ChunkDataset(f"{url}/datasets/{manifest.id}", "all", chunk_size=2, image_size=(32, 48))
    assert f"{url.removeprefix('memory://')}/raw/rig7/" in ds.paths[0]  # (fsspec writes memory:///...)
    assert ds[0]["images"].shape[0] == len(r.camera_names)
