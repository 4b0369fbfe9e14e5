"""Options and helpers shared by every `aloha` verb."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Iterable, Optional

import typer
from rich.console import Console

from assets_store import EpisodeError, EpisodeReader, StoreError, StoreLayout, is_session_finalized
from assets_store.schema import parse_hxw
from hardware.registry import leader_arm_robots, robots_help

console = Console()
err_console = Console(stderr=True)

StoreOption = Annotated[
    Optional[str],  # not Path: it would fold `s3://b/x` into `s3:/b/x`, a local folder, instead of refusing the URL
    typer.Option("--store", help="Store root (default: $ALOHA_STORE, else ./.aloha_store).", show_default=False),
]
# `aloha rollout` and `aloha serve-policy` run a policy with the same backends
BackendOption = Annotated[str, typer.Option(
    "--backend", help="Inference backend: 'torch', or 'onnx' (ONNX Runtime on the CPU; needs the onnx extra).")]


# `aloha teleop` and `aloha calibrate`: the robots driven by leader arms.
LeaderArmsRobotOption = Annotated[str, typer.Option("--robot", help=robots_help(leader_arm_robots()))]
LeaderArmsConfigOption = Annotated[
    Optional[Path], typer.Option("--config", help="Robot configuration file (default: hardware/aloha/configs/aloha.yaml).")
]


def layout(store: Optional[Path]) -> StoreLayout:
    try:
        return StoreLayout.at(store)
    except StoreError as exc:  # an object-store URL where a local store is needed
        fail(str(exc), 2)


def fail(message: str, code: int = 1) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def existing_layout(store: Optional[Path]) -> StoreLayout:
    """The store of a verb that only reads it: a root that does not exist is an error, not an empty store."""
    lay = layout(store)
    if not lay.root.exists():
        fail(f"store {lay.root} does not exist (give --store, or set $ALOHA_STORE)")
    if not lay.root.is_dir():
        fail(f"store {lay.root} is not a directory")
    return lay


def os_error_text(exc: OSError) -> str:
    """'No space left on device: /path/file': what failed and where, for one error line."""
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")


def check_writable(path: Path, what: str) -> None:
    """Fail before any work when `path` (a directory to write in, perhaps not made yet) cannot be created or written:
    its nearest existing ancestor must be a writable directory. (As root, access() ignores permission bits.)"""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        fail(f"{what} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{what} {path}: {existing} is not writable")


def session_to_record(lay: StoreLayout, session: str) -> Path:
    """The directory a recording verb writes a session into, checked before any work: a valid name (exit 2), a
    writable store, and not a session that was already finalized (it is immutable)."""
    try:
        session_dir = lay.session_dir(session)
    except StoreError as exc:
        fail(f"--session: {exc}", 2)
    check_writable(session_dir, "store")
    if is_session_finalized(session_dir):
        fail(f"--session: {session!r} is finalized (immutable): record into a new session")
    return session_dir


def check_outputs(paths: Iterable[Path], *, overwrite: bool, flag: str = "--overwrite") -> None:
    """Fail before any work when writing `paths` would replace something the user has: an existing file needs
    `flag`, a directory in a file's place is never replaced. Their directories must be creatable."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            fail(f"{path}: is a directory; expected the path of a file to write")
        if path.exists() and not overwrite:
            fail(f"{path}: exists; pass {flag} to replace it (nothing was written)")
        check_writable(path.parent, "output directory")


def resolve_episode(store: Optional[Path], ref: str) -> Path:
    """An episode given as a directory, SESSION/episode_000003.zarr, or SESSION/3; anything else is one error line."""
    path = Path(ref)
    if path.is_dir():
        return path.resolve()
    lay = layout(store)
    try:
        found = lay.find_episode(ref)
    except StoreError as exc:
        fail(str(exc))
    if found is not None:
        return found
    fail(f"no episode {ref!r} (give a directory, SESSION/episode_NNNNNN.zarr or SESSION/N) in store {lay.root}")


def open_episode(store: Optional[Path], ref: str) -> EpisodeReader:
    try:
        return EpisodeReader(resolve_episode(store, ref))
    except EpisodeError as exc:
        fail(str(exc))


EpisodeArg = Annotated[
    str, typer.Argument(help="Episode directory, or SESSION/INDEX (e.g. demo/0) or SESSION/episode_000000.zarr.")
]


def parse_resolution(text: Optional[str]) -> tuple[int, int] | None:
    """'480x640' -> (480, 640): height first, as in the image arrays."""
    if not text:
        return None
    try:
        return parse_hxw(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_cameras(values: Optional[list[str]]) -> list[str] | None:
    """Repeatable and/or comma-separated camera names; 'all' = every camera the robot has; 'none' = no cameras."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if names == ["none"]:
        return []
    return names or None
