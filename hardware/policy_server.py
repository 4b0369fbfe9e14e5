"""A remote policy: `aloha serve-policy` runs a verified bundle on a machine with a GPU, `aloha rollout
--policy-server HOST:PORT` drives the robot with it over ZeroMQ (schema: `hardware.policy_wire`).

    server = PolicyServer(Policy.from_bundle(bundle, device="cuda"), bundle_sha256(bundle, manifest))
    server.bind("127.0.0.1", 0)  # -> "127.0.0.1:PORT"; server.serve(stop_event)
    policy = connect_policy(bundle, "gpu-box:5555", timeout_s=1.0)  # what run_rollouts takes, like a Policy

Where the work runs: the server only predicts raw chunks (`Policy.predict_chunk`, stateless, so any number of
clients and episodes share it). The client is a `Policy` of the same bundle whose chunks come from the server: its
temporal ensembling, open-loop chunks, base delay, compatibility checks and the asynchronous runner all run on the
robot's computer exactly as in-process, and it resizes frames to the policy's input size before sending (the
first thing the in-process policy does), so the same inputs give the same actions and a camera frame costs the
wire no more than the network needs.

Both ends know the bundle: the client verifies its local copy and sends the sha256 of its manifest.json with every
request; the server refuses any other hash, and the client refuses a reply from a server serving another bundle.
A server that is lost (killed, unreachable) or slower than the request timeout is a `PolicyServerError`, a
`RobotError`: the rollout stops there and the robot is stopped safely. Requests are answered one at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import weakref
from pathlib import Path
from typing import Any, Mapping

import numpy as np

try:
    import zmq
except ImportError as exc:  # the transport is the `server` extra
    raise ImportError(f"{exc}: the policy server and its client need pyzmq; pip install 'aloha-pipeline[server]'") from None

from assets_store.bundle import MANIFEST
from assets_store.errors import BundleIntegrityError
from hardware.interfaces import RobotError
from hardware.policy_wire import DEFAULT_PORT, DEFAULT_TIMEOUT_S, ArraySpec, Message, WireError, decode, encode
from model.policy import Policy, resize_uint8


class PolicyServerError(RobotError):
    """The policy server is lost, timed out, serves another bundle, or refused a request; the message says which."""


def bundle_sha256(bundle: Path, manifest: Mapping[str, Any]) -> str:
    """The bundle's identity: the sha256 of its manifest.json (which lists every file's sha256), as registered
    with MLflow; `manifest` is the verified one the policy was loaded from, so the hashed bytes are checked to be it."""
    data = (Path(bundle) / MANIFEST).read_bytes()
    if json.loads(data) != dict(manifest):
        raise BundleIntegrityError(f"{Path(bundle) / MANIFEST}: changed while the bundle was being loaded")
    return hashlib.sha256(data).hexdigest()


def parse_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host without brackets, port); anything else is a ValueError naming what was
    expected."""
    host, _, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not host or (":" in host and not bracketed) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"policy server address {address!r}: expected HOST:PORT with a port in 1..65535 (an IPv6 "
                         f"host in brackets: [::1]:5555)")
    return host, int(port)


def join_address(host: str, port: int | str) -> str:
    """(host, port) -> 'HOST:PORT', an IPv6 host in brackets (as ZeroMQ endpoints and parse_address want it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _allow_ipv6(sock, host: str) -> None:
    """ZeroMQ sockets are IPv4-only unless told: an IPv6 host (`::1`) needs the option before bind/connect."""
    if ":" in host:
        sock.setsockopt(zmq.IPV6, 1)


def _wire_limit(specs: list[ArraySpec]) -> int:
    """ZeroMQ's own per-frame cap (checked before it allocates): the largest frame a peer may legitimately send."""
    return max([64 << 10, *(s.nbytes for s in specs)]) + 1024


