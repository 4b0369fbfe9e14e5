"""`aloha sync SESSION --to URL`: upload a finalized local session to an object-store root, its marker last."""

from __future__ import annotations

from typing import Annotated

import typer

from assets_store.errors import StoreError
from assets_store.names import validate_name
from assets_store.layout import store_root_url
from assets_store.remote import RemoteStore, remote_errors, unreachable_text, url_scheme
from assets_store.sync import sync_session
from hardware.cli.common import StoreOption, console, existing_layout, fail, os_error_text


def sync(
    session: Annotated[str, typer.Argument(help="A finalized session of the local store.")],
    to: Annotated[str, typer.Option("--to", help="The object-store root, e.g. s3://robot-data/aloha (or memory://, "
                                                 "file://).")],
    store: StoreOption = None,
) -> None:
    """Upload every file of a finalized session, verify each one's sha256 in the store, then upload the finalized
    marker. Run again after an interruption: files already there with the same hash are not uploaded again."""
    if url_scheme(to) is None:
        fail(f"--to must be a URL (s3://bucket/prefix, gs://..., az://..., file:///path, memory://...), got {to!r}", 2)
    if store is None and store_root_url() is not None:  # $ALOHA_STORE names the bucket; the session is local
        fail(f"$ALOHA_STORE is {store_root_url()}, an object store; sync reads the session from a local store: "
             "give --store <local store>", 2)
    lay = existing_layout(store)
    try:
        validate_name(session, "session name")
        remote = RemoteStore.at(to)
        with console.status(f"syncing {session} to {to}"):
            report = sync_session(lay, session, remote)
    except StoreError as exc:
        fail(str(exc))
    except remote_errors() as exc:  # no network, no endpoint, no credentials: nothing is marked finalized
        fail(f"{unreachable_text(to, exc)}; run the sync again to resume")
    except OSError as exc:  # the object store refused or the network went away: nothing is marked finalized
        fail(f"sync of {session} to {to} stopped: {os_error_text(exc)}; run it again to resume")
    console.print(
        f"[green]ok[/] {report.url}: {len(report.uploaded)} files uploaded ({report.bytes_uploaded} bytes), "
        f"{len(report.skipped)} already there; every sha256 verified, finalized marker last"
        + ("; annotation log uploaded" if report.annotations_uploaded else "")
    )


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)
