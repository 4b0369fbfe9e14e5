"""The store on the GCS protocol: `gcp-storage-emulator` on 127.0.0.1 (started here, stopped by PID) reached through
the real gcsfs / fsspec / Zarr stack, in child processes as a user runs them (`aloha sync`, `aloha pull`): gcsfs
reads the emulator's address when it is imported (see `s3_kit.loopback_gcs`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assets_store import EpisodeReader, StoreLayout, finalize_session
from assets_store.bundle import verify_bundle
from assets_store.synthetic import write_synthetic_episode
from s3_kit import loopback_gcs, placeholder_bundle

pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
URL = "gs://robot-data/aloha"


@pytest.fixture(scope="module")
def gcs_env(tmp_path_factory) -> dict[str, str]:
    with loopback_gcs(tmp_path_factory.mktemp("gcs") / "server.log", "robot-data") as env:
        yield {**os.environ, "PYTHONPATH": str(REPO), **env}


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
    bundle = placeholder_bundle(tmp_path / "built")
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
