"""`aloha ui`: the Dagster UI (`dagster dev`) on the store's instance (a local store, or an object-store root whose
Dagster and MLflow state stay on this machine)."""

from __future__ import annotations

import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional, Sequence

import typer

from assets_store import StoreError, StoreLayout
from hardware.cli.common import check_writable, console, fail

# What stops `aloha ui`: Ctrl-C, `kill PID`, and the terminal (or SSH session) going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# dagster dev stops its webserver and daemon within a few seconds; past this the whole group is killed.
GRACE_S = 20.0


def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Webserver port.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Bind address (loopback by default).")] = "127.0.0.1",
    store: Annotated[Optional[str], typer.Option(
        "--store", help="Store root, a path or an object-store URL such as s3://robot-data/aloha (default: "
                        "$ALOHA_STORE, else ./.aloha_store). With a URL, Dagster's and MLflow's state stay local: "
                        "$ALOHA_LOCAL_STORE, else ./.aloha_state/<URL>-<hash> ($DAGSTER_HOME if set).",
        show_default=False)] = None,
) -> None:
    """Start `dagster dev -w workspace.yaml` on the store's instance (SQLite, telemetry off). Ctrl-C, SIGTERM or
    SIGHUP stop it with its webserver and daemon."""
    from pipeline.instance import REPO_ROOT

    layout, cmd, env = ui_launch(store, host, port)
    if layout.data_url:
        console.print(f"Store: {layout.data_url}   (the pipeline's own files, Dagster and MLflow: {layout.root})")
    console.print(f"Dagster UI: [bold]http://{host}:{port}[/]   (DAGSTER_HOME={env['DAGSTER_HOME']})")
    console.print(f"MLflow UI:  aloha mlflow-ui{'' if store is None else ' --store ' + shlex.quote(store)}   (mlflow ui "
                  f"--backend-store-uri {layout.mlflow_tracking_uri} --host 127.0.0.1)")
    if not _loopback(host):
        console.print(f"[yellow]warning:[/] --host {host}: the Dagster UI has no authentication; anyone who reaches "
                      "this port can read the store's runs and launch jobs (put it behind TLS and authentication, "
                      "see docs/SCALE_OUT.md)")
    raise typer.Exit(run_process_group(cmd, env=env, cwd=str(REPO_ROOT)))


def ui_launch(store: Optional[str], host: str, port: int) -> tuple[StoreLayout, list[str], dict[str, str]]:
    """What `aloha ui` runs, prepared and checked (a bad root or an unwritable state directory: one error line):
    the layout, the `dagster dev` command and its environment (`pipeline.instance.dagster_env`)."""
    from pipeline.instance import dagster_env, dagster_home, workspace_file

    try:
        layout = StoreLayout.of_root(store)
    except StoreError as exc:
        fail(str(exc), 2)
    check_writable(layout.root, "local state" if layout.data_url else "store")  # reports, runs, MLflow's SQLite
    check_writable(dagster_home(layout), "DAGSTER_HOME")
    env = dagster_env(layout)
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster if dagster.exists() else "dagster"), "dev", "-w", str(workspace_file(layout)), "-h", host,
           "-p", str(port)]
    return layout, cmd, env


def mlflow_ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Webserver port.")] = 5000,
    host: Annotated[str, typer.Option("--host", help="Bind address (loopback by default).")] = "127.0.0.1",
    store: Annotated[Optional[str], typer.Option(
        "--store", help="Store root, a path or an object-store URL, as for `aloha ui` (default: $ALOHA_STORE, else "
                        "./.aloha_store). With a URL, MLflow's database is the local state folder's.",
        show_default=False)] = None,
) -> None:
    """Start `mlflow ui` on the store's MLflow database (SQLite): the one the pipeline logs to, for a local store and
    for an object-store root alike. Ctrl-C, SIGTERM or SIGHUP stop it."""
    from pipeline.instance import REPO_ROOT

    layout, cmd, env = mlflow_ui_launch(store, host, port)
    console.print(f"MLflow UI: [bold]http://{host}:{port}[/]   (tracking URI {layout.mlflow_tracking_uri})")
    if not _loopback(host):
        console.print(f"[yellow]warning:[/] --host {host}: the MLflow UI has no authentication; anyone who reaches "
                      "this port can read and delete the store's runs and models")
    raise typer.Exit(run_process_group(cmd, env=env, cwd=str(REPO_ROOT)))


def mlflow_ui_launch(store: Optional[str], host: str, port: int) -> tuple[StoreLayout, list[str], dict[str, str]]:
    """What `aloha mlflow-ui` runs: the layout (a URL root resolves to its local state folder, where the pipeline's
    MLflow database is) and the `mlflow ui` command."""
    try:
        layout = StoreLayout.of_root(store)
    except StoreError as exc:
        fail(str(exc), 2)
    if not layout.mlflow_db.is_file():
        fail(f"{layout.mlflow_db}: no MLflow database yet (run the pipeline on this store first, e.g. `make demo`)", 1)
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow if mlflow.exists() else "mlflow"), "ui", "--backend-store-uri", layout.mlflow_tracking_uri,
           "--host", host, "--port", str(port)]
    return layout, cmd, dict(os.environ)


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


class _StopRequested(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def run_process_group(cmd: Sequence[str], *, env: dict[str, str], cwd: str, grace_s: float = GRACE_S) -> int:
    """Run `cmd` as the leader of its own session until it exits or this process gets a stop signal, then stop its
    whole process group (dagster dev, the webserver, the daemon, code servers): SIGTERM, and SIGKILL after `grace_s`
    (or at a second signal). Nothing it started outlives it. Returns the exit code for the caller: the child's own,
    0 after Ctrl-C, 128 + signal after SIGTERM or SIGHUP."""

    def request_stop(signum: int, _frame) -> None:
        raise _StopRequested(signum)

    previous = {s: signal.signal(s, request_stop) for s in STOP_SIGNALS}
    proc = None
    try:
        # Blocked while the child is created, so a signal never leaves a started child without its Popen.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, start_new_session=True, preexec_fn=_child_signals)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        code = proc.wait()
        return code if code > 0 else 0
    except _StopRequested as stop:
        if proc is not None:
            _stop_group(proc, grace_s)
        return 0 if stop.signum == signal.SIGINT else 128 + stop.signum
    finally:
        if proc is not None:
            _kill_group(proc.pid)  # whatever the leader left behind
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    for s in STOP_SIGNALS:  # a second Ctrl-C (or kill) while stopping: no more waiting
        signal.signal(s, lambda *_: _signal_group(proc.pid, signal.SIGKILL))
    _signal_group(proc.pid, signal.SIGTERM)  # dagster dev shuts its services down on SIGTERM, as on Ctrl-C
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the group; False when nobody is left in it."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pgid: int, wait_s: float = 5.0) -> None:
    """SIGKILL what is left of the group and wait (bounded) until it is gone: the port is free when we return.
    (A killed process not yet reaped by its new parent still counts; hence the bound.)"""
    deadline = time.monotonic() + wait_s
    while _signal_group(pgid, signal.SIGKILL) and time.monotonic() < deadline:
        time.sleep(0.05)


def _child_signals() -> None:
    """The child starts with default stop signals, unblocked, whatever its parent inherited or set."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
    app.command("mlflow-ui")(mlflow_ui)
