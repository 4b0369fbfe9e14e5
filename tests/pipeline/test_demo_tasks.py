"""`aloha demo --task`: the transfer cube's recipe (covering placements, demo preset) on every sim task, and a step
budget that is a budget of its own."""

from __future__ import annotations

from typing import get_args

import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader
from hardware.sim.placements import covering_seeds
from hardware.sim.tasks import TASKS
from pipeline.demo import DemoOptions, DemoTask, demo_seeds, record_demo_session, run_config
from pipeline_kit import install_mlflow_db, migrated_mlflow_db


def test_every_sim_task_is_a_demo_task_recorded_by_its_own_robot():
    assert get_args(DemoTask) == tuple(TASKS)
    for name, task in TASKS.items():
        opts = DemoOptions(task=name)
        assert opts.robot == task.robot_name and opts.steps_per_episode == task.episode_len
    assert DemoOptions().robot == "sim-transfer-cube" and DemoOptions().steps_per_episode == 400  # unchanged


def test_each_demo_task_has_its_own_registered_model():
    # an insertion candidate is never gated against a transfer-cube champion (one champion per task)
    names = {task: DemoOptions(task=task).model_name for task in get_args(DemoTask)}
    assert names["transfer_cube"] == "aloha-act"  # the default name, as before
    assert len(set(names.values())) == len(names)


def test_demo_records_insertion_at_covering_placements_of_peg_and_socket(layout):
    opts = DemoOptions(task="insertion", episodes=2, episode_len=12, resolution=(32, 32), session="insertion")
    seeds, note = demo_seeds(layout, opts)
    assert seeds == covering_seeds("insertion", 2)  # placements of both objects spread out
    assert "sim-insertion" in note
    result = record_demo_session(layout, opts, seeds=seeds)
    assert len(result.episodes) == 2
    for episode, seed in zip(result.episodes, seeds):
        reader = EpisodeReader(episode.path)
        assert (reader.attrs["robot"], reader.attrs["task"], reader.attrs["extra"]["seed"]) == ("sim-insertion",
                                                                                               "insertion", seed)
        assert len(reader.attrs["extra"]["sim"]["initial_object_poses"]) == 14  # peg and socket, xyz + wxyz each
        assert reader.action.shape == (12, 14) and reader.camera_names == ["top"]
    # a second run of the demo in the same store repeats no scene
    again, _ = demo_seeds(layout, DemoOptions(task="insertion", episodes=2))
    assert not set(again) & set(seeds)


def test_demo_records_the_mobile_task_with_base_actions(layout):
    opts = DemoOptions(task="mobile_transfer_cube", episodes=2, episode_len=5, resolution=(24, 32),
                       cameras=["cam_high"], session="mobile")
    result = record_demo_session(layout, opts)
    reader = EpisodeReader(result.episodes[0].path)
    assert reader.attrs["robot"] == "sim-mobile-transfer-cube" and reader.action.shape == (5, 16)
    assert reader.camera_names == ["cam_high"]


def test_a_step_budget_given_alone_has_no_time_limit():
    from pipeline.training_config import TrainingConfig

    def budget(**kw):
        _, train = TrainingConfig(**run_config(DemoOptions(**kw))["ops"]["act_policy"]["config"]).model_configs()
        return train.steps, train.time_budget_s

    assert budget() == (None, 20 * 60.0)  # the preset's 20 minutes
    assert budget(train_minutes=None, train_steps=21_423) == (21_423, None)
    assert budget(train_minutes=60, train_steps=21_423) == (21_423, 3600.0)  # both: whichever comes first


@pytest.fixture
def store(layout, tmp_path_factory):
    install_mlflow_db(migrated_mlflow_db(tmp_path_factory), layout)
    return layout


def test_demo_cli_trains_a_given_step_budget_without_the_default_minutes(store, monkeypatch):
    """`aloha demo --task insertion --train-steps N`: the pipeline hands training N steps and no time limit (before,
    the default 20 minutes cut a 60-minute step budget short)."""
    import model.train

    from pipeline.cli.app import build_app

    handed = []

    def stop_at_training(dataset_dir, out_dir, act_cfg, train_cfg, *args, **kwargs):
        handed.append(train_cfg)
        raise RuntimeError("stopped before training")  # the budget is what this test checks

    monkeypatch.setattr(model.train, "train", stop_at_training)
    res = CliRunner().invoke(build_app(), [
        "demo", "--task", "insertion", "--episodes", "2", "--episode-len", "12", "--train-steps", "3",
        "--eval-episodes", "1", "--resolution", "32x32", "--session", "ins", "--store", str(store.root)])
    assert res.exit_code == 1, res.output
    assert "scripted insertion episodes (sim-insertion)" in res.output
    assert "training budget 3 steps" in res.output
    assert [(c.steps, c.time_budget_s) for c in handed] == [(3, None)]
