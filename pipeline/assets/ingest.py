"""raw_episodes (+ blocking per-episode checks) -> validated_episodes, one partition per recording session.

The checks run inside the `raw_episodes` step (each episode is read once) and report one Dagster asset check per
kind of problem. A check that only some episodes fail is a WARN: those episodes are quarantined and the rest go on.
It is an ERROR, which blocks everything downstream, only when no episode of the session survives.
"""


import json
import time

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

from assets_store import EpisodeReader, is_session_finalized
from assets_store.hashing import write_json_atomic
from assets_store.sessions import episode_dirs
from pipeline import plots
from pipeline.partitions import sessions_partitions
from pipeline.resources import StoreResource
from pipeline.validation import CHECK_DESCRIPTIONS, CHECKS, CheckSettings, EpisodeReport, validate_cached

INGEST_GROUP = "ingest"


class ValidationConfig(Config):
    """Tolerances of the episode checks (changing them re-validates every episode of the session)."""

    rate_tolerance: float = 0.2
    max_late_ratio: float = 0.1
    joint_margin: float = 0.1
    max_dropped_ratio: float = 0.05
    decode_stride: int = 1
    keep_failed_demos: bool = False  # True: failed demonstrations (outcome.success false) are trained on too

    def settings(self) -> CheckSettings:
        return CheckSettings(**self.model_dump())


def _table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {esc(a)} | {esc(b)} |" for a, b in rows]
    return "\n".join(lines)


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
    reports: list[EpisodeReport] = []
    reused = 0
    start = time.perf_counter()
    for _, path in episode_dirs(sdir):
        report, was_cached = validate_cached(session, path, settings, layout.episode_report_path(session, path.name))
        reused += was_cached
        reports.append(report)
    elapsed = time.perf_counter() - start
    context.log.info(f"{session}: {len(reports)} episodes, {len(reports) - reused} validated now, {reused} cached")

    inventory = layout.session_inventory_path(session)
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
        "duration_s_total": float(sum(durations)),
        "duration_s_mean": float(np.mean(durations)) if durations else 0.0,
        "episodes_validated_now": len(reports) - reused,
        "episodes_reused_from_cache": reused,
        "episodes_passing_all_checks": usable,
        "validation_seconds": round(elapsed, 3),
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
    for episode in inventory["episodes"]:
        report = EpisodeReport.from_json(json.loads(layout.episode_report_path(session, episode).read_text()))
        record = layout.quarantine_record_path(session, episode)
        if report.passed:
            kept.append(report)
            record.unlink(missing_ok=True)  # passed now (e.g. looser settings): the old record no longer applies
            continue
        quarantined.append(report)
        # A record, not a move: the episode stays where the recorder put it, so nothing is ever lost.
        record.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            record,
            {
                "session": session,
                "episode": episode,
                "path": report.path,
                "content_hash": report.content_hash,
                "reasons": report.reasons,
                "checks": report.checks,
                "quarantined_at": time.time(),
                "dagster_run_id": context.run.run_id,
            },
        )

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
    write_json_atomic(summary_path, summary)
    if not kept:
        raise Failure(f"session {session!r}: every episode was quarantined", metadata={"quarantined": len(quarantined)})

    metadata = {
        "session": session,
        "episodes_kept": len(kept),
        "episodes_quarantined": len(quarantined),
        "steps_kept": int(sum(r.num_steps for r in kept)),
        "duration_s_kept": float(sum(r.duration_s for r in kept)),
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
