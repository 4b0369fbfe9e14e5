"""16-D end to end: emulated Mobile ALOHA recordings -> dataset (manifest + stats) -> a tiny ACT trained on 16-D
actions -> bundle -> `Policy` -> rollout on the emulated robot, whose base receives the policy's (non-zero) base
columns through the CAN driver, with the configured base delay."""

from __future__ import annotations

import numpy as np
import torch

from assets_store import EpisodeReader
from assets_store.dataset import build_manifest, episode_content_hash, write_dataset
from assets_store.stats import dataset_stats, episode_partial_stats
from hardware.aloha.teleop import LeaderArms
from hardware.recorder import RecordConfig, record_session
from hardware.registry import RobotOptions, make_robot
from hardware.rollout import run_rollouts
from model.base_actions import smooth_base_actions
from model.config import ACTConfig, TrainConfig
from model.data import ChunkDataset
from model.export import export_bundle
from model.policy import Policy
from model.train import train

CAMERA = "cam_high"


def test_tiny_16d_policy_trains_and_drives_the_base(layout, tmp_path):
    torch.set_num_threads(1)
    robot = make_robot("emulated-mobile", RobotOptions(cameras=[CAMERA], resolution=(24, 32), layout=layout))
    robot.config.start_ramp_s = 0.0
    result = record_session(robot, LeaderArms(robot.rig, gesture=False), layout,
                            RecordConfig(session="mob", episodes=2, episode_len=40))
    refs, partials = [], []
    for episode in result.episodes:
        reader = EpisodeReader(episode.path)
        assert np.abs(reader.action[:, 14:]).max() > 0.05  # the pushed base is in the data
        partials.append(episode_partial_stats(reader.qpos, reader.action))
        refs.append(("mob", episode.path.name, episode_content_hash(episode.path), len(reader)))
    manifest = build_manifest(refs, val_fraction=0.5, robot="emulated-mobile", fps=50.0,
                              joint_names=list(robot.joint_names), action_names=list(robot.action_names),
                              camera_names=[CAMERA])
    dataset = write_dataset(layout, manifest, dataset_stats(partials))
    # Training sees the recipe's smoothed base velocities (the arm columns as recorded).
    raw = ChunkDataset(dataset, "all", chunk_size=10, image_size=(32, 32), base_smoothing_window=1)
    smooth = ChunkDataset(dataset, "all", chunk_size=10, image_size=(32, 32), base_smoothing_window=5)
    np.testing.assert_array_equal(raw.action[:, :14], smooth.action[:, :14])
    assert not np.allclose(raw.action[:, 14:], smooth.action[:, 14:])
    first = EpisodeReader(result.episodes[0].path)
    want = smooth_base_actions(first.action, first.info.action_names, 5)
    stats = smooth.stats["action"]
    np.testing.assert_allclose(smooth.action[: len(first), 14:], stats.normalize(want)[:, 14:], rtol=1e-5, atol=1e-5)
    act = ACTConfig(hidden_dim=32, dim_feedforward=64, nheads=2, enc_layers=1, vae_enc_layers=1, dec_layers=1,
                    chunk_size=10, dropout=0.0, pretrained_backbone=False, backbone_norm="group", state_dim=14,
                    action_dim=16, camera_names=[CAMERA])
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, lr_backbone=1e-3, val_every=2, val_batches=1,
                      checkpoint_every=2, log_every=1, num_workers=0, image_size=(32, 32), bf16=False, seed=0)
    run = train(dataset, tmp_path / "run", act, cfg)
    policy = Policy.from_bundle(export_bundle(run.best_checkpoint, tmp_path / "bundle"))
    assert policy.action_names[-2:] == ["base_linear_vel", "base_angular_vel"]

    rollout_robot = make_robot("emulated-mobile", RobotOptions(cameras=[CAMERA], resolution=(24, 32), layout=layout))
    rollout_robot.config.base.rollout_delay_steps = 3  # the recipe's 13 needs chunks longer than this tiny one's 10
    emulator = rollout_robot.rig.base_emulator
    report = run_rollouts(rollout_robot, policy, [None], num_steps=20)
    assert report.episodes[0].steps == 20 and policy.base_delay == 3
    commands = np.array(emulator.log.commands)
    assert len(commands) >= 20 and np.abs(commands[:-3]).max() > 1e-3  # driven by the policy, not zeros
    assert emulator.log.commands[-1] == (0.0, 0.0)  # and left stopped
