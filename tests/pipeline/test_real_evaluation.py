"""Real evaluation and promotion: labelled rollouts decide once both bundles have enough of them, otherwise the offline
rule does and the reason says why; evaluation videos land in MLflow; a finalized rollout session triggers one re-gate.
Real Dagster, real MLflow (SQLite), real Zarr rollout sessions written as `aloha rollout --record` writes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from assets_store.annotations import annotate
from assets_store.bundle import MANIFEST
from assets_store.hashing import file_sha256
from pipeline.definitions import build_definitions
from pipeline.jobs import REAL_EVALUATION_JOB, TRAIN_JOB
from pipeline.promotion import describe_record
from pipeline.pull import pull_bundle
from pipeline.resources import StoreResource
from pipeline.sensors import SESSION_KIND_TAG, finalized_sessions_sensor, rollout_sessions_sensor
from pipeline_kit import ingest, install_mlflow_db, make_session, migrated_mlflow_db, tiny_run_config
from rollout_kit import make_rollout_session

MODEL = "aloha-act"


@pytest.fixture
def store(layout, tmp_path_factory):
    install_mlflow_db(migrated_mlflow_db(tmp_path_factory), layout)
    return layout


def materializations(result):
    return {
        ev.materialization.asset_key.to_user_string(): {k: v.value for k, v in ev.materialization.metadata.items()}
        for ev in result.get_asset_materialization_events()
    }


def run(defs, instance, job, run_config):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, run_config=run_config)
    assert result.success
    return materializations(result)


def regate(defs, instance, min_real_rollouts=3):
    """What the rollout sensor's run does: count the rollouts again and run the gate again."""
    config = {"success_floor": -1.0, "min_real_rollouts": min_real_rollouts}
    return run(defs, instance, REAL_EVALUATION_JOB, {"ops": {"deployed_policy": {"config": config}}})


def client(layout):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=layout.mlflow_tracking_uri, registry_uri=layout.mlflow_tracking_uri)


