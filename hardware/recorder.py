"""Record teleoperated episodes from ANY Robot into the episode store.

The label of every step is the COMMANDED action (what the Teleoperator sent: leader arms, a scripted demonstrator),
never the follower's measured position. Per step the recorder stores the observation the teleoperator saw, the
action, the loop timestamp, camera frame info; per episode the loop's timing report and counters (late steps,
dropped frames). A session can be resumed (new episodes take the next numbers) until it is finalized.

    with robot, TerminalCommands() as keys:
        result = Recorder(robot, teleop, StoreLayout.at(store), RecordConfig(session="s1", episodes=10),
                          commands=keys, on_progress=print).run()

Controls (`hardware.keyboard.Command`): n ends the episode early (kept) or skips the rest of the reset period;
r discards the running episode, or during the reset period the last saved one, and records it again;
q keeps the running episode and ends the session. The session is finalized at the end unless `finalize=False`.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from assets_store import EpisodeInfo, EpisodeWriter, StoreLayout, finalize_session, next_episode_index
from assets_store.errors import StoreError
from assets_store.sessions import episode_dirs, is_session_finalized
from hardware.interfaces import Robot, Teleoperator
from hardware.keyboard import Command, CommandSource, NoCommands
from hardware.loop import (
    Clock,
    EpisodeRun,
    FixedRateLoop,
    LoopReport,
    MonotonicClock,
    StepRecord,
    VirtualClock,
    run_episode,
)
from hardware.sim.placements import HELDOUT_SEED_BASE

SOFTWARE_VERSION = "aloha-pipeline 0.1.0"


class EpisodeFailed(RuntimeError):
    """The robot or teleoperator faulted mid-episode; the partial episode was kept at `path`, marked failed."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"episode {path.name} failed and was kept marked failed ({path}): {reason}")


@dataclass
class RecordConfig:
    session: str
    episodes: int = 1  # episodes to add in this run (a resumed session continues its numbering)
    episode_len: int = 400  # control steps per episode (8 s at 50 Hz)
    # the episode with store index i uses seed + i (sim object placement); None = random, stored. `aloha record`
    # defaults to seeds the store has not used (hardware.sim.placements.session_seeds)
    seed: int | None = 0
    # explicit seeds instead: the n-th episode of this run uses seeds[n - 1] (e.g. hardware.sim.covering_seeds)
    seeds: list[int] | None = None
    reset_seconds: float = 0.0  # pause after each episode but the last, for the operator to reset the scene
    realtime: bool = True  # False: virtual clock, as fast as possible (simulators only)
    fps: float | None = None  # default: the robot's
    task: str = ""
    operator: str = ""
    finalize: bool = True  # write the session marker at the end (the session becomes immutable)
    jpeg_quality: int = 90


@dataclass
class Progress:
    """What a progress display needs; passed to `on_progress` every step and at every phase change."""

    phase: str  # "episode" | "saved" | "discarded" | "failed" | "reset" | "done"
    episode: int  # 1-based number within this run
    episodes: int
    index: int  # store index of the episode
    step: int = 0
    steps: int = 0
    loop_hz: float = 0.0  # wall-clock steps per second over the last ~50 steps
    late_steps: int = 0
    dropped_frames: int = 0
    message: str = ""


@dataclass
class RecordedEpisode:
    index: int
    path: Path
    steps: int
    seed: int | None
    success: bool | None
    max_reward: float | None
    report: LoopReport
    counters: dict[str, Any]


@dataclass
class SessionResult:
    session: str
    episodes: list[RecordedEpisode] = field(default_factory=list)
    discarded: int = 0
    stopped_early: bool = False  # q pressed
    marker: Path | None = None  # the finalized-session marker, if written


def episode_info(robot: Robot, session: str, *, fps: float, task: str = "", operator: str = "",
                 seed: int | None = None) -> EpisodeInfo:
    """What an episode of `robot` says about itself before its first step (recorded and rollout episodes alike)."""
    robot_attrs = dict(robot.episode_attrs())
    known = {"task", "calibration_hash", "operator", "software_version"}
    return EpisodeInfo(
        robot=robot.name,
        joint_names=list(robot.joint_names),
        action_names=list(robot.action_names),
        fps=fps,
        cameras=list(robot.cameras),
        task=task or str(robot_attrs.get("task", "")),
        session=session,
        operator=operator or str(robot_attrs.get("operator", "")),
        software_version=str(robot_attrs.get("software_version", SOFTWARE_VERSION)),
        calibration_hash=str(robot_attrs.get("calibration_hash", "")),
        extra={"seed": seed, **{k: v for k, v in robot_attrs.items() if k not in known}},
    )


