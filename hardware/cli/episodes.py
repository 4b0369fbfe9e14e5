"""`aloha episodes list|show|check|doctor|label|exclude|include`: look at the store, check a session the way the
pipeline will, run crash recovery, and curate episodes after recording (an append-only annotation log beside the
session; datasets honour it). Every bad episode or directory is a row with its error; the rest are still shown."""

from __future__ import annotations

import getpass
import os
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from assets_store import EpisodeError, EpisodeReader, StoreError, list_sessions, validate_name
from assets_store.annotations import LABELS, SessionAnnotations, annotate, read_annotations
from assets_store.checks import CheckSettings
from assets_store.episode_report import check_entry
from assets_store.layout import parse_episode_ref
from assets_store.rollouts import effective_label, is_rollout
from assets_store.recovery import sweep_store
from assets_store.sessions import EpisodeSummary, foreign_session_dirs, is_session_finalized, session_entries
from hardware.cli.common import StoreOption, console, existing_layout, fail, os_error_text, resolve_episode

LIST_COLUMNS = ("session", "episode", "status", "steps", "seconds", "fps", "cameras", "dropped", "late", "label",
                "excluded")
NUMERIC = ("steps", "seconds", "fps", "dropped", "late")

ByOption = Annotated[Optional[str], typer.Option("--by", help="Who annotates (default: $USER).", show_default=False)]