class PolicyServer:
    """Answers `hello` and `predict` requests for one loaded policy; everything else is refused with an error reply."""

    def __init__(self, policy: Policy, bundle_hash: str):
        self.policy = policy
        self.bundle_hash = bundle_hash
        h, w = policy.image_size
        # The only arrays a predict request may carry: what the bundle's policy takes, at its input size.
        self.expected = [ArraySpec("qpos", "<f4", (len(policy.joint_names),))] + [
            ArraySpec(f"images/{c}", "|u1", (h, w, 3)) for c in policy.camera_names]
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, _wire_limit(self.expected))
        self.requests = 0
        self.refused = 0

    def warm_up(self) -> None:
        """One prediction on zeros: first-call costs (allocation, graph capture) are paid before a client waits."""
        arrays = {s.name.removeprefix("images/"): np.zeros(s.shape, s.dtype) for s in self.expected}
        self.policy.predict_chunk(arrays.pop("qpos"), arrays)

    def bind(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
        """Bind; port 0 picks a free one. Returns 'HOST:PORT' as bound ('[::1]:PORT' for an IPv6 host)."""
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        _allow_ipv6(self._sock, host)
        self._sock.bind(f"tcp://{join_address(host, port or '*')}")
        endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()  # tcp://127.0.0.1:41234, tcp://[::1]:41234
        return endpoint.removeprefix("tcp://")

    def _check(self, kind: str, specs: list[ArraySpec]) -> None:
        if kind == "hello" and not specs:
            return
        if kind != "predict":
            raise WireError(f"kind: a server answers 'hello' and 'predict', got {kind!r}")
        if specs != self.expected:  # shapes and dtypes exactly: a bigger image is refused before it is read
            got = [f"{s.name} {s.dtype} {list(s.shape)}" for s in specs]
            want = [f"{s.name} {s.dtype} {list(s.shape)}" for s in self.expected]
            raise WireError(f"arrays: expected {want}, got {got}")

    def handle(self, frames: list[bytes]) -> tuple[list[bytes], str | None]:
        """One request -> (the reply frames, why it was refused or None)."""
        request_id = 0
        try:
            msg = decode(frames, self._check)
            request_id = msg.request_id
            if msg.bundle_sha256 != self.bundle_hash:
                raise WireError(f"bundle: this server serves manifest sha256 {self.bundle_hash}, the request "
                                f"expects {msg.bundle_sha256}")
            if msg.kind == "hello":
                p = self.policy
                info = {"camera_names": p.camera_names, "joint_names": p.joint_names, "image_size": list(p.image_size),
                        "chunk_shape": [p.chunk_size, len(p.action_names)], "device": str(p.device),
                        "backend": p.backend, "inference_path": p.inference_path}  # the last: optional, v1
                return encode(Message("welcome", request_id, self.bundle_hash, info=info)), None
            arrays = {name.removeprefix("images/"): np.array(a) for name, a in msg.arrays.items()}  # writable copies
            chunk = self.policy.predict_chunk(arrays.pop("qpos"), arrays)
            return encode(Message("chunk", request_id, self.bundle_hash, {"chunk": chunk})), None
        except (WireError, ValueError) as exc:
            why = str(exc)
        except Exception as exc:  # a fault of this server (out of GPU memory, ...): the client stops, the server stays up
            why = f"server error: {type(exc).__name__}: {exc}"
        return encode(Message("error", request_id, self.bundle_hash, info={"message": why})), why

    def serve(self, stop: threading.Event, on_refused=None) -> None:
        """Answer requests until `stop` is set (checked every 100 ms)."""
        while not stop.is_set():
            if not self._sock.poll(100):
                continue
            reply, refused = self.handle(self._sock.recv_multipart())
            self.requests += 1
            if refused is not None:
                self.refused += 1
                if on_refused is not None:
                    on_refused(refused)
            self._sock.send_multipart(reply)

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


class PolicyClient:
    """Requests to one server for one bundle; each waits `timeout_s` at most."""

    def __init__(self, address: str, bundle_hash: str, chunk_shape: tuple[int, int], timeout_s: float = DEFAULT_TIMEOUT_S):
        host, port = parse_address(address)
        if not timeout_s > 0:
            raise ValueError(f"policy server timeout: expected seconds > 0, got {timeout_s}")
        self.address = join_address(host, port)
        self.bundle_hash = bundle_hash
        self.chunk_shape = tuple(chunk_shape)
        self.timeout_s = float(timeout_s)
        self._ids = itertools.count(1)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.REQ)
        ms = max(1, int(self.timeout_s * 1000))
        for opt, value in ((zmq.LINGER, 0), (zmq.SNDTIMEO, ms), (zmq.RCVTIMEO, ms),
                           # a timed-out request does not wedge the next (ZMQ_IMMEDIATE is left off: with it, replies
                           # to fresh REQ connections were lost about one time in ten)
                           (zmq.REQ_RELAXED, 1), (zmq.REQ_CORRELATE, 1),
                           (zmq.MAXMSGSIZE, _wire_limit([ArraySpec("chunk", "<f8", self.chunk_shape)]))):
            self._sock.setsockopt(opt, value)
        _allow_ipv6(self._sock, host)
        self._sock.connect(f"tcp://{self.address}")
        self._finalizer = weakref.finalize(self, _close_zmq, self._sock, self._ctx)

    def _check_reply(self, kind: str, specs: list[ArraySpec]) -> None:
        want = {"welcome": [], "error": [], "chunk": [ArraySpec("chunk", "<f8", self.chunk_shape)]}.get(kind)
        if want is None or specs != want:
            raise WireError(f"reply {kind!r} with arrays {[(s.name, s.dtype, list(s.shape)) for s in specs]}: "
                            f"expected a chunk of {list(self.chunk_shape)} float64, a welcome or an error")

    def request(self, kind: str, arrays: Mapping[str, np.ndarray] | None = None) -> Message:
        """Send one request and return the server's reply; any failure is a PolicyServerError naming the server."""
        where = f"policy server {self.address}"
        request_id = next(self._ids)
        try:
            self._sock.send_multipart(encode(Message(kind, request_id, self.bundle_hash, dict(arrays or {}))))
            frames = self._sock.recv_multipart()
        except zmq.Again:
            raise PolicyServerError(f"{where}: no reply within {self.timeout_s:g} s (server lost, unreachable or "
                                    f"overloaded; --server-timeout sets the limit)") from None
        except zmq.ZMQError as exc:
            raise PolicyServerError(f"{where}: {exc}") from None
        try:
            reply = decode(frames, self._check_reply)
        except WireError as exc:
            raise PolicyServerError(f"{where}: reply refused: {exc}") from None
        if reply.kind == "error":
            raise PolicyServerError(f"{where} refused the request: {reply.info.get('message', '?')}")
        if reply.bundle_sha256 != self.bundle_hash:
            raise PolicyServerError(f"{where} serves bundle manifest sha256 {reply.bundle_sha256}, expected "
                                    f"{self.bundle_hash} (the local --policy)")
        if reply.request_id != request_id:
            raise PolicyServerError(f"{where}: reply to request {reply.request_id}, expected {request_id}")
        return reply

    def close(self) -> None:
        self._finalizer()


