"""The store on the GCS protocol: `gcp-storage-emulator` on 127.0.0.1 (started here, stopped by PID) reached through
the real gcsfs / fsspec / Zarr stack, in child processes as a user runs them (`aloha sync`, `aloha pull`).

gcsfs reaches an emulator through $STORAGE_EMULATOR_HOST. Its default filesystem class first asks the gRPC storage
control API for the bucket's type, which an HTTP emulator does not serve (a minute's timeout, then the plain class):
$GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false picks the plain class at once. Both are read when gcsfs is imported, hence
the child processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from assets_store import EpisodeReader, StoreLayout, finalize_session
from assets_store.bundle import seal_bundle, verify_bundle
from assets_store.synthetic import write_synthetic_episode
from s3_kit import free_port

pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
URL = "gs://robot-data/aloha"


@pytest.fixture(scope="module")
def gcs_env(tmp_path_factory) -> dict[str, str]:
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
                                 "--in-memory", "--default-bucket", "robot-data"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # ready once it answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b/robot-data", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield {**os.environ, "PYTHONPATH": str(REPO), "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
               "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_sync_read_and_pull_on_a_gcs_root(layout: StoreLayout, gcs_env, tmp_path):
    for i in range(2):
        write_synthetic_episode(layout, "rig1", steps=8, seed=i, joints=3)
    finalize_session(layout, "rig1")
    synced = _run([str(BIN / "aloha"), "sync", "rig1", "--to", URL, "--store", str(layout.root)], gcs_env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "every sha256 verified" in " ".join(synced.stdout.split())

    # An episode read back from the bucket through Zarr's fsspec store; a bundle published there.
    bundle = tmp_path / "built"
    bundle.mkdir()
    (bundle / "model.safetensors").write_bytes(b"weights" * 100)
    (bundle / "config.json").write_text(json.dumps({"robot": "sim"}))
    (bundle / "stats.json").write_text("{}")
    seal_bundle(bundle, dataset_id="ds1", mlflow_run_id="run1")
    child = textwrap.dedent(f"""
        import json
        from assets_store import EpisodeReader
        from assets_store.remote import RemoteStore
        from assets_store.sync import publish_bundle
        remote = RemoteStore.at({URL!r})
        reader = EpisodeReader(remote.episode_url("rig1", "episode_000001.zarr"))
        publish_bundle({str(bundle)!r}, remote, remote.deploy_key("aloha-act", "champion"))
        print(json.dumps({{"finalized": remote.is_session_finalized("rig1"), "qpos": reader.qpos.tolist(),
                           "cams": reader.camera_names, "frame": reader.frame(reader.camera_names[0], 2).tolist()}}))
    """)
    read = _run([sys.executable, "-c", child], gcs_env)
    assert read.returncode == 0, read.stderr[-3000:]
    got = json.loads(read.stdout.strip().splitlines()[-1])
    local = EpisodeReader(layout.episode_path("rig1", 1))
    assert got["finalized"] and got["cams"] == local.camera_names
    assert got["qpos"] == local.qpos.tolist() and got["frame"] == local.frame(local.camera_names[0], 2).tolist()

    dest = tmp_path / "robot" / "policy"
    pulled = _run([str(BIN / "aloha"), "pull", "--store", URL, "--to", str(dest)], gcs_env)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert verify_bundle(dest)["dataset_id"] == "ds1"
