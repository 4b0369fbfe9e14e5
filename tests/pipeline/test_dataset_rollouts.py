"""Rollout sessions in the dataset asset: out by default; with `takeover_spans`, exactly the steps a person drove come
in as demonstrations (the manifest's episode entries carry the span, the training index honours it). Real Dagster,
real Zarr episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from dagster import DagsterInstance

from assets_store import CameraSpec, EpisodeInfo, EpisodeReader, EpisodeWriter, finalize_session
from assets_store.dataset import load_dataset
from assets_store.rollouts import rollout_attrs
from pipeline.definitions import build_definitions
from pipeline_kit import H, JOINTS, ROBOT, START, W, ingest, make_session, metadata

SPAN = (5, 15)


def _rollout_session(layout, session: str, spans: list[list[tuple[int, int]]], steps: int = 24) -> None:
    info = EpisodeInfo(robot=ROBOT, joint_names=JOINTS, fps=50.0, cameras=[CameraSpec("top", H, W)],
                       task="transfer_cube")
    for k, episode_spans in enumerate(spans):
        w = EpisodeWriter(layout, session, info, workers=1)
        for t in range(steps):
            q = START + np.float32(0.001 * t)
            w.add_step(q, q + np.float32(0.01 * (k + 1)), 100.0 + t * 0.02,
                       images={"top": np.full((H, W, 3), t * 9, np.uint8)}, frame_info={"top": (float(t), 0.0)})
        w.close(extra_attrs=rollout_attrs("ab" * 32, "/bundles/b", robot=ROBOT, label="failure",
                                          label_source="operator", takeover_spans=episode_spans))
    finalize_session(layout, session, {"kind": "rollout", "bundle_manifest_sha256": "ab" * 32})


def _build(defs, instance, **config):
    from pipeline.assets.dataset import dataset

    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dataset.key})
    result = job.execute_in_process(instance=instance, run_config={"ops": {"dataset": {"config": config}}})
    assert result.success
    return metadata(result, "dataset")


def test_rollouts_stay_out_unless_asked_then_only_their_takeover_spans(layout):
    make_session(layout, "demos", 3)
    _rollout_session(layout, "dagger", [[SPAN], []])  # the second rollout ran with no takeover
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    assert ingest(defs, instance, "demos").success and ingest(defs, instance, "dagger").success

    plain = _build(defs, instance)
    manifest, _ = load_dataset(plain["dataset_dir"])
    assert {e.session for e in manifest.episodes} == {"demos"} and plain["takeover_steps"] == 0
    written = json.loads((Path(plain["dataset_dir"]) / "manifest.json").read_text())
    assert all("span" not in e for e in written["episodes"]) and "takeover_spans" not in written  # ids stay

    with_spans = _build(defs, instance, takeover_spans=True)
    manifest, _ = load_dataset(with_spans["dataset_dir"])
    rollout = [e for e in manifest.episodes if e.session == "dagger"]
    assert [(e.episode, e.span, e.num_steps) for e in rollout] == [("episode_000000.zarr", SPAN, 10)]
    assert with_spans["takeover_steps"] == 10 and with_spans["dataset_id"] != plain["dataset_id"]
    assert manifest.num_steps == 3 * 24 + 10

    # the training index holds exactly the span's steps: its samples start at the span and never reach past it
    from model.data import ChunkDataset

    ds = ChunkDataset(with_spans["dataset_dir"], "all", chunk_size=20, image_size=(H, W))
    assert len(ds) == 3 * 24 + 10
    ep = [i for i, e in enumerate(manifest.episodes) if e.session == "dagger"][0]
    first = int(ds.starts[ep])
    raw = EpisodeReader(rollout[0].path(layout))
    item = ds[first]
    a = ds.stats["action"]
    np.testing.assert_allclose(item["actions"][:10].numpy(), a.normalize(raw.action[5:15]), atol=1e-5)
    assert item["is_pad"].tolist() == [False] * 10 + [True] * 10
    assert int(item["images"][0, 0, 0, 0]) == 5 * 9  # the frame of the episode's step 5
    np.testing.assert_allclose(item["qpos"].numpy(), ds.stats["qpos"].normalize(raw.qpos[5]), atol=1e-5)



def test_asking_for_takeover_spans_when_none_came_in_keeps_the_dataset_id(layout):
    make_session(layout, "demos", 2)
    defs = build_definitions(store_root=str(layout.root))
    instance = DagsterInstance.ephemeral()
    assert ingest(defs, instance, "demos").success
    plain = _build(defs, instance)
    asked = _build(defs, instance, takeover_spans=True)
    assert asked["dataset_id"] == plain["dataset_id"] and asked["takeover_steps"] == 0
