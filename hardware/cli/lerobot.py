"""`aloha import-lerobot` / `aloha export-lerobot`: move episodes between the store and LeRobot's dataset format v3.0
(a local folder: nothing is fetched from a hub). The format itself lives in assets_store/lerobot.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from assets_store import StoreError
from assets_store.sessions import episode_dirs
from hardware.cli.common import StoreOption, check_writable, console, existing_layout, fail, layout, resolve_episode


def parse_episode_list(text: str) -> list[int]:
    """'0,3-5' -> [0, 3, 4, 5]: LeRobot episode indices, in the order given, each once."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, dash, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            raise ValueError(f"expected episode indices such as 0,3-5, got {text!r}") from None
        if first < 0 or last < first:
            raise ValueError(f"expected ascending ranges of indices >= 0, got {part!r}")
        out.extend(i for i in range(first, last + 1) if i not in out)
    return out


def missing_extra(exc: ImportError) -> str:
    return f"LeRobot datasets need PyAV and pyarrow ({exc}): pip install -e '.[lerobot]'"


def register(app: typer.Typer) -> None:
    @app.command("import-lerobot")
    def import_cmd(
        path: Annotated[Path, typer.Argument(help="A local LeRobot v3.0 dataset (meta/, data/, videos/).")],
        session: Annotated[str, typer.Option(help="New session to import into (an existing one is refused).")],
        episodes: Annotated[Optional[str], typer.Option(
            help="LeRobot episode indices to import, e.g. 0,3-5 (default: all).")] = None,
        robot: Annotated[Optional[str], typer.Option(
            help="Robot name to record (default: the dataset's robot_type).")] = None,
        jpeg_quality: Annotated[int, typer.Option(min=1, max=100)] = 90,
        store: StoreOption = None,
    ) -> None:
        """Convert a LeRobot v3.0 dataset into one finalized session; on any problem nothing is imported."""
        from assets_store.lerobot import import_lerobot

        try:
            chosen = parse_episode_list(episodes) if episodes is not None else None
        except ValueError as exc:
            fail(f"--episodes: {exc}", 2)
        lay = layout(store)
        try:
            check_writable(lay.session_dir(session), "store")
        except StoreError as exc:
            fail(f"--session: {exc}", 2)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("importing", total=len(chosen) if chosen else None)
            try:
                result = import_lerobot(lay, session, path, episodes=chosen, robot=robot, jpeg_quality=jpeg_quality,
                                        on_episode_done=lambda i: progress.advance(task))
            except (StoreError, OSError) as exc:
                fail(str(exc))
            except ImportError as exc:
                fail(missing_extra(exc))
        for index, episode in result.episodes:
            console.print(f"imported episode {index} -> {episode}")
        console.print(f"{len(result.episodes)} episode(s) imported into finalized session {session!r} in {lay.root}")

    @app.command("export-lerobot")
    def export_cmd(
        refs: Annotated[list[str], typer.Argument(
            help="Sessions (SESSION: all its episodes) and/or episodes (SESSION/N, or an episode directory).")],
        out: Annotated[Path, typer.Option("--out", help="Dataset directory to write (new or empty).")],
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export at --out (never another folder).")] = False,
        store: StoreOption = None,
    ) -> None:
        """Write store episodes as a LeRobot v3.0 dataset (parquet + MP4 + meta/) that LeRobot's tools can read."""
        from assets_store.lerobot import export_lerobot

        episodes = []
        for ref in refs:
            if "/" in ref or ref.endswith(".zarr"):  # an episode; a bare name is a session
                episodes.append(resolve_episode(store, ref))
                continue
            lay = existing_layout(store)
            try:
                found = [path for _, path in episode_dirs(lay.session_dir(ref))]
            except StoreError as exc:
                fail(str(exc))
            if not found:
                fail(f"no session {ref!r} with episodes in store {lay.root}")
            episodes.extend(found)
        try:
            written = export_lerobot(episodes, out, overwrite=overwrite)
        except (StoreError, OSError) as exc:
            fail(str(exc))
        except ImportError as exc:
            fail(missing_extra(exc))
        console.print(f"exported {len(episodes)} episode(s) -> {written}")
