"""`aloha pull`: fetch the deployed policy bundle (or a registered version), every sha256 verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from assets_store import StoreLayout
from assets_store.layout import CHAMPION
from hardware.cli.common import StoreOption as StoreOpt, console, fail


def pull(
    to: Annotated[Path, typer.Option("--to", help="Destination directory (replaced atomically).")],
    name: Annotated[str, typer.Option("--name", help="Registered model name.")] = "aloha-act",
    version: Annotated[str, typer.Option("--version", help=f"A version number, or '{CHAMPION}'.")] = CHAMPION,
    source: Annotated[str, typer.Option("--from", help="deploy (<store>/deploy) or mlflow (the registry).")] = "deploy",
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow URI (default: the store's).")] = None,
    store: StoreOpt = None,
) -> None:
    """Fetch a policy bundle and verify the sha256 of every file; a mismatch is refused."""
    from assets_store.errors import StoreError
    from pipeline.pull import pull_bundle

    if source not in ("deploy", "mlflow"):
        fail(f"--from must be 'deploy' or 'mlflow', got {source!r}", 2)
    if version != CHAMPION and not version.isdigit():
        fail(f"--version must be a number or '{CHAMPION}', got {version!r}", 2)
    layout = StoreLayout.at(store)
    try:
        with console.status(f"pulling {name}@{version} from {source}"):
            manifest = pull_bundle(layout, to, name=name, version=version, source=source, tracking_uri=tracking_uri)
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"{name} {version} -> {to}", show_lines=False)
    table.add_column("file")
    table.add_column("sha256 (verified)")
    for fname, digest in sorted(manifest["files"].items()):
        table.add_row(fname, digest[:16] + "…")
    console.print(table)
    metrics = manifest.get("metrics") or {}
    console.print(
        f"[green]ok[/] dataset {manifest.get('dataset_id') or '?'}, MLflow run {manifest.get('mlflow_run_id') or '?'}"
        + (", " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))) if metrics else "")
    )


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