def _session_name(session: str) -> str:
    try:
        return validate_name(session, "session name")
    except StoreError as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    episodes = typer.Typer(help="Inspect, check and repair the episode store.", no_args_is_help=True)
    app.add_typer(episodes, name="episodes")

    @episodes.command("list")
    def list_cmd(
        session: Annotated[Optional[str], typer.Option(help="Only this session.")] = None,
        store: StoreOption = None,
    ) -> None:
        """List sessions and their episodes (lengths, fps, cameras, dropped frames); bad ones with their error."""
        lay = existing_layout(store)
        sessions = [_session_name(session)] if session else list_sessions(lay)
        foreign = [] if session else foreign_session_dirs(lay)
        if not sessions and not foreign:
            console.print(f"No sessions in {lay.raw_dir}")
            return
        table = Table(title=f"Episodes in {lay.root}")
        for col in LIST_COLUMNS:
            table.add_column(col, justify="right" if col in NUMERIC else "left")
        problems = Table(title="Problems (not read further)", title_justify="left")
        for col in ("session", "episode", "error"):
            problems.add_column(col, overflow="fold")

        def problem_row(label: str, session: str, name: str, error: str) -> None:
            table.add_row(label, name, "[red]error[/]", *[""] * (len(LIST_COLUMNS) - 3))
            problems.add_row(session, name, escape(error))

        for s in sessions:
            label = s + (" (finalized)" if is_session_finalized(lay.session_dir(s)) else "")
            try:
                notes = read_annotations(lay, s)
            except StoreError as exc:
                notes = SessionAnnotations(lay.annotations_path(s))
                problems.add_row(s, "", escape(str(exc)))
            for problem in notes.problems:  # one bad log line; the rest of the log is still shown
                problems.add_row(s, "", escape(problem))
            try:
                entries = session_entries(lay, s, deep=False)  # deep (every file) is for check and doctor
            except StoreError as exc:
                problem_row(label, s, "", str(exc))
                continue
            for entry in entries:
                try:
                    if entry.problem:
                        raise EpisodeError(entry.path, "episode", entry.problem)
                    e = EpisodeSummary.of(entry.path)
                except EpisodeError as exc:
                    problem_row(label, s, entry.name, f"{exc.field}: {exc.problem}")
                else:
                    table.add_row(
                        label, e.name, escape(e.header.status), str(e.num_steps), f"{e.duration_s:.1f}", f"{e.fps:g}",
                        ",".join(e.cameras), str(e.dropped_frames), str(e.header.count("late_steps")),
                        _label_cell(e.attrs, notes.of(e.name).label), escape(notes.of(e.name).excluded or ""),
                    )
                label = ""
        for path, why in foreign:
            problem_row(path.name, path.name, "", f"not a session: {why}")
        console.print(table)
        if problems.row_count:
            console.print(problems)
            console.print("`aloha episodes check SESSION` runs every check on every episode of a session")

    @episodes.command("show")
    def show_cmd(
        episode: Annotated[str, typer.Argument(help="Path, SESSION/episode_NNNNNN.zarr or SESSION/N.")],
        store: StoreOption = None,
    ) -> None:
        """Show one episode: length, fps, joints, cameras, timing and dropped-frame counters."""
        path = resolve_episode(store, episode)
        try:
            r = EpisodeReader(path)
            dropped = r.dropped_frames
        except StoreError as exc:
            fail(str(exc))
        a, h = r.attrs, r.header
        table = Table(title=str(path), show_header=False)
        dt = r.timestamps[1:] - r.timestamps[:-1] if len(r) > 1 else None
        rows = [
            ("schema", f"{a['schema']} v{a['schema_version']}"),
            ("status", h.status + (f": {a['failure']}" if a.get("failure") else "")),
            ("robot / task", f"{r.info.robot} / {r.info.task or '-'}"),
            ("session / operator", f"{r.info.session} / {r.info.operator or '-'}"),
            ("steps", f"{len(r)}  ({len(r) / r.fps:.2f} s at {r.fps:g} Hz)"),
            ("measured rate", _rate(dt)),
            ("joints", f"{r.info.num_joints}: {', '.join(r.info.joint_names)}"),
            ("action dim", str(r.info.action_dim)),
            ("qvel / effort", f"{'yes' if r.qvel is not None else 'no'} / {'yes' if r.effort is not None else 'no'}"),
            ("jpeg quality", str(a.get("jpeg_quality"))),
        ]
        for cam in r.info.cameras:
            rows.append((f"camera {cam.name}", f"{cam.height}x{cam.width} serial={cam.serial or '-'} "
                                               f"frame-number gaps={dropped[cam.name]}"))
        for k, v in h.counters.items():
            rows.append((f"counter {k}", str(v)))
        for k, v in rows:
            table.add_row(escape(k), escape(v))
        console.print(table)

    @episodes.command("check")
    def check_cmd(
        session: Annotated[str, typer.Argument(help="The session to check (finalized or still being recorded).")],
        store: StoreOption = None,
    ) -> None:
        """Run the pipeline's per-episode checks on a session, without Dagster: one line per episode and check.

        Exit status 1 when any episode fails (the pipeline would quarantine it).
        """
        lay = existing_layout(store)
        sdir = lay.session_dir(_session_name(session))
        if not sdir.is_dir():
            fail(f"no session {session!r} in store {lay.root}")
        try:
            entries = session_entries(lay, session)
        except StoreError as exc:
            fail(str(exc))
        if not entries:
            fail(f"session {session!r} has no episodes")
        settings = CheckSettings()
        failed = []
        for entry in entries:
            report = check_entry(session, entry, settings)
            for name, result in report.checks.items():
                mark = "[green]ok  [/]" if result["passed"] else "[red]FAIL[/]"
                console.print(f"{entry.name}  {name:<19} {mark}  {escape(result['detail'])}", soft_wrap=True)
            if not report.passed:
                failed.append(entry.name)
        verdict = f"{len(failed)} of {len(entries)} episodes fail: {', '.join(failed)}" if failed else "every episode passes"
        console.print(f"session {session!r}: {len(entries)} episodes checked, {verdict}")
        if failed:
            raise typer.Exit(1)

    @episodes.command("label")
    def label_cmd(
        episode: Annotated[str, typer.Argument(help="SESSION/N or SESSION/episode_NNNNNN.zarr.")],
        label: Annotated[str, typer.Argument(help=f"One of: {', '.join(LABELS)}.", show_default=False)],
        by: ByOption = None,
        store: StoreOption = None,
    ) -> None:
        """Label an episode success or failure (datasets leave failures out unless their run keeps them)."""
        if label not in LABELS:
            fail(f"label: expected one of {', '.join(LABELS)}, got {label!r}")
        _annotate(store, episode, "label", by, label=label)

    @episodes.command("exclude")
    def exclude_cmd(
        episode: Annotated[str, typer.Argument(help="SESSION/N or SESSION/episode_NNNNNN.zarr.")],
        reason: Annotated[str, typer.Option("--reason", help="Why it is left out of datasets (required).")] = "",
        by: ByOption = None,
        store: StoreOption = None,
    ) -> None:
        """Leave an episode out of every dataset built from now on (`include` undoes it)."""
        if not reason.strip():
            fail("--reason: expected why the episode is excluded (non-empty text)")
        _annotate(store, episode, "exclude", by, reason=reason)

    @episodes.command("include")
    def include_cmd(
        episode: Annotated[str, typer.Argument(help="SESSION/N or SESSION/episode_NNNNNN.zarr.")],
        by: ByOption = None,
        store: StoreOption = None,
    ) -> None:
        """Undo an exclusion: datasets built from now on take the episode again (its label still applies)."""
        _annotate(store, episode, "include", by)

    @episodes.command("doctor")
    def doctor_cmd(store: StoreOption = None) -> None:
        """Clean up after crashed writers: recover finished episodes, remove partial ones. Reports each action, and
        every problem it will not repair (a finalized session is never changed)."""
        lay = existing_layout(store)
        lines = [str(action) for action in sweep_store(lay)]
        for path, why in foreign_session_dirs(lay):
            lines.append(f"skipped: {path} (not a session: {why})")
        for s in list_sessions(lay):
            try:
                entries = session_entries(lay, s)
            except StoreError as exc:
                lines.append(f"problem: {exc}")
                continue
            lines += [f"problem: {e.path}: {e.problem}" for e in entries if e.problem]
        if not lines:
            console.print(f"Store {lay.root}: nothing to repair.")
        for line in lines:
            console.print(escape(line), soft_wrap=True)
        for s in list_sessions(lay):
            if not is_session_finalized(lay.session_dir(s)):
                console.print(f"note: session {s!r} is not finalized (still recording, or interrupted)")


