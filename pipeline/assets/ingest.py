"""raw_episodes (+ blocking per-episode checks) -> validated_episodes, one partition per recording session.

The checks run inside the `raw_episodes` step (each episode is read once) and report one Dagster asset check per
kind of problem. A check that only some episodes fail is a WARN: those episodes are quarantined (there and then, so
a session whose every episode fails still gets its records) and the rest go on. It is an ERROR, which blocks
everything downstream, only when no episode of the session survives.
"""


import contextlib
import json
import time
from typing import Iterator

import numpy as np
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets_store import EpisodeReader, StoreError, is_session_finalized
from assets_store.checks import CHECK_DESCRIPTIONS, CHECKS, CheckSettings
from assets_store.episode_report import EpisodeReport
from assets_store.hashing import write_json_atomic
from assets_store.sessions import session_entries
from pipeline import metadata_format as fmt, plots
from pipeline.partitions import sessions_partitions
from pipeline.resources import StoreResource
from pipeline.validation import validate_cached, write_quarantine_records

INGEST_GROUP = "ingest"


_DEFAULTS = CheckSettings()  # the same bar `aloha episodes check` applies


class ValidationConfig(Config):
    """Tolerances of the episode checks (changing them re-validates every episode of the session)."""

    rate_tolerance: float = Field(_DEFAULTS.rate_tolerance, description=(
        "How far the median control period may stray from 1/fps, as a share (0.2: within 20%)."))
    max_late_ratio: float = Field(_DEFAULTS.max_late_ratio, description=(
        "Largest share of steps allowed to take more than 1.5 control periods."))
    joint_margin: float = Field(_DEFAULTS.joint_margin, description=(
        "How far beyond a joint limit a position is still accepted (rad, or normalized gripper units)."))
    max_dropped_ratio: float = Field(_DEFAULTS.max_dropped_ratio, description=(
        "Largest share of camera frames allowed to be dropped."))
    decode_stride: int = Field(_DEFAULTS.decode_stride, description=(
        "Decode every n-th camera frame when checking frames decode (1: all)."))
    keep_failed_demos: bool = Field(_DEFAULTS.keep_failed_demos, description=(
        "Keep demonstrations whose recorded outcome says they failed the task (else they are quarantined)."))
    base_linear_limit: float = Field(_DEFAULTS.base_limits[0], description=(
        "Mobile base linear speed limit (m/s) for episodes that do not record their robot's own."))
    base_angular_limit: float = Field(_DEFAULTS.base_limits[1], description=(
        "Mobile base angular speed limit (rad/s) for episodes that do not record their robot's own."))
    base_margin: float = Field(_DEFAULTS.base_margin, description=(
        "Share of a base speed limit beyond it still accepted (measured velocities overshoot a bit)."))

    def settings(self) -> CheckSettings:
        values = self.model_dump()
        limits = (values.pop("base_linear_limit"), values.pop("base_angular_limit"))
        return CheckSettings(**values, base_limits=limits)


