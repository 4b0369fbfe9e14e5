"""A session becomes a partition the moment it is finalized, and not before: a session still being recorded is
invisible to the pipeline (the recorder writes SESSION_FINALIZED.json last). A finalized directory under raw/ that
cannot be a session (its name is not a valid session name) is never ingested, and the sensor says so each time.

Rollout sessions (`aloha rollout --record`, marker kind "rollout") are ingested like any session, so their episodes
are checked, but they are not demonstrations: datasets leave rollout episodes out unless asked, and the ingest run
is tagged with the session's kind. A second sensor re-evaluates and re-gates when one is finalized."""


import hashlib
import json

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets_store import is_session_finalized, list_sessions
from assets_store.rollouts import ROLLOUT_KIND, rollout_sessions
from assets_store.sessions import foreign_session_dirs
from pipeline.jobs import REAL_EVALUATION_JOB, TRAIN_JOB, ingest_session_job, real_evaluation_job
from pipeline.partitions import SESSIONS, sessions_partitions
from pipeline.resources import StoreResource


SESSION_KIND_TAG = "aloha/session_kind"


def finalized_new_sessions(store: StoreResource, known: set[str]) -> list[str]:
    layout = store.layout
    return [s for s in list_sessions(layout) if s not in known and is_session_finalized(layout.session_dir(s))]


def skipped_finalized_dirs(store: StoreResource) -> list[str]:
    """One line per finalized directory under raw/ that cannot be ingested, saying why."""
    return [f"{path}: {why}" for path, why in foreign_session_dirs(store.layout) if is_session_finalized(path)]


@sensor(
    job=ingest_session_job,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition and requests the ingest run for every newly finalized recording session.",
)
def finalized_sessions_sensor(context: SensorEvaluationContext, store: StoreResource):
    known = set(context.instance.get_dynamic_partitions(SESSIONS))
    new = finalized_new_sessions(store, known)
    skipped = skipped_finalized_dirs(store)
    for line in skipped:
        context.log.warning(f"not ingested: {line}")
    if not new:
        note = f"; not ingested (rename to a valid session name): {'; '.join(skipped)}" if skipped else ""
        return SkipReason(f"no newly finalized session under {store.layout.raw_dir}{note}")
    rollouts = set(rollout_sessions(store.layout)[0])
    context.log.info(f"new finalized sessions: {new}"
                     + (f" (rollouts, not demonstrations: {sorted(rollouts & set(new))})" if rollouts & set(new) else ""))
    return SensorResult(
        run_requests=[RunRequest(partition_key=s, run_key=f"ingest:{s}",
                                 tags={SESSION_KIND_TAG: ROLLOUT_KIND if s in rollouts else "demonstration"})
                      for s in new],
        dynamic_partitions_requests=[sessions_partitions.build_add_request(new)],
    )


# Evaluates `dataset`'s automation condition (rebuild after a session validates). Dagster's implicit default
# automation sensor starts stopped; this one runs as soon as the daemon does.
dataset_automation_sensor = AutomationConditionSensorDefinition(
    "dataset_automation",
    target=AssetSelection.assets("dataset"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds the dataset when a session finishes validating (training stays a deliberate launch).",
)


def _seen(cursor: str | None) -> set[str]:
    try:
        seen = json.loads(cursor) if cursor else []
    except ValueError:
        seen = []
    return {s for s in seen if isinstance(s, str)} if isinstance(seen, list) else set()


REGATE_OPS = ("real_robot_evaluation", "deployed_policy")  # the re-gate run's assets: their config carries over


def last_gate_config(instance) -> tuple[dict, str | None]:
    """(run config, its run id) for a re-gate: the gate's and the real evaluation's op config and the resources of
    the latest successful train_and_deploy or real_evaluation run, so a lab's floors, min_real_rollouts and MLflow
    addresses hold when a sensor, not a person, launches it. ({}, None) before any such run."""
    records = [r for job in (TRAIN_JOB, REAL_EVALUATION_JOB) for r in instance.get_run_records(
        RunsFilter(job_name=job, statuses=[DagsterRunStatus.SUCCESS]), limit=1)]
    if not records:
        return {}, None
    run = max(records, key=lambda r: r.storage_id).dagster_run  # the later one: ids only grow
    previous = run.run_config or {}
    config = {"ops": {k: v for k, v in (previous.get("ops") or {}).items() if k in REGATE_OPS},
              "resources": previous.get("resources") or {}}
    return {k: v for k, v in config.items() if v}, run.run_id


@sensor(
    job=real_evaluation_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="When a rollout session (`aloha rollout --record`) is finalized, requests a run that counts the "
                "labelled rollouts of the candidate and the champion and runs the promotion gate again.",
)
def rollout_sessions_sensor(context: SensorEvaluationContext, store: StoreResource):
    sessions, problems = rollout_sessions(store.layout)
    for problem in problems:
        context.log.warning(f"not read: {problem}")
    seen = _seen(context.cursor)
    new = sorted(set(sessions) - seen)
    if not new:
        return SkipReason(f"no newly finalized rollout session under {store.layout.raw_dir}")
    cursor = json.dumps(sorted(seen | set(new)))
    if context.instance.get_latest_materialization_event(AssetKey("policy_evaluation")) is None:
        return SensorResult(skip_reason=SkipReason(f"new rollout sessions {new}, but no policy has been evaluated "
                                                   "yet: the first training run counts them"), cursor=cursor)
    context.log.info(f"new finalized rollout sessions: {new}")
    key = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
    run_config, source = last_gate_config(context.instance)
    tags = {"aloha/rollout_sessions": ", ".join(new)[:1000]}
    if source:
        tags["aloha/run_config_from"] = source
        context.log.info(f"re-gate with the gate's run config of run {source}")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"real_evaluation:{key}", run_config=run_config, tags=tags)],
        cursor=cursor,
    )