def test_real_success_decides_in_both_directions_and_too_few_rollouts_fall_back(store, tmp_path):
    layout = store
    make_session(layout, "demos", 3)
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    assert ingest(defs, instance, "demos").success
    c = client(layout)

    # v1: the sim evaluation films its first episode and logs it to the training run.
    first = run(defs, instance, TRAIN_JOB, tiny_run_config(eval_episodes=1))
    run_1 = first["act_policy"]["mlflow_run_id"]
    videos = [a.path for a in c.list_artifacts(run_1, "evaluation/videos")]
    assert videos == ["evaluation/videos/episode_000_seed_" + first["policy_evaluation"]["seeds"].split("..")[0] + ".mp4"]
    assert [a.file_size > 0 for a in c.list_artifacts(run_1, "evaluation/videos")] == [True]
    links = first["policy_evaluation"]["videos"]
    assert f"({first['act_policy']['mlflow_run']}/artifacts/{videos[0]})" in links and "/#/experiments/" in links
    assert first["deployed_policy"]["promoted"] and first["real_robot_evaluation"]["candidate_rollouts"] == 0

    # v2, with no rollouts yet: the offline rule decides, and says why real success did not.
    second = run(defs, instance, TRAIN_JOB, tiny_run_config(eval_episodes=0))
    dep = second["deployed_policy"]
    assert dep["rule"] == "val_loss" and dep["candidate_version"] == 2
    assert dep["reason"].startswith("validation loss: only 0 labelled real rollouts of the candidate (< 10); ")
    sha_1 = file_sha256(Path(str(first["act_policy"]["bundle_dir"])) / MANIFEST)
    sha_2 = file_sha256(Path(str(second["act_policy"]["bundle_dir"])) / MANIFEST)

    # Rollouts of both: the champion v1 3/3, the candidate v2 1/3 (one unlabelled, one excluded: not counted).
    make_rollout_session(layout, "roll-v1", sha_1, ["success", "success", "success"])
    make_rollout_session(layout, "roll-v2", sha_2, ["success", "failure", "failure", None, "success"])
    annotate(layout, "roll-v2", 4, "exclude", by="op", reason="the cube fell off the table")
    # The simulator's rollouts of the candidate all succeed, but they are not real success: counted apart.
    make_rollout_session(layout, "roll-v2-sim", sha_2, ["success"] * 3, robot="sim-transfer-cube",
                         label_source="simulator")

    # Too few for the configured minimum: still the offline rule.
    dep = regate(defs, instance, min_real_rollouts=4)["deployed_policy"]
    assert dep["rule"] == "val_loss" and "only 3 labelled real rollouts of the candidate (< 4)" in dep["reason"]

    # Real success refuses a candidate whose validation loss is better.
    c.set_model_version_tag(MODEL, "1", "val_loss", "99.0")
    meta = regate(defs, instance)
    real, dep = meta["real_robot_evaluation"], meta["deployed_policy"]
    assert (real["candidate_successes"], real["candidate_rollouts"], real["candidate_excluded"]) == (1, 3, 1)
    assert real["candidate_unlabelled"] == 1 and real["champion_version"] == "1"
    assert real["candidate_simulated"] == 3 and real["champion_simulated"] == 0 and real["candidate_with_takeover"] == 0
    assert real["candidate_success"] == "1 of 3 (33.33%)" and real["candidate_ci95"] == "6.149% - 79.23%"
    assert (real["champion_successes"], real["champion_rollouts"]) == (3, 3)
    assert real["candidate_ci95_low"] < real["candidate_success_rate"] < real["candidate_ci95_high"]
    assert "`roll-v2/0`" in real["rollouts"] and f"file://{layout.session_dir('roll-v1')}" in real["rollouts"]
    assert not dep["promoted"] and dep["rule"] == "real_success" and dep["champion_version"] == 1
    assert dep["reason"].startswith("real success: candidate 1/3 (33%, 95% CI ") and "< champion v1 3/3" in dep["reason"]
    mv = c.get_model_version(MODEL, "2")
    assert mv.tags["promotion"] == "rejected" and mv.tags["promotion_rule"] == "real_success"
    assert mv.tags["real_successes"] == "1" and mv.tags["real_rollouts"] == "3"
    assert mv.description.startswith("not promoted on real success: real success: candidate 1/3")
    # The first rollouts' videos, rendered from the stored frames, are in each bundle's training run.
    assert [a.path for a in c.list_artifacts(second["act_policy"]["mlflow_run_id"], "evaluation/real_videos/roll-v2")] == [
        f"evaluation/real_videos/roll-v2/episode_00000{i}.mp4" for i in range(3)]
    assert len(c.list_artifacts(run_1, "evaluation/real_videos/roll-v1")) == 3
    assert "evaluation/real_videos/roll-v2/episode_000000.mp4" in real["candidate_videos"]

    # The operator relabels (the log's last word wins), and the candidate now wins on real success despite a worse
    # validation loss.
    c.set_model_version_tag(MODEL, "1", "val_loss", "0.0")
    for episode in (1, 2):
        annotate(layout, "roll-v2", episode, "label", by="op", label="success")
    annotate(layout, "roll-v1", 0, "label", by="op", label="failure")
    dep = regate(defs, instance)["deployed_policy"]
    assert dep["promoted"] and dep["rule"] == "real_success" and dep["champion_version"] == 2
    assert dep["reason"].startswith("real success: candidate 3/3 (100%, 95% CI 44%-100%) > champion v1 2/3 (67%")
    mv = c.get_model_version(MODEL, "2")
    assert mv.tags["promotion"] == "promoted" and mv.description.startswith("promoted on real success: ")

    # The promotion record `aloha pull` prints names the rule, from the deploy folder and from the registry's tags.
    for source in ("deploy", "mlflow"):
        pulled = pull_bundle(layout, tmp_path / f"pulled-{source}", source=source)
        line = describe_record(pulled["promotion"])
        assert "(decided by real success)" in line and "real success 3/3" in line and "> champion v1" in line
    check_pulled_record_names_its_bundle(layout, tmp_path)

    # Re-gating the champion itself leaves the decision that promoted it as it was.
    regate(defs, instance)
    assert c.get_model_version(MODEL, "2").tags["promotion"] == "promoted"

    # A success a human had to take over during counts as a failure of the policy.
    make_rollout_session(layout, "roll-v2-help", sha_2, ["success"], takeover_spans=[(1, 3)])
    real = regate(defs, instance)["real_robot_evaluation"]
    assert (real["candidate_successes"], real["candidate_rollouts"], real["candidate_with_takeover"]) == (3, 4, 1)
    assert "| success (taken over: counts as a failure) | operator | 2 |" in real["rollouts"]


def check_pulled_record_names_its_bundle(layout, tmp_path) -> None:
    """The record beside the champion names its bundle's manifest; a record describing another bundle (a promotion
    landing between reading the record and copying the bundle) is reported, never printed as this bundle's."""
    import json

    from assets_store.hashing import file_sha256
    from assets_store.layout import CHAMPION

    record_path = layout.promotion_record_path(MODEL, CHAMPION)
    record = json.loads(record_path.read_text())
    assert record["bundle_manifest_sha256"] == file_sha256(layout.deploy_path(MODEL, CHAMPION) / "manifest.json")
    record_path.write_text(json.dumps({**record, "bundle_manifest_sha256": "0" * 64, "version": 7}))
    pulled = pull_bundle(layout, tmp_path / "pulled-mismatch")
    assert pulled["promotion"] is None
    assert "the promotion record is for another bundle" in pulled["promotion_mismatch"] and "v7" in pulled[
        "promotion_mismatch"] and str(record_path) in pulled["promotion_mismatch"]
    assert (tmp_path / "pulled-mismatch" / "manifest.json").is_file()  # the verified bundle itself still arrives
    from typer.testing import CliRunner

    from pipeline.cli.app import build_app

    res = CliRunner().invoke(build_app(), ["pull", "--to", str(tmp_path / "pulled-cli"), "--store", str(layout.root)])
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "warning: " in text and "the promotion record is for another bundle" in text, text
    assert "promoted on: unknown (the record does not describe this bundle)" in text
    record_path.write_text(json.dumps(record))  # as the pipeline left it


