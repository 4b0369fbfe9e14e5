"""Object-store servers on loopback for tests and benchmarks, child processes stopped by PID: an S3-compatible one
(moto in server mode) and a GCS emulator (gcp-storage-emulator)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from proc_kit import default_signals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_it_answers(url: str, proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def placeholder_bundle(path: Path, dataset_id: str = "ds1", mlflow_run_id: str = "run1") -> Path:
    """A sealed policy bundle of placeholder bytes: what a store moves and verifies is files and their hashes."""
    from assets_store.bundle import seal_bundle

    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights" * 100)
    (path / "config.json").write_text(json.dumps({"robot": "sim"}))
    (path / "stats.json").write_text("{}")
    seal_bundle(path, dataset_id=dataset_id, mlflow_run_id=mlflow_run_id)
    return path


def stop_server(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM to the server's PID, and SIGKILL when it has not gone within `grace_s`: it never outlives the test."""
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def loopback_gcs(log: Path, bucket: str) -> Iterator[dict[str, str]]:
    """Start the GCS emulator with `bucket`, and yield the variables that point gcsfs (in a new process: gcsfs reads
    them when imported) at it: $STORAGE_EMULATOR_HOST, and $GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false, since gcsfs's
    default class first asks the gRPC storage-control API for the bucket's type, which an HTTP emulator does not
    serve (a minute's timeout before it falls back to the plain class)."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("gcp-storage-emulator")), "start", "--host",
                                 "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", bucket],
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=default_signals)
    try:
        wait_until_it_answers(f"http://127.0.0.1:{port}/storage/v1/b/{bucket}", proc, log, "gcp-storage-emulator")
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    finally:
        stop_server(proc)


@contextlib.contextmanager
def loopback_s3(log: Path, bucket: str) -> Iterator[dict[str, str]]:
    """Start the server, create `bucket`, and yield the AWS_* variables that point s3fs (and children) at it. The
    caller puts them in the environment; the server is stopped (SIGTERM to its PID) on exit."""
    import s3fs

    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=default_signals)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        wait_until_it_answers(f"http://127.0.0.1:{port}/", proc, log, "moto server")
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                          endpoint_url=env["AWS_ENDPOINT_URL"], skip_instance_cache=True).mkdir(bucket)
        yield env
    finally:
        stop_server(proc)
        s3fs.S3FileSystem.clear_instance_cache()
