"""`aloha episodes list|show|doctor`: look at the store without decoding frames; doctor runs crash recovery."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from assets_store import EpisodeReader, SessionIndex, StoreError, list_sessions
from assets_store.recovery import sweep_store
from assets_store.sessions import is_session_finalized
from hardware.cli.common import StoreOption, console, fail, layout, resolve_episode


def register(app: typer.Typer) -> None:
    episodes = typer.Typer(help="Inspect and repair the episode store.", no_args_is_help=True)
    app.add_typer(episodes, name="episodes")

    @episodes.command("list")
    def list_cmd(
        session: Annotated[Optional[str], typer.Option(help="Only this session.")] = None,
        store: StoreOption = None,
    ) -> None:
        """List sessions and their episodes (lengths, fps, cameras, dropped frames)."""
        lay = layout(store)
        sessions = [session] if session else list_sessions(lay)
        if not sessions:
            console.print(f"No sessions in {lay.raw_dir}")
            return
        table = Table(title=f"Episodes in {lay.root}")
        for col in ("session", "episode", "status", "steps", "seconds", "fps", "cameras", "dropped", "late"):
            table.add_column(col, justify="right" if col in ("steps", "seconds", "fps", "dropped", "late") else "left")
        try:
            for s in sessions:
                idx = SessionIndex(lay, s)
                label = s + (" (finalized)" if idx.finalized else "")
                for e in idx.episodes():
                    counters = e.attrs.get("counters") or {}
                    table.add_row(
                        label, e.name, e.attrs.get("status", "ok"), str(e.num_steps), f"{e.duration_s:.1f}", f"{e.fps:g}", ",".join(e.cameras),
                        str(counters.get("dropped_frames", 0)), str(counters.get("late_steps", 0)),
                    )
                    label = ""
        except StoreError as exc:
            fail(str(exc))
        console.print(table)

    @episodes.command("show")
    def show_cmd(
        episode: Annotated[str, typer.Argument(help="Path, SESSION/episode_NNNNNN.zarr or SESSION/N.")],
        store: StoreOption = None,
    ) -> None:
        """Show one episode: length, fps, joints, cameras, timing and dropped-frame counters."""
        path = resolve_episode(store, episode)
        try:
            r = EpisodeReader(path)
        except StoreError as exc:
            fail(str(exc))
        a = r.attrs
        table = Table(title=str(path), show_header=False)
        dt = r.timestamps[1:] - r.timestamps[:-1] if len(r) > 1 else None
        rows = [
            ("schema", f"{a['schema']} v{a['schema_version']}"),
            ("status", a.get("status", "ok") + (f": {a['failure']}" if a.get("failure") else "")),
            ("robot / task", f"{r.info.robot} / {r.info.task or '-'}"),
            ("session / operator", f"{r.info.session} / {r.info.operator or '-'}"),
            ("steps", f"{len(r)}  ({len(r) / r.fps:.2f} s at {r.fps:g} Hz)"),
            ("measured rate", f"{1.0 / dt.mean():.2f} Hz (max gap {dt.max() * 1000:.1f} ms)" if dt is not None else "-"),
            ("joints", f"{r.info.num_joints}: {', '.join(r.info.joint_names)}"),
            ("action dim", str(r.info.action_dim)),
            ("qvel / effort", f"{'yes' if r.qvel is not None else 'no'} / {'yes' if r.effort is not None else 'no'}"),
            ("jpeg quality", str(a.get("jpeg_quality"))),
        ]
        for cam in r.info.cameras:
            rows.append((f"camera {cam.name}", f"{cam.height}x{cam.width} serial={cam.serial or '-'} "
                                               f"frame-number gaps={r.dropped_frames[cam.name]}"))
        for k, v in (a.get("counters") or {}).items():
            rows.append((f"counter {k}", str(v)))
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)

    @episodes.command("doctor")
    def doctor_cmd(store: StoreOption = None) -> None:
        """Clean up after crashed writers: recover finished episodes, remove partial ones. Reports each action."""
        lay = layout(store)
        actions = sweep_store(lay)
        if not actions:
            console.print(f"Store {lay.root}: nothing to repair.")
        for action in actions:
            console.print(str(action))
        for s in list_sessions(lay):
            if not is_session_finalized(lay.session_dir(s)):
                console.print(f"note: session {s!r} is not finalized (still recording, or interrupted)")
