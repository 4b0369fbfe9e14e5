"""`aloha import-hdf5` / `aloha export-hdf5`: move episodes between the store and the original ALOHA layout
(Mobile ALOHA's too: `/base_action` becomes the two last columns of 16-D actions, and is written back from them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from assets_store import StoreError, validate_name
from assets_store.hdf5 import export_hdf5, import_hdf5, refuse_existing_target
from assets_store.layout import episode_stem
from hardware.cli.common import StoreOption, console, err_console, fail, layout
from hardware.cli.common import resolve_episode


def register(app: typer.Typer) -> None:
    @app.command("import-hdf5")
    def import_cmd(
        paths: Annotated[list[Path], typer.Argument(help="ALOHA / Mobile ALOHA HDF5 episode files (episode_*.hdf5).")],
        session: Annotated[str, typer.Option(help="Session to import into (created if needed).")],
        fps: Annotated[float, typer.Option(help="Control rate the files were recorded at.")] = 50.0,
        robot: Annotated[Optional[str], typer.Option(help="Robot name to record (default: sim-aloha when the 'sim' attr is set, mobile-aloha with a "
                             "/base_action, else aloha).")] = None,
        jpeg_quality: Annotated[int, typer.Option(min=1, max=100)] = 90,
        store: StoreOption = None,
    ) -> None:
        """Convert original ALOHA/ACT HDF5 episodes into the store; bad files are reported and skipped."""
        try:
            validate_name(session, "session name")
        except StoreError as exc:
            fail(str(exc))
        lay = layout(store)
        files = sorted(paths)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("importing", total=len(files))
            try:
                report = import_hdf5(lay, session, files, fps=fps, robot=robot, jpeg_quality=jpeg_quality,
                                     on_file_done=lambda p: progress.advance(task))
            except StoreError as exc:  # refused before any file is read: e.g. --fps 0
                fail(str(exc))
        for src, dst in report.imported:
            console.print(f"imported {src} -> {dst}")
        for src, why in report.failed:
            err_console.print(f"[red]skipped[/] {src}: {why}")
        console.print(f"{len(report.imported)} imported, {len(report.failed)} skipped, session {session!r} in {lay.root}")
        if report.failed:
            raise typer.Exit(2 if report.imported else 1)

    @app.command("export-hdf5")
    def export_cmd(
        episodes: Annotated[list[str], typer.Argument(help="Episodes: path, SESSION/episode_NNNNNN.zarr or SESSION/N.")],
        out: Annotated[Path, typer.Option("--out", help="Output directory.")],
        force: Annotated[bool, typer.Option("--force", help="Replace existing episode_*.hdf5 files in --out.")] = False,
        store: StoreOption = None,
    ) -> None:
        """Write episodes in the original ALOHA HDF5 layout (for the original ACT code). Existing files in --out are
        never replaced without --force."""
        if out.exists() and not out.is_dir():
            fail(f"--out {out}: expected a directory, found a file")
        sources = [resolve_episode(store, ref) for ref in episodes]
        jobs = [(path, out / (episode_stem(path.name) + ".hdf5")) for path in sources]
        targets = [target for _, target in jobs]
        if len(set(targets)) != len(targets):
            fail(f"two of the episodes would be written to the same file in {out}; export them to different --out")
        try:  # every target checked before the first is written
            for target in targets:
                refuse_existing_target(target, force)
            out.mkdir(parents=True, exist_ok=True)
        except (StoreError, OSError) as exc:
            fail(str(exc))
        failed = []
        for path, target in jobs:  # one bad episode is reported, the others are still exported
            try:
                export_hdf5(path, target, force=force)
            except (StoreError, OSError) as exc:
                err_console.print(f"[bold red]error:[/] {exc}")
                failed.append(path)
                continue
            console.print(f"exported {path} -> {target}")
        if failed:
            fail(f"{len(failed)} of {len(jobs)} episode(s) not exported (see above)")
