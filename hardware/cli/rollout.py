"""`aloha rollout`: drive a robot (simulated, emulated or real) with a trained policy bundle in the 50 Hz loop."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assets_store.hashing import write_json_atomic
from assets_store.errors import StoreError
from assets_store.layout import CHAMPION, DEFAULT_MODEL_NAME
from hardware.cli.common import BackendOption, StoreOption, check_outputs, console, fail, layout, os_error_text, parse_resolution
from hardware.cli.rollout_record import (
    check_record_options, finalize_left_open, start_recording, what_served,
)
from hardware.keyboard import TerminalCommands
from hardware.interfaces import RobotError
from hardware.policy_wire import DEFAULT_TIMEOUT_S
from hardware.registry import SimViewName, episode_len, is_simulated, robot_names, robots_help, task_of


DEVICES = ("cpu", "cuda")
VIRTUAL_CLOCK = "n/a: virtual clock (--realtime measures it)"


def resolve_policy(store: Optional[Path], policy: str, name: str) -> Path:
    """A bundle directory, or 'champion': the promoted bundle under <store>/deploy/<name>/champion."""
    if policy == CHAMPION:
        try:
            path = layout(store).deploy_path(name, CHAMPION)
        except StoreError as exc:  # a --name that is not a valid model name
            fail(str(exc))
        if not path.is_dir():
            fail(f"no champion deployed at {path}; run the pipeline (or `aloha demo`), or pass --policy DIR")
        return path
    path = Path(policy)
    if not path.is_dir():
        fail(f"--policy {policy!r}: expected a bundle directory or 'champion'")
    return path.resolve()


def rollout(
    robot: Annotated[str, typer.Option("--robot", help=robots_help())],
    policy: Annotated[str, typer.Option("--policy", help="Bundle directory, or 'champion' (the deployed one).")],
    episodes: Annotated[int, typer.Option("--episodes", "-n", min=0, help=(
        "Episodes to run; 0 with --record: finalize a rollout session left open, without moving the robot."))] = 1,
    temporal_ensemble: Annotated[
        float, typer.Option("--temporal-ensemble", help="k of the exp(-k i) weights; negative: chunks open loop.")
    ] = 0.01,
    query_every: Annotated[int, typer.Option("--query-every", min=1, help="Steps between policy queries.")] = 1,
    seed: Annotated[
        Optional[int], typer.Option("--seed", min=0, help="First seed (sim placement); default: held-out evaluation seeds.")
    ] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        "--max-steps", min=1, help="Control steps per episode (default: the robot's: 400, mobile sim 650).")] = None,
    video: Annotated[Optional[Path], typer.Option("--video", help="Save one MP4 per episode here.")] = None,
    resolution: Annotated[Optional[str], typer.Option("--resolution", help="Camera HxW where selectable.")] = None,
    realtime: Annotated[
        Optional[bool], typer.Option("--realtime/--no-realtime", help=(
            "Sim default: as fast as possible on a virtual clock (loop periods then are not measured); --async "
            "always runs in real time."))
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Model name for --policy champion.")] = DEFAULT_MODEL_NAME,
    config: Annotated[Optional[Path], typer.Option("--config", help="Robot configuration (real/emulated).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON here.")] = None,
    task: Annotated[
        Optional[str], typer.Option("--task", help="The task this run is for (a simulator implies its own); a "
                                                   "policy trained for other tasks needs --force.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run a policy trained for another robot or task (cameras and joints "
                                           "must still match).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing videos of the same names and the --json file.")
    ] = False,
    asynchronous: Annotated[bool, typer.Option(
        "--async", help="Run the policy beside the 50 Hz loop (in real time): the loop never waits for inference. "
                        "On the CPU inference then uses all cores but one, which the loop keeps.")
    ] = False,
    fallback: Annotated[str, typer.Option(
        "--fallback", help="With --async, a step no chunk covers: 'hold' the last action, or 'stop' the episode.")
    ] = "hold",
    backend: BackendOption = "torch",
    device: Annotated[str, typer.Option(
        "--device", help="Where inference runs: 'cpu', or 'cuda' (a captured CUDA graph, fp32).")] = "cpu",
    record: Annotated[Optional[str], typer.Option(
        "--record", help="Store every rollout as an episode of this session (marked a rollout, never mixed with "
                         "demonstrations). Keys after each: s success, f failure, x discard.")] = None,
    label: Annotated[Optional[str], typer.Option(
        "--label", help="With --record and no terminal: 'success' or 'failure' for every rollout (default: "
                        "unlabelled; a simulator labels by the task's success).")] = None,
    takeover: Annotated[Optional[bool], typer.Option(
        "--takeover/--no-takeover", help="With --record on leader-arm robots (default on): both leader grippers "
                                         "shut for 1 s, or the key t, hands the followers to the leaders and back.")
    ] = None,
    policy_server: Annotated[Optional[str], typer.Option(
        "--policy-server", help="HOST:PORT of `aloha serve-policy`: inference there, on the same bundle as --policy.")
    ] = None,
    server_timeout: Annotated[float, typer.Option(
        "--server-timeout", min=0.001, help="Seconds a --policy-server request may take before the robot stops.")
    ] = DEFAULT_TIMEOUT_S,
    sim_view: Annotated[SimViewName, typer.Option(
        "--sim-view", help="Simulator only: 'shifted' moves the cameras a few cm / degrees and changes the lighting "
                           "(an evaluation variant; physics unchanged).")] = "default",
    store: StoreOption = None,
) -> None:
    """Run a policy; print success rate (where the robot can judge it) and inference latency percentiles."""
    if robot not in robot_names():  # before anything loads: an unknown name is a typo, not another robot
        fail(f"--robot {robot!r}: unknown robot; expected one of {robot_names()}", 2)
    max_steps = max_steps or episode_len(robot)
    simulated = is_simulated(robot)
    check_record_options(layout(store), robot, record, label, takeover, simulated, asynchronous)
    if episodes == 0:  # no robot motion: only the marker an interrupted run never wrote
        finalize_left_open(layout(store), record, resolve_policy(store, policy, name))
        return
    if simulated:
        from hardware.sim.gl import select_gl_backend

        select_gl_backend()  # before the policy's torch/triton and MuJoCo are imported
    from hardware.async_policy import FALLBACKS, AsyncInference
    from hardware.rollout import IncompatiblePolicy, make_robot_for_policy, run_rollouts, video_path
    from model.policy import Policy

    if fallback not in FALLBACKS:
        fail(f"--fallback {fallback!r}: expected one of {list(FALLBACKS)}", 2)
    if asynchronous and query_every != 1:
        fail("--query-every: with --async the policy is queried as often as inference allows; leave it at 1", 2)
    if asynchronous and realtime is False:
        fail("--no-realtime: --async runs the policy beside a real-time loop; drop one of them", 2)
    if policy_server and backend != "torch":
        fail("--backend: with --policy-server the server runs the policy; give --backend to `aloha serve-policy`", 2)
    if policy_server and device != "cpu":
        fail("--device: with --policy-server the server runs the policy; give --device to `aloha serve-policy`", 2)
    if device not in DEVICES:
        fail(f"--device {device!r}: expected one of {list(DEVICES)}", 2)
    if device == "cuda":
        import torch

        if backend == "onnx":
            fail("--device cuda: --backend onnx runs on the CPU", 2)
        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device on this machine", 2)
    async_inference = AsyncInference(fallback) if asynchronous else None  # type: ignore[arg-type]

    if seed is None and simulated:
        from hardware.sim import heldout_seeds

        seeds: list[Optional[int]] = list(heldout_seeds(episodes))
    else:
        seeds = [None if seed is None else seed + i for i in range(episodes)]
    # Before any work: outputs never replace a user's files unless asked (the report and videos come last).
    videos = [] if video is None else [video_path(video, i, s) for i, s in enumerate(seeds)]
    check_outputs(videos + ([] if json_out is None else [json_out]), overwrite=overwrite)

    bundle = resolve_policy(store, policy, name)
    k = temporal_ensemble if temporal_ensemble >= 0 and query_every == 1 else None  # ensembling queries every step
    try:  # the weights loaded are the bytes whose hashes matched the manifest
        if policy_server is None:
            pol = Policy.from_bundle(bundle, device=device, temporal_ensemble_k=k, query_every=query_every,
                                     backend=backend)
        else:  # the local bundle says what to expect; the server must serve the same one (manifest sha256)
            from hardware.policy_server import connect_policy

            pol = connect_policy(bundle, policy_server, timeout_s=server_timeout, temporal_ensemble_k=k,
                                 query_every=query_every)
    except (StoreError, ValueError, ImportError, RobotError) as exc:  # ImportError: onnxruntime or pyzmq missing
        fail(str(exc))
    manifest = pol.manifest
    other = pol.trained_for_other(robot, task or task_of(robot))
    if other:
        if not force:
            fail(f"{other}; pass --force to run it anyway", code=2)
        console.print(f"[yellow]warning:[/] {other}; running it because of --force")
    if sim_view != "default" and not simulated:
        fail(f"--sim-view {sim_view}: only a simulator renders another view; {robot!r} has real cameras", 2)
    extra = {"config": config, "layout": layout(store), "view": sim_view}
    # Simulators render at the policy's input size unless told otherwise: the cheapest faithful choice.
    res = parse_resolution(resolution) or (tuple(pol.image_size) if simulated else None)

    bar = StepBar(episodes, max_steps)

    def on_episode(ep) -> None:
        bar.next_episode()
        verdict = {True: "[green]success[/]", False: "[red]failure[/]", None: "done"}[ep.success]
        console.print(
            f"  seed {ep.seed}: {verdict}  max reward {ep.max_reward}  {ep.steps} steps  {ep.seconds:.1f} s"
            + (f"  late {ep.late_steps}" if ep.late_steps else "")
            + (f"  video {ep.video}" if ep.video else "")
            + (f"  takeovers {ep.takeover_spans}" if ep.takeover_spans else "")
            + ("" if record is None else f"  stored {Path(ep.stored).name} ({ep.label or 'unlabelled'})"
               if ep.stored else "  discarded")
        )

    try:
        bot = make_robot_for_policy(robot, pol, resolution=res, **extra)
        console.print(
            f"policy {bundle} (dataset {manifest.get('dataset_id') or '?'}) on {robot}: {episodes} episode(s), "
            f"{max_steps} steps, temporal ensemble {'off' if k is None else k}"
            + (f", asynchronous inference (fallback {fallback})" if asynchronous else "")
            + (f", backend {backend}" if backend != "torch" else "")
            + (f", {pol.inference_path} on {device}" if device != "cpu" else "")
            + (f", inference on policy server {pol.served_by}" if policy_server else "")
        )
        with TerminalCommands() if record else nullcontext() as keys, bar:
            recorder, human = (None, None) if record is None else start_recording(
                bot, layout(store), record, bundle=bundle, manifest=manifest, robot=robot, task=task or task_of(robot),
                k=k, query_every=query_every, asynchronous=asynchronous, backend=backend, label=label,
                takeover=takeover, keys=keys, served=what_served(
                    pol, manifest, layout(store).promotion_record_path(name, CHAMPION) if policy == CHAMPION else None,
                    bundle))
            report = run_rollouts(
                bot, pol, seeds, num_steps=max_steps, realtime=realtime, video_dir=video, on_episode=on_episode,
                async_inference=async_inference, record=None if recorder is None else recorder.episode,
                takeover=human, keys=keys.read if human is not None and keys.enabled else None, on_step=bar.step,
            )
        if recorder is not None:
            marker = recorder.finalize()
            console.print(f"[green]rollout session finalized[/]: {marker}" if marker is not None
                          else f"session {record!r}: no rollout kept, nothing to finalize")
    except StoreError as exc:  # e.g. the rollout session could not be written; committed episodes are kept
        fail(f"rollout stopped: {exc}" + (f"; session {record!r} is left open (--episodes 0 finalizes it)"
                                          if record else ""))
    except IncompatiblePolicy as exc:
        fail(f"refusing to run: {exc}", code=2)
    except RobotError as exc:  # a servo, camera or base fault mid-run: the robot stopped itself safely
        fail(f"rollout stopped, robot stopped safely: {exc}")
    except OSError as exc:  # e.g. a video that could not be written (each is atomic: no partial file)
        fail(f"rollout stopped: {os_error_text(exc)}")
    except KeyboardInterrupt:  # the running rollout is not stored; those before it are
        fail("interrupted" + (f": session {record!r} is left open (the same command resumes it; with --episodes 0 "
                              "it finalizes it)" if record else ""),
             code=130)
    table = Table(title="rollout", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    summary = report.summary
    table.add_row("success rate", "n/a (robot cannot judge)" if summary.rate is None
                  else f"{summary.rate:.0%} ({summary.successes}/{summary.episodes})")
    lat = report.latency_ms
    table.add_row("latency ms p50/p90/p99/max", f"{lat.p50:.1f} / {lat.p90:.1f} / {lat.p99:.1f} / {lat.max:.1f}")
    if report.realtime:
        table.add_row("loop period ms p50/p99", f"{report.period_ms.p50:.1f} / {report.period_ms.p99:.1f}")
        table.add_row("late steps", str(report.late_steps))
    else:  # every period is the nominal one: nothing was measured
        table.add_row("loop period ms p50/p99", VIRTUAL_CLOCK)
        table.add_row("late steps", VIRTUAL_CLOCK)
    if asynchronous:
        age = report.chunk_age_steps
        table.add_row("chunk age at use, steps p50/p99/max", f"{age.p50:.0f} / {age.p99:.0f} / {age.max:.0f}")
        table.add_row(f"fallback steps ({fallback})", str(report.fallback_steps))
    console.print(table)
    if json_out is not None:
        try:
            write_json_atomic(json_out, report.to_dict())
        except OSError as exc:
            fail(f"could not write the report: {os_error_text(exc)}")


class StepBar:
    """A rich progress bar over the current episode's steps, with its step rate; it disappears when the run ends (the
    per-episode lines stay)."""

    def __init__(self, episodes: int, steps: int, clock: Callable[[], float] = time.perf_counter):
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:6.1f} steps/s"), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=console, transient=True)
        self.episodes, self.clock, self.episode, self.started = episodes, clock, 1, clock()
        self.task = self.progress.add_task(self._description(), total=steps, rate=0.0)

    def _description(self) -> str:
        return f"episode {self.episode}/{self.episodes}"

    def step(self, done: int) -> None:
        """run_rollouts' per-step callback: `done` steps of this episode so far."""
        if done == 1:
            self.started = self.clock()
        rate = (done - 1) / max(self.clock() - self.started, 1e-9) if done > 1 else 0.0
        self.progress.update(self.task, completed=done, rate=rate)

    def next_episode(self) -> None:
        if self.episode < self.episodes:
            self.episode += 1
            self.progress.reset(self.task, description=self._description(), rate=0.0)

    def __enter__(self) -> "StepBar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def register(app: typer.Typer) -> None:
    app.command("rollout")(rollout)