def _annotate(store, ref: str, action: str, by: Optional[str], **what) -> None:
    """Append one annotation for an existing episode; a bad reference or field is one error line, nothing written."""
    lay = existing_layout(store)
    parsed = parse_episode_ref(ref)
    if parsed is None:
        fail(f"episode {ref!r}: expected SESSION/N or SESSION/episode_NNNNNN.zarr")
    session, index = parsed
    try:
        found = lay.find_episode(ref)
    except StoreError as exc:
        fail(str(exc))
    if found is None:
        fail(f"no episode {ref!r} in store {lay.root}")
    who = by if by is not None else (os.environ.get("USER") or _login_name())
    try:
        entry = annotate(lay, session, index, action, by=who, **what)
    except StoreError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"annotation log {lay.annotations_path(session)}: {os_error_text(exc)}")
    detail = entry.label or (f"excluded: {entry.reason}" if entry.reason else "included")
    console.print(f"{escape(session)}/{entry.episode}: {escape(detail)} (by {escape(entry.by)}, logged in "
                  f"{escape(str(lay.annotations_path(session)))})", soft_wrap=True)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no $USER, $LOGNAME nor passwd entry: `--by` is then required
        return ""


def _rate(dt) -> str:
    if dt is None:
        return "-"
    if not (dt > 0).all():
        return "timestamps not strictly increasing"
    return f"{1.0 / dt.mean():.2f} Hz (max gap {dt.max() * 1000:.1f} ms)"


def _label_cell(attrs: dict, annotated: str | None) -> str:
    """The episode's label as datasets and the real evaluation see it; a rollout says so."""
    if not is_rollout(attrs):
        return annotated or ""
    label, _ = effective_label(attrs, annotated)
    return f"rollout: {label or 'unlabelled'}"
