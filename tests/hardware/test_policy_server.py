"""The remote policy server (`aloha serve-policy`, a real subprocess on 127.0.0.1) and its client: the same actions as
in-process, the bundle hash checked on both ends, a versioned schema, sizes refused by the header, and a lost server
that stops the rollout safely."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from bundle_kit import POLICY_HW, tiny_sim_bundle
from proc_kit import signal_and_collect, start_server

from hardware.policy_server import PolicyClient, PolicyServerError, connect_policy, parse_address
from hardware.policy_wire import SCHEMA, VERSION, Message, WireError, decode, encode

REPO = Path(__file__).resolve().parents[2]
ROBOT = "sim-transfer-cube"
# The shared test machine can be slow: a generous limit for requests that must succeed.
PATIENT_S = 30.0
ENV = dict(os.environ, COLUMNS="250")  # rich writes each error as one line


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    served = tiny_sim_bundle(root / "served", ["top"], robot=ROBOT)
    other = tiny_sim_bundle(root / "other", ["top"], robot=ROBOT, chunk_size=12)  # another manifest hash
    return served, other


@pytest.fixture(scope="module")
def server(bundles):
    proc, address = start_server(bundles[0])
    yield address
    out = signal_and_collect(proc, signal.SIGTERM)  # stopped by PID, cleanly
    assert proc.returncode == 0 and "stopped after" in out, out


class Recording:
    """The policy as it is, its actions kept."""

    def __init__(self, policy):
        self.policy, self.actions = policy, []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def act(self, qpos, images):
        action = self.policy.act(qpos, images)
        self.actions.append(action)
        return action


@pytest.mark.parametrize("k, query_every", [(0.01, 1), (None, 3)])  # temporal ensembling; chunks open loop
def test_loopback_rollout_gives_the_in_process_actions(bundles, server, k, query_every):
    from hardware.rollout import make_robot_for_policy, run_rollouts
    from hardware.sim import heldout_seeds
    from model.policy import Policy

    local = Recording(Policy.from_bundle(bundles[0], temporal_ensemble_k=k, query_every=query_every))
    remote = Recording(connect_policy(bundles[0], server, timeout_s=PATIENT_S, temporal_ensemble_k=k,
                                      query_every=query_every))
    robot = make_robot_for_policy(ROBOT, local, resolution=(48, 64))  # frames larger than the policy's 32x32
    seed = heldout_seeds(1)[0]
    for policy in (local, remote):
        report = run_rollouts(robot, policy, [seed], num_steps=7, stop_on_success=False)
        assert report.episodes[0].steps == 7
    remote.close()
    np.testing.assert_allclose(np.stack(remote.actions), np.stack(local.actions), rtol=0, atol=1e-5)
    assert not np.allclose(local.actions[0], local.actions[-1])  # the actions do change over the episode


def test_hash_mismatch_is_refused(bundles, server, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli.app import build_app

    res = CliRunner().invoke(build_app(), ["rollout", "--robot", ROBOT, "--policy", str(bundles[1]), "--policy-server",
                                           server, "--store", str(tmp_path / "store")])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "error:" in text and "this server serves manifest sha256" in text and "the request expects" in text

    # Without a hello: every request carries the hash, and the server checks each one.
    client = PolicyClient(server, "0" * 64, (10, 14), timeout_s=PATIENT_S)
    with pytest.raises(PolicyServerError, match="serves manifest sha256 .* the request expects 0000"):
        client.request("predict", {"qpos": np.zeros(14, np.float32), "images/top": np.zeros((*POLICY_HW, 3), np.uint8)})
    client.close()


def test_an_image_larger_than_the_bundle_takes_is_refused_by_its_header(bundles, server):
    policy = connect_policy(bundles[0], server, timeout_s=PATIENT_S)
    qpos = np.zeros(14, np.float32)
    with pytest.raises(PolicyServerError, match=r"refused the request: arrays: expected .*images/top \|u1 \[32, 32, 3\]"):
        policy.client.request("predict", {"qpos": qpos, "images/top": np.zeros((64, 64, 3), np.uint8)})
    # A frame over the server's cap is dropped by ZeroMQ before it allocates it: that peer gets no reply.
    rogue = PolicyClient(server, policy.client.bundle_hash, (10, 14), timeout_s=2.0)
    with pytest.raises(PolicyServerError, match="no reply within 2 s"):
        rogue.request("predict", {"qpos": qpos, "images/top": np.zeros((4096, 4096, 3), np.uint8)})
    rogue.close()
    with pytest.raises(PolicyServerError, match=r"qpos <f4 \[13\]"):
        policy.client.request("predict", {"qpos": qpos[:13], "images/top": np.zeros((*POLICY_HW, 3), np.uint8)})
    assert policy.predict_chunk(qpos, {"top": np.zeros((480, 640, 3), np.uint8)}).shape == (10, 14)  # still serving
    policy.close()


def _raw_request(address: str, header: dict) -> list[bytes]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, int(PATIENT_S * 1000))
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"tcp://{address}")
        sock.send_multipart([json.dumps(header).encode()])
        return sock.recv_multipart()
    finally:
        sock.close()
        ctx.term()


def test_an_unknown_schema_version_is_refused_on_both_ends(server):
    # Server end: a client of a future version gets an error it can read (in this version's schema).
    reply = decode(_raw_request(server, {"schema": SCHEMA, "version": VERSION + 1, "kind": "hello", "id": 1,
                                         "bundle_sha256": "x", "arrays": []}))
    assert reply.kind == "error"
    assert reply.info["message"] == f"schema version: {VERSION + 1} is unknown here; this end speaks {SCHEMA} v{VERSION}"
    # Client end: a reply in another version, or from a server of another bundle, is refused.
    with pytest.raises(WireError, match="schema: expected 'aloha-policy-wire', got 'other'"):
        decode([json.dumps({"schema": "other"}).encode()])
    for header, why in (({"version": VERSION + 1}, f"reply refused: schema version: {VERSION + 1} is unknown"),
                        ({"bundle_sha256": "f" * 64}, "serves bundle manifest sha256 ffff.* expected aaaa")):
        address, thread = _fake_server(header)
        client = PolicyClient(address, "a" * 64, (10, 14), timeout_s=PATIENT_S)
        with pytest.raises(PolicyServerError, match=why):
            client.request("hello")
        client.close()
        thread.join(PATIENT_S)


def _fake_server(override: dict) -> tuple[str, threading.Thread]:
    """Answers one request with a welcome whose header fields are replaced by `override`."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    def answer():
        try:
            request = decode(sock.recv_multipart())
            header = json.loads(encode(Message("welcome", request.request_id, request.bundle_sha256))[0])
            sock.send_multipart([json.dumps({**header, **override}).encode()])
        finally:
            sock.close(linger=1000)
            ctx.term()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return f"127.0.0.1:{port}", thread


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_killed_server_stops_the_robot_safely(bundles, tmp_path, monkeypatch, mode):
    from typer.testing import CliRunner

    from hardware.sim.robot import SimRobot
    from pipeline.cli.app import build_app

    proc, address = start_server(bundles[0])
    observe, seen, disconnected = SimRobot.observe, [], []

    def observe_then_kill(robot):  # the real robot; its 5th observation happens after the server died
        seen.append(1)
        if len(seen) == 4:
            proc.kill()
            proc.wait()
        return observe(robot)

    monkeypatch.setattr(SimRobot, "observe", observe_then_kill)
    disconnect = SimRobot.disconnect
    monkeypatch.setattr(SimRobot, "disconnect", lambda robot: (disconnected.append(1), disconnect(robot))[1])
    args = ["rollout", "--robot", ROBOT, "--policy", str(bundles[0]), "--policy-server", address,
            "--server-timeout", "2", "--max-steps", "3000", "--store", str(tmp_path / "store")]
    try:
        res = CliRunner().invoke(build_app(), args + (["--async"] if mode == "async" else []))
    finally:
        proc.kill()
        proc.wait()
    text = " ".join(res.output.split())
    assert res.exit_code == 1, text
    assert f"error: rollout stopped, robot stopped safely: policy server {address}: no reply within 2 s" in text, text
    assert f"inference on policy server {address} (device cpu, backend torch, torch eager fp32)" in text, text
    assert disconnected and len(seen) < 1000  # released at the fault, long before the episode's end


