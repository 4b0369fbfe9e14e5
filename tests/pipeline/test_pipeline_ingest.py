"""Sensor and ingest: real Dagster (ephemeral instance), real Zarr episodes, no training."""

from __future__ import annotations

import json

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, SensorResult, SkipReason, build_sensor_context

from pipeline.definitions import build_definitions
from pipeline.jobs import INGEST_JOB
from pipeline.partitions import SESSIONS
from pipeline.resources import StoreResource
from pipeline.sensors import finalized_sessions_sensor
from pipeline_kit import check_one, check_results, corrupt_frame, ingest, make_session, metadata


def test_sensor_adds_only_finalized_sessions(layout):
    make_session(layout, "done-1", 1)
    make_session(layout, "recording", 1, finalize=False)
    instance = DagsterInstance.ephemeral()
    context = build_sensor_context(instance=instance, resources={"store": StoreResource(root=str(layout.root))})

    result = finalized_sessions_sensor(context)
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == ["done-1"]
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["done-1"]]

    instance.add_dynamic_partitions(SESSIONS, ["done-1"])
    assert isinstance(finalized_sessions_sensor(context), SkipReason)

    from assets_store import finalize_session

    finalize_session(layout, "recording")  # recording ended: now, and only now, it is picked up
    result = finalized_sessions_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["recording"]


def test_corrupt_episode_is_quarantined_and_the_rest_proceeds(layout):
    paths = make_session(layout, "s1", 3)
    corrupt_frame(paths[1])
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()

    result = ingest(defs, instance, "s1")
    assert result.success
    checks = check_results(result)
    assert set(checks) >= {"schema", "lengths_agree", "finite_values", "timestamps", "joint_limits",
                           "dropped_frames", "frames_decodable"}
    bad = checks["frames_decodable"]
    assert not bad.passed and bad.severity == AssetCheckSeverity.WARN  # does not block the good episodes
    assert all(c.passed for name, c in checks.items() if name != "frames_decodable")

    validated = metadata(result, "validated_episodes")
    assert validated["episodes_kept"] == 2 and validated["episodes_quarantined"] == 1
    assert "episode_000001.zarr" in validated["quarantine_reasons"]
    assert "joint_trajectories" in validated and "data:image/png;base64," in validated["joint_trajectories"]

    record = json.loads((layout.quarantine_dir / "s1" / "episode_000001.zarr.json").read_text())
    assert any(r.startswith("frames_decodable:") and "step 3" in r for r in record["reasons"])
    assert paths[1].is_dir()  # quarantined, never deleted

    raw = metadata(result, "raw_episodes")
    assert raw["episodes"] == 3 and raw["episodes_validated_now"] == 3

    again = ingest(defs, instance, "s1")  # unchanged inputs: every report comes from the cache
    assert metadata(again, "raw_episodes")["episodes_reused_from_cache"] == 3


def test_session_without_a_good_episode_blocks_downstream(layout):
    paths = make_session(layout, "bad", 1)
    corrupt_frame(paths[0])
    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "bad")
    check = check_results(result)["frames_decodable"]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert metadata(result, "validated_episodes") is None  # the blocking check stopped it


def test_unfinalized_session_is_refused(layout):
    make_session(layout, "live", 1, finalize=False)
    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "live")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "still being recorded" in str(failure.event_specific_data.error.message)


@pytest.mark.parametrize(
    "mutate, check",
    [
        (lambda g: g["observations/qpos"].__setitem__((2, 0), float("nan")), "finite_values"),
        (lambda g: g["observations/qpos"].__setitem__((2, 1), 3.0), "joint_limits"),
        (lambda g: g["timestamps"].__setitem__(5, 99.0), "timestamps"),
    ],
)
def test_each_check_names_its_reason(layout, mutate, check):
    import zarr

    path = make_session(layout, "m", 1, finalize=False)[0]
    mutate(zarr.open_group(str(path), mode="r+", zarr_format=3))
    report = check_one(layout, "m", path)
    failing = [name for name, c in report.checks.items() if not c["passed"]]
    assert failing == [check], report.checks
    assert report.partial_stats is None


