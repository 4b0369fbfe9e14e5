"""The whole graph in-process on tiny data and a tiny model: real Dagster, real MLflow (SQLite), real Zarr, the sim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from typer.testing import CliRunner

from assets_store.bundle import verify_bundle
from pipeline.definitions import build_definitions
from pipeline.jobs import INGEST_JOB, TRAIN_JOB
from pipeline.partitions import SESSIONS
from pipeline_kit import corrupt_frame, install_mlflow_db, make_session, migrated_mlflow_db, tiny_run_config

MODEL = "aloha-act"


@pytest.fixture
def store(layout, tmp_path_factory):
    install_mlflow_db(migrated_mlflow_db(tmp_path_factory), layout)
    return layout


def ingest(defs, instance, session):
    instance.add_dynamic_partitions(SESSIONS, [session])
    result = defs.resolve_job_def(INGEST_JOB).execute_in_process(partition_key=session, instance=instance)
    assert result.success
    return materializations(result)


def train(defs, instance, **kw):
    result = defs.resolve_job_def(TRAIN_JOB).execute_in_process(instance=instance, run_config=tiny_run_config(**kw))
    assert result.success
    return materializations(result)


def materializations(result):
    return {
        ev.materialization.asset_key.to_user_string(): {k: v.value for k, v in ev.materialization.metadata.items()}
        for ev in result.get_asset_materialization_events()
    }


def client(layout):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=layout.mlflow_tracking_uri, registry_uri=layout.mlflow_tracking_uri)


def test_whole_graph_then_pull_and_rollout(store, tmp_path):
    layout = store
    paths = make_session(layout, "s1", 4)
    corrupt_frame(paths[3])
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()

    ingested = ingest(defs, instance, "s1")
    assert ingested["validated_episodes"]["episodes_kept"] == 3
    meta = train(defs, instance, success_floor=0.0)  # the default floor

    ds, trained, ev, gated = (meta[k] for k in ("dataset", "act_policy", "policy_evaluation", "deployed_policy"))
    assert ds["episodes"] == 3 and ds["episodes_val"] >= 1
    assert trained["dataset_id"] == ds["dataset_id"] and trained["steps"] == 2
    assert "data:image/png;base64," in trained["loss_curve"]
    assert ev["episodes"] == 1 and ev["success_rate"] == 0.0 and "success_per_seed" in ev  # 6 steps never succeed
    # Lineage: the evaluation judged this run's training, and the gate judged this run's evaluation.
    assert ev["mlflow_run_id"] == trained["mlflow_run_id"] == gated["mlflow_run_id"]
    assert ev["trained_in_dagster_run"] == gated["evaluated_in_dagster_run"]
    # A policy that never succeeds is not deployed, not even as the first champion.
    assert gated["promoted"] is False and "not above the floor" in gated["reason"]
    assert not (layout.deploy_dir / MODEL).exists()

    # The gate alone, with the floor off, promotes the latest evaluation's candidate (the same registered version).
    result = defs.resolve_job_def(TRAIN_JOB).execute_in_process(
        instance=instance, asset_selection=[AssetKey("deployed_policy")],
        run_config={"ops": {"deployed_policy": {"config": {"success_floor": -1.0}}}},
    )
    assert result.success
    dep = materializations(result)["deployed_policy"]
    assert dep["promoted"] is True and dep["candidate_version"] == 1 and "no champion yet" in dep["reason"]
    assert dep["mlflow_run_id"] == trained["mlflow_run_id"] and dep["evaluated_in_dagster_run"] == ev["trained_in_dagster_run"]

    c = client(layout)
    run = c.get_run(trained["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dataset_id"] == ds["dataset_id"] and run.data.tags["dagster_run_id"]
    assert "git_commit" in run.data.tags
    assert run.data.params["model.hidden_dim"] == "32" and run.data.params["train.steps"] == "2"
    # What MLflow says was trained is what the bundle holds (after the offline backbone fallback too).
    bundle_act = json.loads((Path(str(trained["bundle_dir"])) / "config.json").read_text())["act"]
    assert {k: run.data.params[f"model.{k}"] for k in bundle_act} == {k: str(v) for k, v in bundle_act.items()}
    history = c.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2]  # per-step metrics
    assert "val_loss" in run.data.metrics and "eval/success_rate" in run.data.metrics
    assert "system/max_rss_mb" in run.data.metrics  # cheap process metrics (no psutil here)
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id, "bundle")}
    assert {"bundle/model.safetensors", "bundle/manifest.json"} <= artifacts

    champion = c.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1" and champion.run_id == run.info.run_id
    deployed = layout.deploy_dir / MODEL / "champion"
    assert verify_bundle(deployed)["mlflow_run_id"] == run.info.run_id
    assert (layout.deploy_dir / MODEL / "v1").is_dir()

    from pipeline.cli.app import build_app

    app = build_app()
    runner = CliRunner()
    for source in ("deploy", "mlflow"):
        dest = tmp_path / f"pulled-{source}"
        res = runner.invoke(app, ["pull", "--from", source, "--to", str(dest), "--store", str(layout.root)])
        assert res.exit_code == 0, res.output
        assert verify_bundle(dest)["files"] == verify_bundle(deployed)["files"]
        # What it was promoted on, from the record beside the deployed bundle or the registry's tags.
        promoted_on = " ".join(res.output.split())
        assert "promoted on: success rate 0.0%" in promoted_on and "no champion yet" in promoted_on, res.output

    # A tampered bundle is refused by pull (the copy is verified before it lands).
    tampered = layout.deploy_dir / MODEL / "v1" / "stats.json"
    tampered.write_text(tampered.read_text() + " ")
    res = runner.invoke(app, ["pull", "--version", "1", "--to", str(tmp_path / "bad"), "--store", str(layout.root)])
    assert res.exit_code != 0 and "sha256 mismatch" in res.output
    assert not (tmp_path / "bad").exists()

    report = tmp_path / "rollout.json"
    res = runner.invoke(app, ["rollout", "--robot", "sim-transfer-cube", "--policy", str(tmp_path / "pulled-deploy"),
                              "--episodes", "1", "--max-steps", "5", "--json", str(report), "--store", str(layout.root)])
    assert res.exit_code == 0, res.output
    assert "latency" in res.output and "success rate" in res.output
    out = json.loads(report.read_text())
    assert len(out["episodes"]) == 1 and out["latency_ms"]["p50"] > 0

    # Same bundle on a robot with other cameras: refused before anything moves.
    cfg = json.loads((tmp_path / "pulled-deploy" / "config.json").read_text())
    assert cfg["camera_names"] == ["top"]
    from hardware.rollout import IncompatiblePolicy, make_robot_for_policy
    from model.policy import Policy

    policy = Policy.from_bundle(tmp_path / "pulled-deploy")
    policy.camera_names = ["no_such_camera"]
    with pytest.raises(IncompatiblePolicy):
        make_robot_for_policy("sim-transfer-cube", policy)


def test_second_session_and_a_worse_candidate(store):
    layout = store
    make_session(layout, "a", 3)
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    ingest(defs, instance, "a")
    first = train(defs, instance, eval_episodes=0)
    assert first["deployed_policy"]["promoted"] and first["policy_evaluation"]["primary_metric"] == "val_loss"
    reports_a = {p: p.stat().st_mtime_ns for p in (layout.root / "pipeline" / "episodes" / "a").iterdir()}

    make_session(layout, "b", 2, first_seed=10)
    meta_b = ingest(defs, instance, "b")
    assert meta_b["raw_episodes"]["episodes"] == 2 and meta_b["raw_episodes"]["episodes_validated_now"] == 2
    assert {p: p.stat().st_mtime_ns for p in reports_a} == reports_a  # session a was not touched

    # Pretend the champion is excellent: the next candidate must not take its place.
    c = client(layout)
    c.set_model_version_tag(MODEL, "1", "val_loss", "0.0")
    # training in a Dagster Pipes child, with the demo's architecture choices (run config -> child -> bundle)
    second = train(defs, instance, eval_episodes=0, launcher="subprocess", backbone_stages=3, dropout=0.0)
    assert second["act_policy"]["launcher"] == "subprocess" and second["act_policy"]["steps"] >= 1
    verify_bundle(second["act_policy"]["bundle_dir"])
    bundle_config = json.loads((Path(second["act_policy"]["bundle_dir"]) / "config.json").read_text())
    assert bundle_config["act"]["backbone_stages"] == 3 and bundle_config["act"]["dropout"] == 0.0
    assert second["dataset"]["dataset_id"] != first["dataset"]["dataset_id"]
    assert second["dataset"]["episodes"] == 5
    dep = second["deployed_policy"]
    assert dep["promoted"] is False and dep["candidate_version"] == 2 and dep["champion_version"] == 1
    assert "validation loss" in dep["reason"] and ">=" in dep["reason"]
    assert str(c.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert c.get_model_version(MODEL, "2").tags["promotion"] == "rejected"
    assert c.get_run(second["act_policy"]["mlflow_run_id"]).info.status == "FINISHED"


def test_k8s_launcher_without_dagster_k8s_is_a_clear_failure(store):
    make_session(store, "a", 2)
    defs = build_definitions(store_root=str(store.root))
    instance = DagsterInstance.ephemeral()
    ingest(defs, instance, "a")
    result = defs.resolve_job_def(TRAIN_JOB).execute_in_process(
        instance=instance, run_config=tiny_run_config(launcher="k8s", k8s_image="aloha:gpu"), raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "act_policy" and "dagster-k8s" in str(failure.event_specific_data.error)


def test_a_crashed_training_run_ends_failed_not_running(store):
    from pipeline.resources import MlflowResource, StoreResource

    mlflow = MlflowResource(store=StoreResource(root=str(store.root)))
    with pytest.raises(RuntimeError):
        with mlflow.run("boom") as run:
            run.log_metrics({"loss": 1.0}, step=1)
            raise RuntimeError("training crashed")
    finished = client(store).get_run(run.run_id)
    assert finished.info.status == "FAILED"
    assert [m.value for m in client(store).get_metric_history(run.run_id, "loss")] == [1.0]  # buffered, then flushed
    assert finished.info.artifact_uri.startswith(store.mlflow_artifacts_uri)  # never under the working directory


def test_demo_reports_a_failed_pipeline_and_exits(store, monkeypatch):
    """A failing step ends `aloha demo` with one clear message and exit status 1 (it once hung in the error hook)."""
    import model.train

    from pipeline.cli.app import build_app

    def broken_train(*args, **kwargs):
        raise RuntimeError("injected: training diverged")

    monkeypatch.setattr(model.train, "train", broken_train)
    res = CliRunner().invoke(build_app(), [
        "demo", "--episodes", "2", "--episode-len", "20", "--train-steps", "1", "--eval-episodes", "1",
        "--resolution", "32x48", "--session", "broken", "--store", str(store.root)])
    assert res.exit_code == 1, res.output
    assert "the pipeline failed: RuntimeError: injected: training diverged" in res.output
    assert "session 'broken'" in res.output
    runs = client(store).search_runs([e.experiment_id for e in client(store).search_experiments()])
    assert runs and all(r.info.status == "FAILED" for r in runs)  # never left RUNNING


def test_training_run_config_is_generated_from_the_model_config():
    """act_policy's launchpad config: every tunable model config field, with its description; training fields
    default to the pipeline preset's values, architecture fields to the chosen preset's."""
    from model.config import ACTConfig, TrainConfig, get_preset, tunable_fields
    from pipeline.training_config import PIPELINE_PRESET, TrainingConfig

    fields = TrainingConfig.model_fields
    pipeline = get_preset(PIPELINE_PRESET)
    for name, f in tunable_fields(ACTConfig).items():
        assert fields[name].default is None and fields[name].description.startswith(f.description), name
    defaults = pipeline.values(TrainConfig)
    for name, f in tunable_fields(TrainConfig).items():
        if name == "image_size":  # (H, W): two launchpad fields
            assert (fields["image_height"].default, fields["image_width"].default) == defaults[name]
            assert fields["image_height"].description.startswith(f.description)
        elif name == "device":  # the pipeline's own default: the first GPU when there is one
            assert fields[name].default == "auto"
        else:
            assert (fields[name].default, fields[name].description) == (defaults[name], f.description), name
    # a plain run trains the pipeline preset; another preset brings its architecture
    act, train = TrainingConfig().model_configs()
    assert act == pipeline.act_config() and train == pipeline.train_config(device=train.device)
    assert TrainingConfig(preset="paper").model_configs()[0] == get_preset("paper").act_config()
    # Dagster's schema of it: the launchpad shows a description on every field
    schema = TrainingConfig.to_fields_dict()
    assert set(schema) == set(fields) and all(f.description for f in schema.values())


def test_demo_preset_is_aloha_demos_defaults():
    import inspect

    from model.config import DEMO
    from pipeline.training_config import TrainingConfig
    from pipeline.cli.demo import demo
    from pipeline.demo import DemoOptions, run_config

    act, train = DEMO.act_config(), DEMO.train_config()
    opts = DemoOptions()
    assert (opts.train_resolution, opts.backbone_stages, opts.dropout, opts.lr, opts.train_minutes * 60,
            opts.train_steps, opts.num_workers) == (train.image_size, act.backbone_stages, act.dropout, train.lr,
                                                    train.time_budget_s, train.steps, train.num_workers)
    cli = {name: p.default for name, p in inspect.signature(demo).parameters.items()}
    assert (cli["train_resolution"], cli["backbone_stages"], cli["dropout"], cli["train_minutes"] * 60,
            cli["train_steps"]) == ("{}x{}".format(*train.image_size), act.backbone_stages, act.dropout,
                                    train.time_budget_s, train.steps)
    # the demo's run config trains exactly the preset
    got_act, got_train = TrainingConfig(**run_config(opts)["ops"]["act_policy"]["config"]).model_configs()
    assert got_act == act and got_train == DEMO.train_config(device=got_train.device)
