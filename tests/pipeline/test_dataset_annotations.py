"""The dataset asset honours session annotations: real Dagster materialization, real Zarr episodes, the real CLI."""

from __future__ import annotations

import json
import logging

from dagster import DagsterInstance
from typer.testing import CliRunner

from assets_store.dataset import load_dataset
from pipeline.cli.app import build_app
from pipeline.definitions import build_definitions
from pipeline_kit import ingest, make_session, metadata

runner = CliRunner()


def _build(defs, instance, **config):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={_key()})
    result = job.execute_in_process(instance=instance, run_config={"ops": {"dataset": {"config": config}}})
    assert result.success
    return metadata(result, "dataset"), result


def _key():
    from pipeline.assets.dataset import dataset

    return dataset.key


def _episodes(meta) -> list[str]:
    manifest, _ = load_dataset(meta["dataset_dir"])
    return [e.key for e in manifest.episodes]


def _annotate(layout, *args):
    res = runner.invoke(build_app(), ["episodes", *args, "--by", "tester", "--store", str(layout.root)])
    assert res.exit_code == 0, res.output


def test_labels_and_exclusions_change_the_datasets_episodes_and_id(layout):
    make_session(layout, "s1", 4)
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    assert ingest(defs, instance, "s1").success
    every = [f"s1/episode_{i:06d}.zarr" for i in range(4)]

    plain, _ = _build(defs, instance)
    assert _episodes(plain) == every and plain["annotations"] == {}

    _annotate(layout, "label", "s1/0", "success")
    labelled, _ = _build(defs, instance)
    assert _episodes(labelled) == every and labelled["dataset_id"] != plain["dataset_id"]
    manifest, _ = load_dataset(labelled["dataset_dir"])
    assert manifest.annotations == {"s1/episode_000000.zarr": {"label": "success"}}

    _annotate(layout, "exclude", "s1/2", "--reason", "operator bumped the table")
    excluded, _ = _build(defs, instance)
    assert _episodes(excluded) == [every[0], every[1], every[3]]
    assert excluded["episodes_left_out"] == 1 and excluded["dataset_id"] != labelled["dataset_id"]
    assert excluded["annotations"]["s1/episode_000002.zarr"] == {"excluded": "operator bumped the table"}

    _annotate(layout, "include", "s1/2")
    included, _ = _build(defs, instance)
    assert _episodes(included) == every and included["dataset_id"] == labelled["dataset_id"]  # undone exactly

    _annotate(layout, "label", "s1/3", "failure")
    default, _ = _build(defs, instance)
    assert _episodes(default) == every[:3]  # failed demonstrations are out by default
    kept, _ = _build(defs, instance, keep_failed_demos=True)
    assert _episodes(kept) == every and kept["dataset_id"] not in (default["dataset_id"], included["dataset_id"])

    res = runner.invoke(build_app(), ["episodes", "list", "--store", str(layout.root)])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "episode_000003.zarr" in line)
    assert "failure" in row


def test_a_bad_log_line_is_reported_by_name_and_the_rest_applies(layout):
    make_session(layout, "s1", 3)
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    assert ingest(defs, instance, "s1").success
    _annotate(layout, "exclude", "s1/0", "--reason", "blurry")
    log = layout.annotations_path("s1")
    with log.open("a") as f:
        f.write(json.dumps({"episode": "episode_000001.zarr", "action": "exclude", "by": "x", "at": 1.0}) + "\n")
    _annotate(layout, "label", "s1/2", "failure")

    meta, result = _build(defs, instance)
    assert _episodes(meta) == ["s1/episode_000001.zarr"]  # line 1 and line 3 applied, line 2 did not
    assert meta["annotation_problems"] == [
        f"{log}:2: reason: expected why the episode is excluded (non-empty text), got None"]
    logged = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any(f"{log}:2" in m for m in logged)