def _table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {esc(a)} | {esc(b)} |" for a, b in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def _disk_errors(what: str) -> Iterator[None]:
    """A full or read-only disk is one clear failure naming the episode or session; every write is atomic, so what
    was written before stays as it was and no partial file remains."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise Failure(f"{what}: {exc.strerror or exc}{where}; earlier reports and records are unchanged") from None


@asset(
    partitions_def=sessions_partitions,
    group_name=INGEST_GROUP,
    check_specs=[
        AssetCheckSpec(name, asset="raw_episodes", blocking=True, description=CHECK_DESCRIPTIONS[name]) for name in CHECKS
    ],
    description="Episodes of one finalized recording session, checked one by one (reports cached by content hash).",
    kinds={"zarr"},
)
def raw_episodes(context: AssetExecutionContext, config: ValidationConfig, store: StoreResource) -> MaterializeResult:
    session = context.partition_key
    layout = store.layout
    sdir = layout.session_dir(session)
    if not sdir.is_dir():
        raise Failure(f"session {session!r}: {sdir} does not exist")
    if not is_session_finalized(sdir):
        raise Failure(f"session {session!r} is still being recorded (no finalized marker); finalize it first")
    settings = config.settings()
    try:
        entries = session_entries(layout, session)  # the marker's episodes against the directory's
    except StoreError as exc:
        raise Failure(f"session {session!r}: {exc}") from None
    reports: list[EpisodeReport] = []
    reused = 0
    start = time.perf_counter()
    for entry in entries:
        with _disk_errors(f"session {session!r}, episode {entry.name}: could not write its validation report"):
            report, was_cached = validate_cached(session, entry, settings,
                                                 layout.episode_report_path(session, entry.name))
        reused += was_cached
        reports.append(report)
    elapsed = time.perf_counter() - start
    context.log.info(f"{session}: {len(reports)} episodes, {len(reports) - reused} validated now, {reused} cached")
    for entry in entries:
        if entry.problem:
            context.log.warning(f"{session}/{entry.name}: {entry.problem}")
    with _disk_errors(f"session {session!r}: could not write its quarantine records"):
        write_quarantine_records(layout, session, reports, context.run.run_id)
    inventory = layout.session_inventory_path(session)
    with _disk_errors(f"session {session!r}: could not write its inventory"):
        inventory.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            inventory,
            {"session": session, "episodes": [r.episode for r in reports], "settings_key": settings.key()},
        )

    usable = sum(r.passed for r in reports)
    check_results = []
    for name in CHECKS:
        failing = [r for r in reports if not r.checks[name]["passed"]]
        severity = AssetCheckSeverity.ERROR if usable == 0 else AssetCheckSeverity.WARN
        meta = {"episodes_checked": len(reports), "episodes_failing": len(failing)}
        if failing:
            meta["failures"] = MetadataValue.md(
                _table([(r.episode, r.checks[name]["detail"]) for r in failing], ("episode", "reason"))
            )
        check_results.append(
            AssetCheckResult(
                check_name=name,
                asset_key="raw_episodes",
                passed=bool(reports) and not failing,
                severity=severity,
                metadata=meta,
                description=CHECK_DESCRIPTIONS[name],
            )
        )

    durations = [r.duration_s for r in reports]
    metadata = {
        "session": session,
        "episodes": len(reports),
        "steps": int(sum(r.num_steps for r in reports)),
        "recorded_time": fmt.duration(sum(durations)),
        "episode_time_mean": fmt.duration(float(np.mean(durations)) if durations else 0.0),
        "episodes_validated_now": len(reports) - reused,
        "episodes_reused_from_cache": reused,
        "episodes_passing_all_checks": usable,
        "validation_time": fmt.duration(elapsed),
        "session_dir": MetadataValue.path(str(sdir)),
    }
    return MaterializeResult(metadata=metadata, check_results=check_results)


@asset(
    partitions_def=sessions_partitions,
    group_name=INGEST_GROUP,
    deps=[raw_episodes],
    description="The session's good episodes with their partial statistics; failures quarantined with reasons.",
)
def validated_episodes(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    session = context.partition_key
    layout = store.layout
    inventory_file = layout.session_inventory_path(session)
    try:
        inventory = json.loads(inventory_file.read_text())
    except FileNotFoundError:
        raise Failure(f"session {session!r}: raw_episodes has not been materialized for it") from None

    kept: list[EpisodeReport] = []
    quarantined: list[EpisodeReport] = []
    for episode in inventory["episodes"]:  # raw_episodes wrote their quarantine records
        report = EpisodeReport.from_json(json.loads(layout.episode_report_path(session, episode).read_text()))
        (kept if report.passed else quarantined).append(report)

    summary = {
        "session": session,
        "episodes": [
            {
                "episode": r.episode,
                "content_hash": r.content_hash,
                "num_steps": r.num_steps,
                "fps": r.fps,
                "robot": r.robot,
                "joint_names": r.joint_names,
                "action_names": r.action_names,
                "camera_names": r.camera_names,
                "partial_stats": r.partial_stats,
            }
            for r in kept
        ],
        "quarantined": {r.episode: r.reasons for r in quarantined},
    }
    summary_path = layout.session_summary_path(session)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    with _disk_errors(f"session {session!r}: could not write its summary"):
        write_json_atomic(summary_path, summary)
    if not kept:
        raise Failure(f"session {session!r}: every episode was quarantined", metadata={"quarantined": len(quarantined)})

    metadata = {
        "session": session,
        "episodes_kept": len(kept),
        "episodes_quarantined": len(quarantined),
        "steps_kept": int(sum(r.num_steps for r in kept)),
        "recorded_time_kept": fmt.duration(sum(r.duration_s for r in kept)),
        "quarantine_reasons": MetadataValue.md(
            _table([(r.episode, "; ".join(r.reasons)) for r in quarantined], ("episode", "reasons"))
            if quarantined
            else "none"
        ),
        "quarantine_dir": MetadataValue.path(str(layout.quarantine_session_dir(session))),
        "summary": MetadataValue.path(str(summary_path)),
    }
    first = kept[0]
    try:
        metadata["joint_trajectories"] = MetadataValue.md(_trajectory_plot(first))
    except Exception as exc:  # a plot is a nicety; never fail the step for it
        context.log.warning(f"trajectory plot skipped: {exc}")
    return MaterializeResult(metadata=metadata)


def _trajectory_plot(report: EpisodeReport) -> str:
    episode = EpisodeReader(report.path)
    return plots.joint_trajectories(
        episode.qpos, episode.action, report.joint_names, report.fps, f"{report.session}/{report.episode}: follower joints"
    )
