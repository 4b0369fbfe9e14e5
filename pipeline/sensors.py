"""A session becomes a partition the moment it is finalized, and not before: a session still being recorded is
invisible to the pipeline (the recorder writes SESSION_FINALIZED.json last). A finalized directory under raw/ that
cannot be a session (its name is not a valid session name) is never ingested, and the sensor says so each time."""


from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets_store import is_session_finalized, list_sessions
from assets_store.sessions import foreign_session_dirs
from pipeline.jobs import ingest_session_job
from pipeline.partitions import SESSIONS, sessions_partitions
from pipeline.resources import StoreResource


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
    context.log.info(f"new finalized sessions: {new}")
    return SensorResult(
        run_requests=[RunRequest(partition_key=s, run_key=f"ingest:{s}") for s in new],
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
