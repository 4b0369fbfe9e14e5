"""`aloha ui`: the Dagster UI (`dagster dev`) on the store's instance."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from assets_store import StoreLayout
from hardware.cli.common import StoreOption as StoreOpt, console


def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Webserver port.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Bind address (loopback by default).")] = "127.0.0.1",
    store: StoreOpt = None,
) -> None:
    """Start `dagster dev -w workspace.yaml` on the store's instance (SQLite, telemetry off). Ctrl-C stops it."""
    from pipeline.instance import REPO_ROOT, dagster_env, workspace_file

    layout = StoreLayout.at(store)
    env = dagster_env(layout)
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster if dagster.exists() else "dagster"), "dev", "-w", str(workspace_file(layout)), "-h", host, "-p", str(port)]
    console.print(f"Dagster UI: [bold]http://{host}:{port}[/]   (DAGSTER_HOME={env['DAGSTER_HOME']})")
    console.print(f"MLflow UI:  make mlflow-ui   or   mlflow ui --backend-store-uri {layout.mlflow_tracking_uri} --host 127.0.0.1")
    # dagster dev ignores SIGINT when its parent started it with SIGINT ignored: restore the default in the child.
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO_ROOT), preexec_fn=_default_signals)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            code = proc.wait()
    raise typer.Exit(code if code and code > 0 else 0)


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
