"""`aloha record`: record N episodes of a robot driven by its teleoperator (leader arms or a scripted demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assets_store.errors import StoreError
from hardware.cli.common import (
    StoreOption, console, fail, layout as store_layout, os_error_text, parse_cameras, parse_resolution, session_to_record,
)
from hardware.interfaces import RobotError
from hardware.registry import episode_len as default_episode_len, robots_help, task_of


def record(
    robot: Annotated[str, typer.Option("--robot", help=robots_help())],
    session: Annotated[str, typer.Option("--session", help="Session name; an unfinalized session is resumed.")],
    episodes: Annotated[int, typer.Option("--episodes", "-n", min=1, help="Episodes to record in this run.")] = 1,
    episode_len: Annotated[Optional[int], typer.Option(
        "--episode-len", min=1, help="Control steps per episode (default: the robot's: 400, mobile sim 650).")] = None,
    cameras: Annotated[
        Optional[list[str]], typer.Option("--cameras", help="Camera names (repeat or comma-separate; 'all'; 'none').")
    ] = None,
    resolution: Annotated[Optional[str], typer.Option("--resolution", help="Image size HxW, e.g. 480x640.")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", min=0, help="Simulator: episode i uses seed + i (covering: the seeds are drawn from seed upwards). "
        "Default: seeds no episode of this robot in the store has used (printed).")] = None,
    placements: Annotated[Literal["random", "covering"], typer.Option(
        "--placements", help="Simulator object placements: seeded random (seed + i), or covering the table evenly."
    )] = "random",
    reset_time: Annotated[
        Optional[float], typer.Option("--reset-time", help="Seconds between episodes (default: 0 sim, 5 real).")
    ] = None,
    realtime: Annotated[
        Optional[bool],
        typer.Option("--realtime/--fast", help="Real-time 50 Hz, or as fast as possible (simulators only)."),
    ] = None,
    finalize: Annotated[
        bool, typer.Option("--finalize/--no-finalize", help="Mark the session complete (immutable) at the end.")
    ] = True,
    task: Annotated[str, typer.Option("--task", help="Task description stored with each episode.")] = "",
    operator: Annotated[str, typer.Option("--operator", help="Who recorded.")] = "",
    config: Annotated[Optional[Path], typer.Option("--config", help="Robot configuration file (real ALOHA).")] = None,
    store: StoreOption = None,
) -> None:
    """Record episodes into <store>/raw/<session>/. Keys (in a terminal): n next, r re-record, q quit."""
    from hardware.keyboard import TerminalCommands
    from hardware.recorder import EpisodeFailed, Progress as RecProgress, RecordConfig, record_session
    from hardware.registry import RobotOptions, make_robot, make_teleoperator

    episode_len = episode_len or default_episode_len(robot)
    lay = store_layout(store)
    # user errors before anything connects: a bad session name, a store that cannot be written, a finalized session
    session_dir = session_to_record(lay, session)
    implied = task_of(robot)
    if implied is not None and task and task != implied:  # what is stored must be what the scene ran
        fail(f"--task {task!r}: robot {robot!r} runs task {implied!r}; leave --task out", 2)
    options = RobotOptions(cameras=parse_cameras(cameras), resolution=parse_resolution(resolution),
                           config=config, layout=lay)
    try:
        bot = make_robot(robot, options)
        teleop = make_teleoperator(robot, bot, options)
    except ValueError as exc:  # an unknown robot (the message lists the known ones), camera or configuration
        fail(str(exc))
    simulated = bool(bot.simulated)
    if realtime is False and not simulated:
        fail(f"--fast needs a simulated robot; {robot!r} runs in real time")
    seeds, seeds_note = None, ""
    if placements == "covering" and not simulated:
        fail(f"--placements covering needs a simulated robot; {robot!r} places its objects by hand")
    if simulated:
        from hardware.sim.placements import session_seeds

        try:
            seeds, seeds_note = session_seeds(lay, bot.task, episodes, seed, covering=placements == "covering")
        except ValueError as exc:  # more covering seeds than the pool holds
            fail(str(exc))
    cfg = RecordConfig(
        session=session,
        episodes=episodes,
        episode_len=episode_len,
        seed=0 if seed is None else seed,
        seeds=seeds,
        reset_seconds=reset_time if reset_time is not None else (0.0 if simulated else 5.0),
        realtime=(not simulated) if realtime is None else realtime,
        task=task,
        operator=operator,
        finalize=finalize,
    )
    cams = ", ".join(f"{c.name} {c.height}x{c.width}" for c in bot.cameras) or "none"
    console.print(f"[bold]recording[/] {episodes} episode(s) of {robot} into {session_dir}")
    console.print(f"  cameras: {cams}; {episode_len} steps at {bot.fps:g} Hz; "
                  f"{'real time' if cfg.realtime else 'as fast as possible (virtual clock)'}")
    if seeds_note:
        console.print(f"  {seeds_note}")

    columns = [
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("step {task.completed:>4.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[rate]:5.1f} Hz"), TextColumn("late {task.fields[late]}"),
        TextColumn("dropped {task.fields[dropped]}"), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
    ]
    with TerminalCommands() as keys, Progress(*columns, console=console, transient=False) as progress:
        console.print("  keys: [bold]n[/] next/end early · [bold]r[/] re-record · [bold]q[/] quit"
                      if keys.enabled else "  keyboard controls off (stdin is not a terminal)")
        bar = progress.add_task("starting", total=episode_len, rate=0.0, late=0, dropped=0, note="")

        def on_progress(p: RecProgress) -> None:
            desc = f"episode {p.episode}/{p.episodes} (#{p.index})"
            if p.phase == "episode":
                if p.step % 5 == 0 or p.step == 1:  # rich redraws at 10 Hz; fewer updates keep the loop cheap
                    progress.update(bar, description=desc, completed=p.step, rate=p.loop_hz, late=p.late_steps,
                                    dropped=p.dropped_frames, note="")
            elif p.phase == "saved":
                progress.update(bar, completed=p.step, rate=p.loop_hz, late=p.late_steps, dropped=p.dropped_frames)
                progress.console.print(
                    f"  saved {Path(p.message).name}: {p.step} steps, {p.loop_hz:.1f} Hz, "
                    f"{p.late_steps} late, {p.dropped_frames} dropped frames"
                )
            elif p.phase == "failed":
                progress.console.print(f"  [red]episode #{p.index} failed after {p.step} steps[/]: {p.message}")
            elif p.phase == "discarded":
                progress.console.print(f"  discarded episode #{p.index}: recording it again")
            elif p.phase == "reset":
                progress.update(bar, description=f"reset before {p.episode + 1}/{p.episodes}", note=p.message)

        try:
            result = record_session(bot, teleop, lay, cfg, commands=keys, on_progress=on_progress)
        except (StoreError, RobotError) as exc:  # e.g. an uncalibrated arm or a missing camera at connect
            progress.stop()
            fail(str(exc))
        except EpisodeFailed as exc:
            progress.stop()
            fail(f"{exc.reason}\n  the robot stopped safely; episode {exc.path.name} is kept, marked failed "
                 f"(it is never trained on); session {session!r} is left open: fix the fault and run the same "
                 "command again to resume")
        except OSError as exc:  # a full disk, a read-only store: the episode being written was not committed
            progress.stop()
            fail(f"cannot write to the store {lay.root}: {os_error_text(exc)}; committed episodes are kept, "
                 f"session {session!r} is left open")
        except KeyboardInterrupt:
            progress.stop()
            fail(f"interrupted: the running episode was discarded; session {session!r} is left open "
                 "(run the same command again to resume it)", code=130)

    table = Table(title=f"session {session}")
    for col in ("episode", "steps", "seed", "success", "loop Hz", "steps/s (wall)", "late", "dropped"):
        table.add_column(col)
    for e in result.episodes:
        ok = "-" if e.success is None else ("yes" if e.success else "no")
        table.add_row(e.path.name, str(e.steps), str(e.seed), ok, f"{e.report.achieved_hz:.1f}",
                      f"{e.counters['wall_steps_per_s']:.1f}",
                      str(e.counters["late_steps"]), str(e.counters["dropped_frames"]))
    console.print(table)
    if result.discarded:
        console.print(f"  {result.discarded} episode(s) discarded and re-recorded")
    if result.marker is not None:
        console.print(f"[green]session finalized[/]: {result.marker}")
    else:
        console.print("session left open: record more with the same --session, it resumes at the next number")


def register(app: typer.Typer) -> None:
    app.command("record")(record)
