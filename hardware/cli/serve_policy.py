"""`aloha serve-policy`: serve one verified policy bundle to `aloha rollout --policy-server` (hardware.policy_server)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Optional

import typer

from assets_store.errors import StoreError
from assets_store.layout import DEFAULT_MODEL_NAME
from hardware.cli.common import BackendOption, StoreOption, console, err_console, fail
from hardware.cli.rollout import resolve_policy
from hardware.policy_wire import DEFAULT_PORT

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def serving_device(device: str | None, backend: str, cuda_available: bool) -> str:
    """--device, else ONNX Runtime's cpu for --backend onnx, else cuda where there is one."""
    if device:
        return device
    return "cuda" if backend == "torch" and cuda_available else "cpu"


def serve_policy(
    policy: Annotated[str, typer.Option("--policy", help="Bundle directory, or 'champion' (the deployed one).")],
    name: Annotated[str, typer.Option("--name", help="Model name for --policy champion.")] = DEFAULT_MODEL_NAME,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one (printed).")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(
        "--host", help="Address to bind. Anyone who can reach it may query the policy: widen it on trusted networks only.")
    ] = "127.0.0.1",
    device: Annotated[Optional[str], typer.Option(
        "--device", help="Torch device (default: cuda where available, else cpu; --backend onnx: cpu).",
        show_default=False)] = None,
    backend: BackendOption = "torch",
    precision: Annotated[str, typer.Option(
        "--precision", help="'fp32', or 'bf16' (autocast; on a GPU faster only inside a CUDA graph; torch only).")
    ] = "fp32",
    store: StoreOption = None,
) -> None:
    """Serve a policy bundle (every sha256 verified) over ZeroMQ until interrupted (Ctrl-C or SIGTERM)."""
    try:
        from hardware.policy_server import PolicyServer, bundle_sha256
    except ImportError as exc:  # pyzmq is the `server` extra: the message says so
        fail(str(exc))
    import torch

    from model.policy import PRECISIONS
    from model.policy import Policy

    if precision not in PRECISIONS:
        fail(f"--precision {precision!r}: expected one of {list(PRECISIONS)}", 2)
    if backend == "onnx" and precision != "fp32":
        fail(f"--precision {precision}: --backend onnx runs fp32", 2)
    bundle = resolve_policy(store, policy, name)
    device = serving_device(device, backend, torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: no CUDA device on this machine", 2)
    try:  # the weights served are the bytes whose hashes matched the manifest
        pol = Policy.from_bundle(bundle, device=device, temporal_ensemble_k=None, backend=backend,
                                 precision=precision)  # type: ignore[arg-type]
        server = PolicyServer(pol, bundle_sha256(bundle, pol.manifest))
        server.warm_up()
    except (StoreError, ValueError, ImportError, RuntimeError) as exc:  # RuntimeError: a device torch cannot use
        fail(str(exc))
    try:
        address = server.bind(host, port)
    except Exception as exc:  # zmq.ZMQError: address in use, unknown host
        server.close()
        fail(f"could not bind {host}:{port}: {exc}")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if host not in LOOPBACK:
        console.print(f"[yellow]warning:[/] bound to {host}: anyone who reaches it can query the policy")
    console.print(f"serving policy {bundle} (manifest sha256 {server.bundle_hash}) on {address}, device {device}, "
                  f"{pol.inference_path}", soft_wrap=True)  # one line: tests read it
    try:
        server.serve(stop, on_refused=lambda why: err_console.print(f"[yellow]refused:[/] {why}"))
    finally:
        server.close()
    console.print(f"stopped after {server.requests} request(s), {server.refused} refused")


def register(app: typer.Typer) -> None:
    app.command("serve-policy")(serve_policy)
