"""The Dagster CLI loads workspace.yaml; `aloha ui` serves the graph on a loopback port and stops, with everything it
started, on SIGINT, SIGTERM and SIGHUP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.instance import dagster_env
from proc_kit import default_signals

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSETS = {"raw_episodes", "validated_episodes", "dataset", "act_policy", "policy_evaluation", "deployed_policy"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_cli_loads_the_workspace(layout):
    env = dagster_env(layout)
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All code locations passed validation" in out.stdout + out.stderr
    assert (layout.dagster_home / "dagster.yaml").read_text().count("enabled: false") == 1  # telemetry off


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_aloha_ui_serves_the_assets_and_stops_by_pid(layout):
    port = free_port()
    env = dagster_env(layout)
    proc = subprocess.Popen(
        [str(BIN / "aloha"), "ui", "--port", str(port), "--store", str(layout.root)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own group: the test can always clean up what it started
        preexec_fn=default_signals,
    )
    try:
        deadline = time.monotonic() + 150
        keys = set()
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                data = graphql(port, "{ assetNodes { assetKey { path } } }")
                keys = {"/".join(n["assetKey"]["path"]) for n in data["data"]["assetNodes"]}
                if keys:
                    break
            except (OSError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1.0)
        assert ASSETS <= keys, keys
        with socket.socket() as s:  # loopback only
            assert s.connect_ex(("127.0.0.1", port)) == 0
        started = descendants(proc.pid)

        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert survivors(started) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing left listening


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its start time (so a reused PID is not mistaken for a survivor)."""
    table = _process_table()
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _, start) in table.items():
            if ppid == parent and child not in found:
                found[child] = start
                todo.append(child)
    return found


def survivors(processes: dict[int, str]) -> list[int]:
    table = _process_table()
    return [pid for pid, start in processes.items()
            if pid in table and table[pid][2] == start and table[pid][1] not in ("Z", "X")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])  # `kill PID`; the SSH session dropped
def test_aloha_ui_stops_its_whole_process_tree(layout, signum):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "aloha"), "ui", "--port", str(port), "--store", str(layout.root)],
        cwd=REPO, env=dagster_env(layout), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=default_signals,
    )
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        started = descendants(proc.pid)
        assert len(started) >= 3, started  # dagster dev, its webserver and daemon (and code servers)

        os.kill(proc.pid, signum)
        assert proc.wait(timeout=60) == 128 + signum
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = survivors(started)
        for pid in left:  # never leave them to the next test
            os.kill(pid, signal.SIGKILL)
    assert left == [], left
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the port is free
