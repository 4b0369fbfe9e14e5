"""Rollouts become data: every rollout of `aloha rollout --record SESSION` is an episode of the store.

The recorder's writer path (`EpisodeWriter`, `hardware.recorder.episode_info` / `write_step`, `finalize_session`): a
rollout episode holds what the policy saw, the actions executed (the leaders' during a takeover), the loop's
timestamps, and the attributes of `assets_store.rollouts.rollout_attrs` (bundle hash and settings, label, takeover
spans). The session is finalized at the end with `"kind": "rollout"` and the bundle's hash.

Labels (`Verdict`): the operator's key after each rollout (`OperatorKeys`: s success, f failure, x discard, the
episode is then never committed), the simulator's own success (`simulator_label`), or one label for all
(`fixed_label`, `--label`; None stores the rollouts unlabelled, to be labelled later with `aloha episodes label`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from assets_store import EpisodeWriter, StoreLayout, finalize_session
from assets_store.errors import StoreError
from assets_store.rollouts import ROLLOUT_KIND, rollout_attrs
from assets_store.sessions import episode_dirs, is_session_finalized
from hardware.interfaces import Robot
from hardware.loop import EpisodeRun, StepRecord
from hardware.recorder import episode_info, run_counters, write_step
from hardware.rollout import RolloutEpisode

LABELS = ("success", "failure")
LABEL_KEYS = {"s": "success", "f": "failure", "x": None}  # x: discard


@dataclass(frozen=True)
class Verdict:
    keep: bool  # False: discarded, never committed
    label: str | None = None
    source: str | None = None  # "operator" | "simulator" | "option"


Labeler = Callable[[RolloutEpisode], Verdict]


def simulator_label(episode: RolloutEpisode) -> Verdict:
    """The task's own success (ACT's: the maximum reward reached); unlabelled where the robot cannot judge."""
    if episode.success is None:
        return Verdict(True)
    return Verdict(True, "success" if episode.success else "failure", "simulator")


def fixed_label(label: str | None) -> Labeler:
    """One label for every rollout (`--label`), or none."""
    if label is not None and label not in LABELS:
        raise ValueError(f"label {label!r}: expected one of {list(LABELS)}")
    verdict = Verdict(True, label, None if label is None else "option")
    return lambda episode: verdict


class OperatorKeys:
    """Waits after each rollout for the operator's key: s success, f failure, x discard (other keys are ignored)."""

    def __init__(self, read: Callable[[], str], prompt: Callable[[str], None], poll_s: float = 0.05):
        self.read = read  # typed keys since the last call, e.g. `TerminalCommands.read` (works over SSH)
        self.prompt = prompt
        self.poll_s = poll_s

    def __call__(self, episode: RolloutEpisode) -> Verdict:
        self.read()  # keys typed during the rollout (a takeover's t) are not a label
        self.prompt("label this rollout: [bold]s[/] success · [bold]f[/] failure · [bold]x[/] discard")
        while True:
            for ch in self.read():
                if ch in LABEL_KEYS:
                    label = LABEL_KEYS[ch]
                    return Verdict(False) if label is None else Verdict(True, label, "operator")
            time.sleep(self.poll_s)


@dataclass(frozen=True)
class RolloutSettings:
    """What ran: the contract's `rollout` attributes but the robot and the seed (per episode)."""

    bundle_manifest_sha256: str
    bundle_dir: str
    dataset_id: str | None = None
    task: str | None = None
    temporal_ensemble_k: float | None = None
    query_every: int = 1
    inference: str = "sync"
    backend: str = "torch"
    served: dict[str, str] = field(default_factory=dict)  # policy server, MLflow run, champion version (rollout_attrs)


class RolloutRecorder:
    """Stores the rollouts of one run into `session` (a new one, or an unfinalized rollout session resumed)."""

    def __init__(self, robot: Robot, layout: StoreLayout, session: str, settings: RolloutSettings,
                 labeler: Labeler, *, operator: str = "", jpeg_quality: int = 90):
        self.robot, self.layout, self.session = robot, layout, session
        self.settings, self.labeler = settings, labeler
        self.operator, self.jpeg_quality = operator, jpeg_quality
        if is_session_finalized(layout.session_dir(session)):
            raise StoreError(f"session {session!r} is finalized (immutable); record into a new session")
        self.stored: list[Path] = []
        self.discarded = 0

    def episode(self, index: int, seed: int | None) -> "RolloutEpisodeSink":
        """The sink of the run's `index`-th rollout (`hardware.rollout.RecordEpisode`)."""
        return RolloutEpisodeSink(self, seed)

    def finalize(self) -> Path | None:
        """Mark the session complete (the pipeline's sensor picks it up); nothing when it holds no episode."""
        if not episode_dirs(self.layout.session_dir(self.session)):
            return None
        return finalize_session(self.layout, self.session, {
            "kind": ROLLOUT_KIND,
            "bundle_manifest_sha256": self.settings.bundle_manifest_sha256,
            "bundle_dir": self.settings.bundle_dir,
            "robot": self.robot.name,
            "task": self.settings.task,
            "recorded_this_run": len(self.stored),
            "discarded_this_run": self.discarded,
        })


class RolloutEpisodeSink:
    """One rollout on its way into the store: committed with its verdict's label, or discarded."""

    def __init__(self, recorder: RolloutRecorder, seed: int | None):
        self.recorder, self.seed = recorder, seed
        robot = recorder.robot
        info = episode_info(robot, recorder.session, fps=float(robot.fps), task=recorder.settings.task or "",
                            operator=recorder.operator, seed=seed)
        self.writer = EpisodeWriter(recorder.layout, recorder.session, info, jpeg_quality=recorder.jpeg_quality)

    def add(self, record: StepRecord) -> None:
        write_step(self.writer, record)

    def abort(self) -> None:
        self.writer.discard()

    def close(self, episode: RolloutEpisode, run: EpisodeRun) -> None:
        rec = self.recorder
        try:
            verdict = rec.labeler(episode)
            if not verdict.keep:
                self.writer.discard()
                rec.discarded += 1
                return
            s = rec.settings
            attrs = rollout_attrs(
                s.bundle_manifest_sha256, s.bundle_dir, dataset_id=s.dataset_id, robot=rec.robot.name, task=s.task,
                temporal_ensemble_k=s.temporal_ensemble_k, query_every=s.query_every, inference=s.inference,
                backend=s.backend, seed=self.seed, label=verdict.label, label_source=verdict.source,
                takeover_spans=episode.takeover_spans,
                served=s.served,
            )
            end_attrs = {k: v for k, v in rec.robot.episode_attrs().items() if k != "task"}
            path = self.writer.close(extra_attrs={
                **attrs,
                "counters": run_counters(run),
                "loop_timing": run.report.to_dict(),
                # not `outcome`: that would make validation judge a rollout as a failed demonstration
                "extra": {**self.writer.info.extra, **end_attrs, "seed": self.seed,
                          "max_reward": run.max_reward, "success": run.success},
            })
        except BaseException:
            self.writer.discard()  # a label never given (Ctrl-C) or a write that failed: nothing half-kept
            raise
        rec.stored.append(path)
        episode.label, episode.stored = verdict.label, str(path)