def test_addresses_and_cli_errors(bundles, server):
    from typer.testing import CliRunner

    from pipeline.cli.app import build_app

    assert parse_address("gpu-box:5555") == ("gpu-box", 5555)
    assert parse_address("[::1]:5555") == ("::1", 5555)
    for bad in ("gpu-box", ":5555", "gpu-box:0", "gpu-box:http", "::1:5555", "[]:5555"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            parse_address(bad)
    runner = CliRunner()
    res = runner.invoke(build_app(), ["serve-policy", "--policy", str(bundles[0]), "--port", server.split(":")[1]])
    assert res.exit_code == 1 and "could not bind 127.0.0.1:" in res.output, res.output
    if not torch.cuda.is_available():
        res = runner.invoke(build_app(), ["serve-policy", "--policy", str(bundles[0]), "--device", "cuda"])
        assert res.exit_code == 2 and "--device cuda: no CUDA device" in res.output, res.output
    res = runner.invoke(build_app(), ["rollout", "--robot", ROBOT, "--policy", str(bundles[0]), "--policy-server",
                                      server, "--backend", "onnx"])
    assert res.exit_code == 2 and "--backend: with --policy-server" in res.output, res.output
    for extra, why in ((["--precision", "fp16"], "--precision 'fp16': expected one of ['fp32', 'bf16']"),
                       (["--backend", "onnx", "--precision", "bf16"], "--precision bf16: --backend onnx runs fp32")):
        res = runner.invoke(build_app(), ["serve-policy", "--policy", str(bundles[0]), *extra])
        assert res.exit_code == 2 and f"error: {why}" in res.output, res.output
    # Nothing listening, or not an address: one error line before any robot connects.
    with zmq.Context() as ctx, ctx.socket(zmq.REP) as sock:
        silent = f"127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"  # bound, never answers
        for where, why in ((silent, f"error: policy server {silent}: no reply within 0.5 s"),
                           ("gpu-box", "error: policy server address 'gpu-box': expected HOST:PORT")):
            res = runner.invoke(build_app(), ["rollout", "--robot", ROBOT, "--policy", str(bundles[0]),
                                              "--policy-server", where, "--server-timeout", "0.5"])
            assert res.exit_code == 1 and why in " ".join(res.output.split()), res.output


def test_onnx_serves_on_the_cpu_unless_told():
    from hardware.cli.serve_policy import serving_device

    assert serving_device(None, "onnx", cuda_available=True) == "cpu"  # ONNX Runtime here runs on the CPU only
    assert serving_device(None, "torch", cuda_available=True) == "cuda"
    assert serving_device(None, "torch", cuda_available=False) == "cpu"
    assert serving_device("cuda:1", "torch", cuda_available=True) == "cuda:1"


def test_a_bf16_server_on_ipv6_loopback_says_how_it_runs(bundles):
    # ::1 binds (ZeroMQ needs its IPv6 option), the client connects to [::1]:PORT, and the precision asked for is what
    # the server line, the welcome and the client's served_by all report.
    lines: list[str] = []
    proc, address = start_server(bundles[0], "--host", "::1", "--precision", "bf16", lines=lines)
    try:
        assert address.startswith("[::1]:") and "device cpu, torch eager bf16" in lines[-1], lines
        assert not any("warning" in line for line in lines), lines  # ::1 is loopback
        policy = connect_policy(bundles[0], address, timeout_s=PATIENT_S, temporal_ensemble_k=None)
        try:
            assert policy.served_by == f"{address} (device cpu, backend torch, torch eager bf16)"
            h, w = POLICY_HW
            chunk = policy.predict_chunk(np.zeros(len(policy.joint_names), np.float32),
                                         {"top": np.zeros((h, w, 3), np.uint8)})
            assert chunk.shape == (policy.chunk_size, len(policy.action_names)) and np.isfinite(chunk).all()
        finally:
            policy.close()
    finally:
        out = signal_and_collect(proc, signal.SIGTERM)
    assert proc.returncode == 0 and "stopped after 2 request(s), 0 refused" in out, out
