"""`aloha pull`: fetch the deployed policy bundle (or a registered version), every sha256 verified."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from assets_store.layout import CHAMPION, DEFAULT_MODEL_NAME, store_root_url
from assets_store.remote import RemoteStore, open_store, remote_errors, unreachable_text
from hardware.cli.common import console, fail, os_error_text
from pipeline.promotion import describe_record


def pull(
    to: Annotated[Path, typer.Option("--to", help="Destination directory: new or empty (or a bundle pulled before, "
                                                  "with --force); written atomically.")],
    name: Annotated[str, typer.Option("--name", help="Registered model name.")] = DEFAULT_MODEL_NAME,
    version: Annotated[str, typer.Option("--version", help=f"A version number, or '{CHAMPION}'.")] = CHAMPION,
    source: Annotated[str, typer.Option("--from", help="deploy (<store>/deploy) or mlflow (the registry).")] = "deploy",
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow URI (default: the store's).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a bundle pulled to --to before.")] = False,
    store: Annotated[Optional[str], typer.Option(
        "--store", help="Store root, a path or an object-store URL such as s3://robot-data/aloha (default: "
                        "$ALOHA_STORE, else ./.aloha_store).", show_default=False)] = None,
) -> None:
    """Fetch a policy bundle and verify the sha256 of every file; a mismatch is refused. Never removes a file it
    did not write: a --to holding anything but an earlier bundle is refused."""
    from assets_store.errors import StoreError
    from pipeline.pull import pull_bundle

    if source not in ("deploy", "mlflow"):
        fail(f"--from must be 'deploy' or 'mlflow', got {source!r}", 2)
    if version != CHAMPION and not version.isdigit():
        fail(f"--version must be a number or '{CHAMPION}', got {version!r}", 2)
    try:
        layout = open_store(store)
        with console.status(f"pulling {name}@{version} from {source}"):
            manifest = pull_bundle(layout, to, name=name, version=version, source=source, tracking_uri=tracking_uri,
                                   force=force)
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    except remote_errors() as exc:  # no network, no endpoint, no credentials: nothing was written
        fail(f"{unreachable_text(store_root_url(store) or str(store), exc)}; {to} is unchanged")
    except OSError as exc:  # a full disk, a read-only or missing parent: pull_bundle left `to` as it was
        if isinstance(layout, RemoteStore) and not _local_write_error(exc, Path(to).resolve()):
            fail(f"could not read {layout.url}: {os_error_text(exc)}; {to} is unchanged")
        fail(f"could not write {to}: {os_error_text(exc)}; {to} is unchanged")
    table = Table(title=f"{name} {version} -> {to}", show_lines=False)
    table.add_column("file")
    table.add_column("sha256 (verified)")
    for fname, digest in sorted(manifest["files"].items()):
        table.add_row(fname, digest[:16] + "…")
    console.print(table)
    promotion = manifest.get("promotion")
    if manifest.get("promotion_mismatch"):
        console.print(f"[yellow]warning:[/] {manifest['promotion_mismatch']}")
    console.print("promoted on: " + (describe_record(promotion) if promotion else
                                     "unknown (the record does not describe this bundle)"
                                     if manifest.get("promotion_mismatch") else
                                     "unknown (deployed before promotion records were kept)"))
    metrics = manifest.get("metrics") or {}
    console.print(
        f"[green]ok[/] dataset {manifest.get('dataset_id') or '?'}, MLflow run {manifest.get('mlflow_run_id') or '?'}"
        + (", " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))) if metrics else "")
    )


def _local_write_error(exc: OSError, dest: Path) -> bool:
    """Whether `exc` came from writing on this machine (the download's temporary directory or `dest`), not from
    reading the object store: a full or read-only disk, or a local path under either."""
    if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
        return True
    name = Path(str(exc.filename)) if exc.filename else None
    return name is not None and name.is_absolute() and any(
        name.is_relative_to(d) for d in (dest.parent, Path(tempfile.gettempdir())))


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
