"""`aloha demo`: record scripted sim episodes of a task, materialize the whole graph in-process, print what came out.

Its option defaults are read from `DemoOptions`, whose training defaults are the "demo" preset of model/config.py.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from assets_store import StoreLayout
from assets_store.layout import CHAMPION, DEFAULT_MODEL_NAME
from hardware.cli.common import StoreOption as StoreOpt, console, fail, layout as store_layout, parse_resolution, session_to_record
from hardware.sim.gl import select_gl_backend
from pipeline.demo import DemoOptions, DemoTask


def demo(
    ctx: typer.Context,
    task: Annotated[DemoTask, typer.Option(
        "--task", help="Sim task: the transfer cube's recipe (covering placements, demo preset) applied to it."
    )] = DemoOptions.task,
    episodes: Annotated[int, typer.Option(
        "--episodes", min=2, help="Scripted episodes to record.")] = DemoOptions.episodes,
    placements: Annotated[Literal["covering", "random"], typer.Option(
        "--placements", help="Cube placements: spread evenly over the table, or seeded random (seed + i)."
    )] = DemoOptions.placements,
    train_minutes: Annotated[float, typer.Option(
        "--train-minutes", help="Training time budget (minutes); with --train-steps alone, no time limit."
    )] = DemoOptions.train_minutes,
    train_steps: Annotated[Optional[int], typer.Option(
        "--train-steps", min=1, help="Stop after this many steps (and at --train-minutes if also given)."
    )] = DemoOptions.train_steps,
    eval_episodes: Annotated[int, typer.Option(
        "--eval-episodes", help="Held-out seeds for closed-loop success.")] = DemoOptions.eval_episodes,
    episode_len: Annotated[Optional[int], typer.Option(
        "--episode-len", min=1, help="Control steps per episode (default: the task's: 400, mobile 650)."
    )] = DemoOptions.episode_len,
    resolution: Annotated[str, typer.Option(
        "--resolution", help="Camera HxW (recording and evaluation).")] = "{}x{}".format(*DemoOptions.resolution),
    train_resolution: Annotated[str, typer.Option(
        "--train-resolution", help="HxW the policy sees.")] = "{}x{}".format(*DemoOptions.train_resolution),
    backbone_stages: Annotated[int, typer.Option(
        "--backbone-stages", min=3, max=4, help="ResNet18 stages: 3 (stride 16, the CPU demo) or 4 (the original)."
    )] = DemoOptions.backbone_stages,
    dropout: Annotated[float, typer.Option(
        "--dropout", min=0.0, max=0.9, help="Transformer dropout (the paper: 0.1; the 20-min CPU demo: 0)."
    )] = DemoOptions.dropout,
    temporal_ensemble: Annotated[float, typer.Option(
        "--temporal-ensemble", help="k of exp(-k i); <0: off.")] = DemoOptions.temporal_ensemble_k,
    session: Annotated[Optional[str], typer.Option("--session", help="Session name (default demo-<time>).")] = None,
    store: StoreOpt = None,
) -> None:
    """Record scripted episodes of a sim task, run the whole pipeline in-process, print what came out."""
    select_gl_backend()
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    from dagster import DagsterError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.demo import demo_seeds, materialize, record_demo_session, summarize

    layout = store_layout(store)  # an object-store root: one error line (the demo records locally)
    session = session or time.strftime("demo-%Y%m%d-%H%M%S")
    session_to_record(layout, session)  # a bad name, an unwritable store, a finalized session: one line, no work
    # A step budget alone is that budget: the default minutes would cut a long one short.
    source = ctx.get_parameter_source("train_minutes")  # typer's own click: compare the source by name
    minutes_given = source is not None and source.name != "DEFAULT"
    opts = DemoOptions(
        task=task,
        episodes=episodes,
        placements=placements,
        episode_len=episode_len,
        resolution=parse_resolution(resolution),
        train_resolution=parse_resolution(train_resolution),
        backbone_stages=backbone_stages,
        dropout=dropout,
        train_minutes=train_minutes if minutes_given or train_steps is None else None,
        train_steps=train_steps,
        eval_episodes=eval_episodes,
        temporal_ensemble_k=temporal_ensemble if temporal_ensemble >= 0 else None,
        session=session,
    )
    console.rule(f"[bold]aloha demo[/]: store {layout.root}")
    console.print(
        f"1/2 recording {episodes} scripted {task.replace('_', '-')} episodes ({opts.robot}) into session "
        f"[bold]{opts.session}[/] ({opts.resolution[0]}x{opts.resolution[1]}, {opts.steps_per_episode} steps each, "
        f"{placements} placements)"
    )
    seeds, seeds_note = demo_seeds(layout, opts)
    console.print(f"    {seeds_note}")
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]record"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        task = progress.add_task("record", total=episodes, status="")

        def on_progress(p) -> None:
            if p.phase == "saved":
                progress.update(task, completed=p.episode, status=p.message or "")

        recorded = record_demo_session(layout, opts, on_progress, seeds)
        progress.update(task, completed=len(recorded.episodes))
    record_s = time.perf_counter() - t0
    budget = " or ".join(([f"{opts.train_minutes:g} min"] if opts.train_minutes is not None else [])
                         + ([f"{opts.train_steps} steps"] if opts.train_steps is not None else []))
    console.print(
        f"2/2 materializing the Dagster graph in-process (training budget {budget} at "
        f"{opts.train_resolution[0]}x{opts.train_resolution[1]}, ResNet18 to layer{opts.backbone_stages}, "
        f"dropout {opts.dropout:g}, "
        f"evaluation on {eval_episodes} held-out seeds)"
    )
    t1 = time.perf_counter()
    try:
        meta = materialize(layout, opts.session, opts)
    except Exception as exc:  # the full traceback is in the Dagster run's event log
        cause = exc.__cause__ if isinstance(exc, DagsterError) and exc.__cause__ else exc
        fail(f"the pipeline failed: {type(cause).__name__}: {cause}\n"
             f"  recorded episodes are kept in session {opts.session!r}; the failed run is in the Dagster UI "
             f"(aloha ui --store {layout.root})")
    summary = summarize(opts.session, len(recorded.episodes), meta, record_s, time.perf_counter() - t1)
    print_summary(summary, layout, opts.robot, opts.model_name)


def print_summary(s, layout: StoreLayout, robot: str, model_name: str = DEFAULT_MODEL_NAME) -> None:
    table = Table(title="aloha demo: summary", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rate = f"{s.success_rate:.0%} over {s.eval_episodes} held-out seeds" if s.success_rate is not None else "n/a"
    rows = [
        ("session", s.session),
        ("episodes", f"{s.episodes_recorded} recorded, {s.episodes_kept} kept, {s.episodes_quarantined} quarantined"),
        ("dataset", s.dataset_id),
        ("training", f"{s.train_steps} steps in {s.train_wall_s / 60:.1f} min"),
        ("validation loss", f"{s.val_loss:.4f}"),
        ("success rate", rate),
        ("promotion", f"{'promoted' if s.promoted else 'not promoted'} as v{s.model_version}: {s.promotion_reason}"),
        ("bundle", s.bundle_dir),
        ("MLflow run", s.mlflow_run_id),
        ("time", f"record {s.record_s / 60:.1f} min, pipeline {s.pipeline_s / 60:.1f} min"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    console.print(table)
    store_flag = f" --store {layout.root}"
    console.print("Open the UIs:")
    console.print(f"  Dagster: make ui        (or: aloha ui{store_flag})   -> http://127.0.0.1:3000")
    console.print(
        f"  MLflow:  make mlflow-ui (or: aloha mlflow-ui{store_flag})"
        " -> http://127.0.0.1:5000"
    )
    # Not promoted (below the floor, or no better than the champion): the candidate's own bundle still runs.
    policy = CHAMPION if s.promoted else s.bundle_dir
    name_flag = f" --name {model_name}" if model_name != DEFAULT_MODEL_NAME and s.promoted else ""
    console.print(f"  Try it:  aloha rollout --robot {robot} --policy {policy}{name_flag} --episodes 5{store_flag}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