def test_the_rollout_sensor_requests_one_run_per_new_finalized_rollout_session(layout):
    make_session(layout, "demos", 1)
    sha = "d" * 64
    make_rollout_session(layout, "roll-a", sha, ["success"])
    make_rollout_session(layout, "roll-b", sha, ["failure"], finalize=False)  # still recording
    instance = DagsterInstance.ephemeral()
    resources = {"store": StoreResource(root=str(layout.root))}

    # No policy evaluated yet: nothing to re-gate, and the session is not requested again later.
    result = rollout_sessions_sensor(build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, SensorResult) and not result.run_requests and "no policy" in result.skip_reason.skip_message
    cursor = result.cursor

    from dagster import AssetKey, AssetMaterialization

    instance.report_runless_asset_event(AssetMaterialization(AssetKey("policy_evaluation")))
    result = rollout_sessions_sensor(build_sensor_context(instance=instance, resources=resources, cursor=cursor))
    assert isinstance(result, SkipReason)

    from assets_store import finalize_session
    from assets_store.rollouts import ROLLOUT_KIND

    finalize_session(layout, "roll-b", {"kind": ROLLOUT_KIND, "bundle_manifest_sha256": sha})
    result = rollout_sessions_sensor(build_sensor_context(instance=instance, resources=resources, cursor=cursor))
    assert [r.job_name for r in result.run_requests] in ([None], [REAL_EVALUATION_JOB])
    assert result.run_requests[0].tags["aloha/rollout_sessions"] == "roll-b"
    assert result.run_requests[0].run_config == {}  # no gate has run yet: the job's defaults
    # Not twice: the cursor remembers it.
    again = rollout_sessions_sensor(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert isinstance(again, SkipReason)

    # The ingest sensor checks rollout sessions like any session, and tags their runs as rollouts, not demonstrations.
    ingest_result = finalized_sessions_sensor(build_sensor_context(instance=instance, resources=resources))
    kinds = {r.partition_key: r.tags[SESSION_KIND_TAG] for r in ingest_result.run_requests}
    assert kinds == {"demos": "demonstration", "roll-a": "rollout", "roll-b": "rollout"}


def test_the_sensors_re_gate_keeps_the_labs_run_config(layout):
    """A lab's gate settings and MLflow addresses hold when the sensor, not a person, launches the re-gate: the
    latest successful train_and_deploy or real_evaluation run's config for the gate, the real evaluation and the
    resources."""
    from dagster import AssetKey, AssetMaterialization, DagsterRun, DagsterRunStatus

    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization(AssetKey("policy_evaluation")))
    lab = {"success_floor": 0.5, "min_real_rollouts": 4}
    mlflow = {"config": {"tracking_uri": "http://mlflow.lab:5000", "ui_url": "https://mlflow.lab"}}
    trained = {"ops": {"act_policy": {"config": {"steps": 10}}, "deployed_policy": {"config": lab},
                       "real_robot_evaluation": {"config": {"videos": 1}}},
               "resources": {"mlflow": mlflow}}
    instance.add_run(DagsterRun(TRAIN_JOB, run_id="a" * 36, run_config=trained, status=DagsterRunStatus.SUCCESS))
    instance.add_run(DagsterRun(TRAIN_JOB, run_id="b" * 36, run_config={"ops": {"deployed_policy": {"config": {
        "success_floor": 0.9}}}}, status=DagsterRunStatus.FAILURE))  # a failed run says nothing
    resources = {"store": StoreResource(root=str(layout.root))}

    make_rollout_session(layout, "roll-a", "d" * 64, ["success"])
    result = rollout_sessions_sensor(build_sensor_context(instance=instance, resources=resources))
    request = result.run_requests[0]
    assert request.run_config == {"ops": {"deployed_policy": {"config": lab},
                                          "real_robot_evaluation": {"config": {"videos": 1}}},
                                  "resources": {"mlflow": mlflow}}
    assert request.tags["aloha/run_config_from"] == "a" * 36

    # A later re-gate run launched by hand with other settings is the one that carries over next.
    later = {"ops": {"deployed_policy": {"config": {"success_floor": 0.2}}}}
    instance.add_run(DagsterRun(REAL_EVALUATION_JOB, run_id="c" * 36, run_config=later,
                                status=DagsterRunStatus.SUCCESS))
    make_rollout_session(layout, "roll-b", "d" * 64, ["failure"])
    result = rollout_sessions_sensor(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert result.run_requests[0].run_config == later


def test_a_failed_evaluation_video_upload_only_warns(store, tmp_path):
    from pipeline.assets.evaluation import log_videos

    (tmp_path / "episode_000_seed_1.mp4").write_bytes(b"not really a video")
    warnings = []
    assert log_videos(client(store), "0" * 32, tmp_path, warnings.append) == []  # no such run: MLflow refuses
    assert len(warnings) == 1 and warnings[0].startswith(f"evaluation videos not logged to MLflow run {'0' * 32}: ")
