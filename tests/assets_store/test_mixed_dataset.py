"""Co-trained datasets (assets_store/cotraining.py): a static 14-D and a mobile 16-D session recorded from the real
simulators, conformed to the mobile robot (padding, cameras by name), their groups and weights in the manifest and its
id, statistics from the target robot's own data, the clear error of a missing target camera, old manifests."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from assets_store import StoreLayout
from assets_store.cotraining import GroupSpec
from assets_store.dataset import DatasetManifest, build_cotraining_dataset, load_dataset, write_dataset
from assets_store.errors import StoreError
from assets_store.stats import dataset_stats
from cotrain_kit import MOBILE, STATIC, entries, mixed_dataset, record_both, record_sim

BASE = ["base_linear_vel", "base_angular_vel"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> StoreLayout:
    layout = StoreLayout(tmp_path_factory.mktemp("cotrain") / "store")
    record_both(layout)
    return layout


def test_mixed_dataset_records_groups_padding_and_target(store):
    manifest, stats = load_dataset(mixed_dataset(store))
    assert manifest.robot == MOBILE and manifest.camera_names == ["top"]
    assert manifest.action_names[-2:] == BASE and len(manifest.action_names) == 16 and len(manifest.joint_names) == 14
    mobile, static = manifest.groups
    assert (mobile.name, mobile.sessions, mobile.weight, mobile.robot) == ("mobile", ["mobile"], 0.5, MOBILE)
    assert mobile.padded_actions == [] and mobile.dropped_cameras == ["cam_high"] and mobile.in_stats
    assert (static.name, static.sessions, static.weight, static.robot) == ("static", ["static"], 0.5, STATIC)
    assert static.padded_actions == BASE and static.dropped_cameras == ["angle"] and not static.in_stats
    assert {e.session for e in manifest.episodes} == {"mobile", "static"} and len(manifest.episodes) == 4
    # The recipe's statistics: the target robot's own (mobile) data only, so the static zeros never enter them.
    own = dataset_stats([e.partial_stats for e in entries(store, "mobile")])
    for key in ("qpos", "action"):
        np.testing.assert_allclose(stats[key].mean, own[key].mean, rtol=1e-6)
        np.testing.assert_allclose(stats[key].std, own[key].std, rtol=1e-6)
        assert stats[key].count == own[key].count == 40


def test_each_group_keeps_training_episodes(store):
    manifest, _ = load_dataset(mixed_dataset(store, val_fraction=0.5))  # split per group: one of each in val
    assert sorted(e.session for e in manifest.val) == ["mobile", "static"]
    assert sorted(e.session for e in manifest.train) == ["mobile", "static"]


def test_id_changes_with_groups_weights_and_padding(store):
    manifest, _ = load_dataset(mixed_dataset(store))
    assert load_dataset(mixed_dataset(store))[0].id == manifest.id  # same groups, same id
    assert load_dataset(mixed_dataset(store, mobile=0.7, static=0.3))[0].id != manifest.id
    mobile, static = manifest.groups
    for changed in ([mobile, replace(static, padded_actions=[])], [replace(mobile, sessions=["mobile", "x"]), static],
                    [mobile]):
        assert replace(manifest, groups=changed).id != manifest.id
    again = DatasetManifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert again.groups == manifest.groups and again.id == manifest.id


def test_missing_target_camera_names_the_group_session_and_camera(store):
    groups = [GroupSpec("mobile", ["mobile"], 0.5), GroupSpec("static", ["static"], 0.5)]
    # The mobile robot's cameras by default: `cam_high` is one, the static scene has none.
    with pytest.raises(StoreError, match=r"group 'static' session 'static' episode .*target camera 'cam_high' missing"):
        build_cotraining_dataset(entries(store, "mobile", "static"), groups, robot=MOBILE)
    with pytest.raises(StoreError, match=r"cameras: \['wrist'\] are not cameras of the target robot"):
        build_cotraining_dataset(entries(store, "mobile", "static"), groups, robot=MOBILE, camera_names=["wrist"])


def test_a_group_plays_a_target_camera_under_its_own_name(store):
    # The simulator's static `top` plays the mobile head camera, as static ALOHA's cam_high does in the recipe.
    manifest, _ = load_dataset(mixed_dataset(store, cameras=["cam_high"], static_cameras={"cam_high": "top"}))
    mobile, static = manifest.groups
    assert manifest.camera_names == ["cam_high"]
    assert (mobile.camera_map, mobile.dropped_cameras) == ({}, ["top"])
    assert (static.camera_map, static.dropped_cameras) == ({"cam_high": "top"}, ["angle"])
    again = DatasetManifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert again.groups == manifest.groups and again.id == manifest.id
    assert replace(manifest, groups=[mobile, replace(static, camera_map={"cam_high": "angle"})]).id != manifest.id
    # A group without a map writes no camera_map: the ids of datasets built before the maps stay; a camera mapped
    # to its own name is no map.
    plain = load_dataset(mixed_dataset(store))[0]
    assert all("camera_map" not in g for g in plain.to_json()["groups"])
    assert load_dataset(mixed_dataset(store, static_cameras={"top": "top"}))[0].id == plain.id

    both = entries(store, "mobile", "static")
    cases = [
        ({"wrist": "top"}, ["cam_high"], r"group 'static': cameras: \['wrist'\] are not target cameras"),
        ({"cam_high": "left"}, ["cam_high"],
         r"group 'static' session 'static' episode .*camera 'left' \(mapped to the target's 'cam_high'\) missing"),
        ({"cam_high": "top"}, ["cam_high", "top"],
         r"group 'static': cameras: each of the group's cameras plays one target camera, got \{'top': \['cam_high', 'top'\]\}"),
    ]
    for camera_map, cameras, message in cases:
        groups = [GroupSpec("mobile", ["mobile"], 0.5), GroupSpec("static", ["static"], 0.5, camera_map)]
        with pytest.raises(StoreError, match=message):
            build_cotraining_dataset(both, groups, robot=MOBILE, camera_names=cameras)


def test_evaluation_renders_at_the_target_robots_recorded_size(store):
    # A static group recorded at another size, whose session sorts first: the mobile robot is evaluated at the size
    # its own episodes recorded (what the policy trained on), not at the first episode's.
    from pipeline.assets.evaluation import recorded_resolution
    from pipeline.resources import StoreResource

    record_sim(store, STATIC, "a-static", ["top"], episodes=2, resolution=(24, 40))
    groups = [GroupSpec("mobile", ["mobile"], 0.5), GroupSpec("static", ["a-static"], 0.5, {"cam_high": "top"})]
    manifest, stats = build_cotraining_dataset(entries(store, "mobile", "a-static"), groups, robot=MOBILE,
                                               camera_names=["cam_high"], val_fraction=0.0)
    assert manifest.episodes[0].session == "a-static"
    assert recorded_resolution(StoreResource(root=str(store.root)), write_dataset(store, manifest, stats)) == (32, 32)


def test_bad_groups_are_refused_with_a_clear_error(store):
    both = entries(store, "mobile", "static")
    cases = [
        ([GroupSpec("a", ["mobile"]), GroupSpec("b", ["mobile", "static"])], r"session 'mobile' is in groups 'a' and 'b'"),
        ([GroupSpec("a", ["mobile"], -1.0)], r"group 'a': weight: expected a number >= 0"),
        ([GroupSpec("a", ["mobile"], 0.0)], r"at least one weight must be > 0"),
        ([GroupSpec("a", ["nothing"])], r"group 'a': no episodes in sessions \['nothing'\]"),
        ([GroupSpec("s", ["static"])], r"robot 'sim-mobile-transfer-cube': no episode of the target robot"),
    ]
    for groups, message in cases:
        with pytest.raises(StoreError, match=message):
            build_cotraining_dataset(both, groups, robot=MOBILE, camera_names=["top"])
    # A 16-D group cannot train a 14-D robot: its base actions are not the target's (named, not silently dropped).
    with pytest.raises(StoreError, match=r"group 'm' session 'mobile' .*actions \['base_linear_vel', 'base_angular_vel'\] "
                                         r"are not actions of the target robot 'sim-transfer-cube'"):
        build_cotraining_dataset(both, [GroupSpec("s", ["static"]), GroupSpec("m", ["mobile"])], camera_names=["top"])


# Written by the code before co-training (bc01b3b): no groups.
OLD_MANIFEST = (
    '{"episodes": [{"session": "s1", "episode": "episode_000000.zarr", "content_hash": "' + "a" * 64 + '", '
    '"num_steps": 20, "split": "val"}, {"session": "s1", "episode": "episode_000001.zarr", "content_hash": "'
    + "b" * 64 + '", "num_steps": 22, "split": "train"}, {"session": "s2", "episode": "episode_000000.zarr", '
    '"content_hash": "' + "c" * 64 + '", "num_steps": 21, "split": "val"}], "robot": "sim-transfer-cube", '
    '"fps": 50.0, "joint_names": ["j0", "j1"], "action_names": ["j0", "j1"], "camera_names": ["top"], '
    '"val_fraction": 0.34, "schema": "aloha-dataset", "schema_version": 1, "id": "db6d3f97a7b96374"}'
)


def test_old_manifest_loads_unchanged():
    old = json.loads(OLD_MANIFEST)
    manifest = DatasetManifest.from_json(old)
    assert manifest.groups == [] and manifest.id == "db6d3f97a7b96374"
    assert manifest.to_json() == old  # rewritten byte for byte: same id, no groups key
    (group,) = manifest.sampling_groups  # one implicit group of every session, weight 1, nothing padded
    assert (group.sessions, group.weight, group.padded_actions) == (["s1", "s2"], 1.0, [])


def test_dagster_dataset_run_config_groups_and_metadata(store):
    from dagster import DagsterInstance

    from pipeline.assets.dataset import dataset
    from pipeline.definitions import build_definitions
    from pipeline.jobs import INGEST_JOB
    from pipeline.partitions import SESSIONS
    from pipeline_kit import metadata

    defs = build_definitions(store_root=str(store.root))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SESSIONS, ["static", "mobile"])
    for session in ("static", "mobile"):  # 20 steps do not finish the task: kept all the same
        assert defs.resolve_job_def(INGEST_JOB).execute_in_process(
            partition_key=session, instance=instance,
            run_config={"ops": {"raw_episodes": {"config": {"keep_failed_demos": True}}}}).success
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dataset.key})

    def build(**config):
        return job.execute_in_process(instance=instance, run_config={"ops": {"dataset": {"config": config}}},
                                      raise_on_error=False)

    groups = [{"name": "mobile", "sessions": ["mobile"], "weight": 0.5},
              {"name": "static", "sessions": ["static"], "weight": 0.5}]
    result = build(groups=groups, robot=MOBILE, cameras=["top"], val_fraction=0.0)
    assert result.success
    meta = metadata(result, "dataset")
    assert meta["dataset_id"] == load_dataset(mixed_dataset(store))[0].id  # the same dataset as built by hand
    assert meta["sampling"] == "mobile 0.5, static 0.5" and meta["robot"] == MOBILE
    assert meta["padded_actions"] == {"mobile": [], "static": BASE}
    assert [g["name"] for g in meta["groups"]] == ["mobile", "static"] and meta["groups"][1]["dropped_cameras"] == ["angle"]
    # Without groups the two robots still cannot be merged; a missing target camera fails the run by name.
    assert not build().success and not build(cameras=["top"]).success
    failed = build(groups=groups, robot=MOBILE, val_fraction=0.0)
    assert not failed.success
    assert "group 'static' session 'static'" in str(failed.get_step_failure_events()[0].event_specific_data.error)
    # A camera map from the run config reaches the manifest and the metadata.
    mapped = [groups[0], {**groups[1], "cameras": {"cam_high": "top"}}]
    result = build(groups=mapped, robot=MOBILE, cameras=["cam_high"], val_fraction=0.0)
    assert result.success and metadata(result, "dataset")["groups"][1]["camera_map"] == {"cam_high": "top"}


def test_malformed_groups_in_a_manifest_are_named():
    bad = {**json.loads(OLD_MANIFEST), "groups": [{"name": "g", "wieght": 1}]}
    with pytest.raises(StoreError, match=r"m.json: groups: expected a list of \{name, sessions, weight"):
        DatasetManifest.from_json(bad, "m.json")
    group = {"name": "g", "sessions": ["s1"], "weight": 1.0}
    for camera_map in (["top"], None, {"cam_high": 3}):
        bad = {**json.loads(OLD_MANIFEST), "groups": [{**group, "camera_map": camera_map}]}
        with pytest.raises(StoreError, match=r"m.json: groups: .*group 'g': camera_map: expected \{target camera"):
            DatasetManifest.from_json(bad, "m.json")