def _close_zmq(sock, ctx) -> None:
    sock.close(linger=0)
    ctx.term()


class RemotePolicy(Policy):
    """A `Policy` of a local, verified bundle whose chunks the server predicts (built by `connect_policy`): everything
    else a rollout asks of a policy runs here, as in-process."""

    client: PolicyClient
    # "HOST:PORT (device cuda, backend torch, torch cuda-graph fp32)": where and how inference runs, as the server
    # says (a server without `inference_path` in its welcome leaves the last part out)
    served_by: str

    def predict_chunk(self, qpos: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [c for c in self.camera_names if c not in images]
        if missing:
            raise ValueError(f"images: missing cameras {missing}; got {sorted(images)}")
        arrays = {"qpos": np.asarray(qpos, dtype=np.float32)}
        for c in self.camera_names:  # the policy's own first step, here: only input-sized frames cross the wire
            frame = resize_uint8(np.asarray(images[c], dtype=np.uint8), self.image_size)
            arrays[f"images/{c}"] = frame.permute(1, 2, 0).numpy()
        return self.client.request("predict", arrays).arrays["chunk"].astype(np.float64)

    def close(self) -> None:
        self.client.close()


def connect_policy(bundle: Path, address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                   temporal_ensemble_k: float | None = 0.01, query_every: int = 1) -> RemotePolicy:
    """The local bundle, verified, as a policy served by the server at `address`; the server is asked once here
    (`hello`), so a lost server or another bundle is refused before any robot moves."""
    # "meta": the verified weights are dropped at once; this side never runs the network.
    policy = RemotePolicy.from_bundle(bundle, device="meta", temporal_ensemble_k=temporal_ensemble_k,
                                      query_every=query_every)
    policy.client = PolicyClient(address, bundle_sha256(bundle, policy.manifest),
                                 (policy.chunk_size, len(policy.action_names)), timeout_s)
    info = policy.client.request("hello").info
    path = info.get("inference_path")
    policy.served_by = (f"{policy.client.address} (device {info.get('device', '?')}, backend {info.get('backend', '?')}"
                        + (f", {path})" if isinstance(path, str) else ")"))
    return policy