def test_failed_recording_and_missing_frame_are_named(layout):
    failed, missing = make_session(layout, "f", 2, finalize=False)[:2]
    meta = json.loads((failed / "zarr.json").read_text())
    meta["attributes"].update(status="failed", failure="ServoHardwareError: servo ID 4 overload")
    (failed / "zarr.json").write_text(json.dumps(meta))
    report = check_one(layout, "f", failed)
    assert [n for n, c in report.checks.items() if not c["passed"]] == ["recording_completed"]
    assert "servo ID 4 overload" in report.checks["recording_completed"]["detail"]

    cam = json.loads((missing / "zarr.json").read_text())["attributes"]["cameras"][0]["name"]
    next((missing / "observations/images" / cam / "c").glob("3/0/0/0")).unlink()
    report = check_one(layout, "f", missing)
    assert [n for n, c in report.checks.items() if not c["passed"]] == ["frames_decodable"]
    assert "step 3" in report.checks["frames_decodable"]["detail"]


def test_dataset_is_requested_when_a_session_validates(layout):
    from dagster import AssetKey, evaluate_automation_conditions

    from pipeline.assets.dataset import dataset

    from dagster import DefaultSensorStatus

    defs = build_definitions(store_root=str(layout.root))
    assert defs.resolve_sensor_def("dataset_automation").default_status == DefaultSensorStatus.RUNNING
    instance = DagsterInstance.ephemeral()
    result = evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0  # nothing validated yet: no doomed run on a fresh instance
    cursor = result.cursor

    make_session(layout, "s1", 1)
    assert ingest(defs, instance, "s1").success
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.get_requested_partitions(AssetKey("dataset")) == {None}
    assert result.total_requested == 1  # only the dataset: training stays a deliberate launch
    cursor = result.cursor

    defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dataset.key}).execute_in_process(
        instance=instance
    )
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.total_requested == 0  # up to date: not rebuilt again
    cursor = result.cursor

    make_session(layout, "s2", 1, first_seed=5)
    assert ingest(defs, instance, "s2").success
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.get_requested_partitions(AssetKey("dataset")) == {None}


def test_failed_demonstrations_are_quarantined_unless_the_run_keeps_them(layout):
    paths = make_session(layout, "scripted", 3, finalize=False)
    for path, success in zip(paths, (True, False, None)):  # a success, a failed demo, nobody judged (hardware)
        meta = json.loads((path / "zarr.json").read_text())
        meta["attributes"]["outcome"] = {"max_reward": 4.0 if success else 1.0, "success": success}
        (path / "zarr.json").write_text(json.dumps(meta))
    from assets_store import finalize_session

    finalize_session(layout, "scripted")
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()

    result = ingest(defs, instance, "scripted")
    assert result.success
    check = check_results(result)["demonstration_succeeded"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    validated = metadata(result, "validated_episodes")
    assert validated["episodes_kept"] == 2 and validated["episodes_quarantined"] == 1
    record = json.loads((layout.quarantine_dir / "scripted" / "episode_000001.zarr.json").read_text())
    assert record["reasons"] == ["demonstration_succeeded: demonstration failed its task: outcome.success is false "
                                 "(max reward 1.0); set keep_failed_demos to train on it"]

    kept = defs.resolve_job_def(INGEST_JOB).execute_in_process(
        partition_key="scripted", instance=instance,
        run_config={"ops": {"raw_episodes": {"config": {"keep_failed_demos": True}}}},
    )
    assert metadata(kept, "validated_episodes")["episodes_kept"] == 3
    assert not (layout.quarantine_dir / "scripted" / "episode_000001.zarr.json").exists()


def test_a_full_disk_during_ingest_names_the_episode_and_leaves_no_partial_file(layout, monkeypatch):
    import errno
    from pathlib import Path

    make_session(layout, "full", 3)
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    real_write_text = Path.write_text

    def fill_up(self, data, *args, **kw):
        if "episode_000001" in self.name:  # the disk fills while this episode's report is written
            real_write_text(self, data[: len(data) // 2], *args, **kw)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, data, *args, **kw)

    monkeypatch.setattr(Path, "write_text", fill_up)
    result = ingest(defs, instance, "full")
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "episode episode_000001.zarr: could not write its validation report" in error.message
    assert "No space left on device" in error.message and "Traceback" not in error.message
    leftovers = [p for p in layout.root.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers  # the atomic write removed its temporary file
    reports = layout.episode_report_path("full", "episode_000000.zarr")
    assert json.loads(reports.read_text())["episode"] == "episode_000000.zarr"  # what was written before is intact