def write_step(writer: EpisodeWriter, rec: StepRecord) -> None:
    """One control step into the episode: the observation the driver saw, the action executed, the loop time."""
    obs = rec.observation
    writer.add_step(obs.qpos, rec.action, rec.timestamp,
                    qvel=obs.qvel, effort=obs.effort, images=obs.images, frame_info=obs.frame_info)


def run_counters(run: EpisodeRun) -> dict[str, Any]:
    """The counters an episode keeps of how its control loop ran."""
    return {
        "steps": run.report.steps,
        "late_steps": run.report.late_steps,
        "missed_periods": run.report.missed_periods,
        "dropped_frames": run.dropped_frames,  # frame-number gaps: what validation counts from the frame info
        "camera_dropped_frames": run.camera_dropped_frames,  # reported lost by the cameras themselves (device, USB)
        "stopped_early": run.stopped_early,
    }


class Recorder:
    """Records `config.episodes` episodes of `robot` driven by `teleoperator`. The caller connects both."""

    def __init__(
        self,
        robot: Robot,
        teleoperator: Teleoperator,
        layout: StoreLayout,
        config: RecordConfig,
        *,
        commands: CommandSource | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        clock: Clock | None = None,
    ):
        self.robot = robot
        self.teleoperator = teleoperator
        self.layout = layout
        self.config = config
        self.commands = commands or NoCommands()
        self.on_progress = on_progress or (lambda p: None)
        self.fps = float(config.fps or robot.fps)
        if clock is None:
            clock = MonotonicClock() if config.realtime else VirtualClock(start=MonotonicClock().now())
        self.clock = clock
        self.session_dir = layout.session_dir(config.session)
        if config.seeds is not None and len(config.seeds) < config.episodes:
            raise ValueError(f"RecordConfig.seeds: {len(config.seeds)} seed(s) for {config.episodes} episodes; "
                             "expected one seed per episode of this run")

    # ------------------------------------------------------------------ session
    def run(self) -> SessionResult:
        cfg = self.config
        if is_session_finalized(self.session_dir):
            raise StoreError(f"session {cfg.session!r} is finalized (immutable); record into a new session")
        result = SessionResult(session=cfg.session)
        number = 1
        index = next_episode_index(self.session_dir)
        while number <= cfg.episodes:
            recorded, command = self.record_episode(index, number)
            if recorded is None:  # discarded with r: same number, same index
                result.discarded += 1
                continue
            result.episodes.append(recorded)
            if command is Command.QUIT:
                result.stopped_early = True
                break
            if number < cfg.episodes and cfg.reset_seconds > 0:
                command = self.reset_period(number, index)
                if command is Command.RERECORD:
                    self.delete_episode(recorded.path)
                    result.episodes.pop()
                    result.discarded += 1
                    continue  # record this number and index again
                if command is Command.QUIT:
                    result.stopped_early = True
                    break
            number += 1
            index = next_episode_index(self.session_dir)
        if cfg.finalize and episode_dirs(self.session_dir):
            result.marker = finalize_session(
                self.layout,
                cfg.session,
                {
                    "robot": self.robot.name,
                    "task": cfg.task or self.robot.episode_attrs().get("task", ""),
                    "recorded_this_run": len(result.episodes),
                    "discarded_this_run": result.discarded,
                    "stopped_early": result.stopped_early,
                },
            )
        self.on_progress(Progress("done", len(result.episodes), cfg.episodes, index))
        return result

    # ------------------------------------------------------------------ one episode
    def episode_info(self, seed: int | None) -> EpisodeInfo:
        cfg = self.config
        return episode_info(self.robot, cfg.session, fps=self.fps, task=cfg.task, operator=cfg.operator, seed=seed)

    def record_episode(self, index: int, number: int = 1) -> tuple[RecordedEpisode | None, Command | None]:
        """Record one episode under `index`. Returns (None, RERECORD) if the operator discarded it."""
        cfg = self.config
        # Always a concrete seed, stored with the episode, so `aloha replay` can rebuild the same scene.
        if cfg.seeds is not None:
            seed = int(cfg.seeds[number - 1])
        elif cfg.seed is not None:
            seed = cfg.seed + index
        else:
            seed = int.from_bytes(os.urandom(4), "little") % HELDOUT_SEED_BASE  # never a held-out evaluation scene
        writer = EpisodeWriter(self.layout, cfg.session, self.episode_info(seed), index=index,
                               jpeg_quality=cfg.jpeg_quality)
        loop = FixedRateLoop(self.fps, self.clock)
        state = {"command": None, "dropped": 0, "late": 0, "wall_first": 0.0, "wall_last": 0.0}
        walls: deque[float] = deque(maxlen=50)  # wall time, so a virtual-clock sim shows its real speed

        def on_step(rec: StepRecord) -> None:
            write_step(writer, rec)
            state["dropped"] += rec.dropped_frames
            now = time.perf_counter()
            walls.append(now)
            if rec.index == 0:
                state["wall_first"] = now
            state["wall_last"] = now
            rate = (len(walls) - 1) / (walls[-1] - walls[0]) if len(walls) > 1 and walls[-1] > walls[0] else 0.0
            if loop.timings:  # the previous step's timing is final now
                last = loop.timings[-1]
                state["late"] += last.end > last.scheduled + loop.period + 1e-9
            self.on_progress(Progress(
                "episode", number, cfg.episodes, index, step=rec.index + 1, steps=cfg.episode_len,
                loop_hz=rate, late_steps=state["late"], dropped_frames=state["dropped"],
            ))

        def should_stop() -> bool:
            command = self.commands.poll()
            if command is not None:
                state["command"] = command
            return command is not None

        try:
            run = run_episode(
                self.robot, self.teleoperator, num_steps=cfg.episode_len, seed=seed,
                on_step=on_step, should_stop=should_stop, loop=loop,
            )
        except Exception as exc:
            # A fault mid-episode (servo overload, camera unplugged, leader arm silent): the robot has already
            # stopped safely; keep what was recorded, marked failed with the reason, so it can be inspected but
            # is never trained on (the pipeline quarantines failed episodes).
            if len(writer) == 0 or isinstance(exc, StoreError):
                writer.discard()
                raise
            reason = f"{type(exc).__name__}: {exc}"
            try:
                path = writer.close(extra_attrs={
                    "status": "failed", "failure": reason,
                    "counters": {"steps": len(writer), "late_steps": state["late"], "dropped_frames": state["dropped"]},
                    "extra": {**writer.info.extra, "seed": seed},
                })
            except Exception:
                writer.discard()
                raise exc from None
            self.on_progress(Progress("failed", number, cfg.episodes, index, step=len(writer), message=reason))
            raise EpisodeFailed(path, reason) from exc
        except BaseException:
            writer.discard()
            raise
        command = state["command"]
        if command is Command.RERECORD:
            writer.discard()
            self.on_progress(Progress("discarded", number, cfg.episodes, index, message="re-recording"))
            return None, command
        report = run.report
        counters = {
            **run_counters(run),
            "realtime": isinstance(self.clock, MonotonicClock),
            # control steps per wall-clock second (differs from the loop rate on a virtual clock)
            "wall_steps_per_s": round((report.steps - 1) / max(state["wall_last"] - state["wall_first"], 1e-9), 2),
        }
        end_attrs = {k: v for k, v in self.robot.episode_attrs().items() if k != "task"}
        outcome = {"max_reward": run.max_reward, "success": run.success}
        path = writer.close(extra_attrs={
            "counters": counters,
            "loop_timing": report.to_dict(),
            "outcome": outcome,
            "extra": {**writer.info.extra, **end_attrs, "seed": seed},
        })
        recorded = RecordedEpisode(index, path, report.steps, seed, run.success, run.max_reward, report, counters)
        self.on_progress(Progress(
            "saved", number, cfg.episodes, index, step=report.steps, steps=cfg.episode_len,
            loop_hz=counters["wall_steps_per_s"], late_steps=report.late_steps, dropped_frames=run.dropped_frames,
            message=str(path),
        ))
        return recorded, command

    # ------------------------------------------------------------------ between episodes
    def reset_period(self, number: int, index: int) -> Command | None:
        """Wait `reset_seconds` (the operator resets the scene) while polling commands; n ends it early."""
        end = self.clock.now() + self.config.reset_seconds
        while True:
            now = self.clock.now()
            if now >= end:
                return None
            command = self.commands.poll()
            if command is not None:
                return None if command is Command.NEXT else command
            self.on_progress(Progress("reset", number, self.config.episodes, index, message=f"{end - now:.1f} s"))
            self.clock.sleep_until(min(end, now + 0.05))

    def delete_episode(self, path: Path) -> None:
        """Remove a saved episode of this (unfinalized) session: renamed away first, so no reader sees half of it."""
        trash = path.parent / f".discarded-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def record_session(
    robot: Robot,
    teleoperator: Teleoperator,
    layout: StoreLayout,
    config: RecordConfig,
    **kwargs: Any,
) -> SessionResult:
    """Connect robot and teleoperator, run a `Recorder`, and disconnect both (also on errors)."""
    robot.connect()
    try:
        teleoperator.connect()
        try:
            return Recorder(robot, teleoperator, layout, config, **kwargs).run()
        finally:
            teleoperator.disconnect()
    finally:
        robot.disconnect()
