"""Mobile ALOHA's base-action recipe: base actions later in the chunk than arm actions at rollout (open loop and
temporal ensembling), smoothing of recorded base velocities for training, and the rollout applying the robot's
configured delay."""

from __future__ import annotations

import numpy as np
import pytest

from assets_store.stats import NormStats
from model.act import ACT
from model.base_actions import delay_base_actions, smooth_base_actions
from model.config import ACTConfig
from model.policy import Policy

NAMES = ["left_waist", "left_gripper", "base_linear_vel", "base_angular_vel"]
CHUNK = 8


def ramp_chunk(offset: float = 0.0) -> np.ndarray:
    """Column c of step i = 100 c + i + offset: every value says where in the chunk it came from."""
    return np.array([[100 * c + i + offset for c in range(4)] for i in range(CHUNK)], dtype=np.float64)


class ScriptedPolicy(Policy):
    """The real serving code (delay, open loop, ensembling) with the network's chunk replaced by `ramp_chunk`."""

    def predict_chunk(self, qpos, images):
        return ramp_chunk(offset=1000 * self.t)


def make_policy(**kw) -> ScriptedPolicy:
    cfg = ACTConfig(hidden_dim=16, dim_feedforward=32, nheads=2, enc_layers=1, vae_enc_layers=1, dec_layers=1,
                    chunk_size=CHUNK, dropout=0.0, pretrained_backbone=False, backbone_norm="group", state_dim=2,
                    action_dim=4, camera_names=["cam_high"])
    stats = {k: NormStats(np.zeros(n), np.ones(n), -np.ones(n), np.ones(n), 1) for k, n in (("qpos", 2), ("action", 4))}
    config = {"camera_names": ["cam_high"], "joint_names": NAMES[:2], "action_names": NAMES, "fps": 50,
              "image_size": [16, 16]}
    return ScriptedPolicy(ACT(cfg), config, stats, **kw)


def test_delay_takes_base_columns_later_in_the_chunk():
    out = delay_base_actions(ramp_chunk(), NAMES, 3)
    assert out.shape == (CHUNK - 3, 4)
    assert out[:, 0].tolist() == list(range(CHUNK - 3))  # arms: steps 0..k-d-1
    assert out[:, 2].tolist() == [200 + i for i in range(3, CHUNK)]  # base: steps d..k-1
    assert delay_base_actions(ramp_chunk(), NAMES[:2] + ["a", "b"], 3).shape == (CHUNK, 4)  # no base: unchanged


def test_open_loop_serves_delayed_chunks():
    policy = make_policy(temporal_ensemble_k=None, query_every=5, base_delay=3)
    actions = [policy.act(np.zeros(2), {"cam_high": np.zeros((16, 16, 3), np.uint8)}) for _ in range(6)]
    assert [a[0] for a in actions[:5]] == [0, 1, 2, 3, 4] and [a[2] for a in actions[:5]] == [203, 204, 205, 206, 207]
    assert actions[5][0] == 5000 and actions[5][2] == 5203  # re-queried at step 5
    with pytest.raises(ValueError, match="query_every 6 exceeds the 5 actions"):
        make_policy(temporal_ensemble_k=None, query_every=6, base_delay=3)


def test_temporal_ensembling_works_with_the_delay():
    policy = make_policy(temporal_ensemble_k=0.0, base_delay=3)  # k = 0: plain mean of the predictions
    image = {"cam_high": np.zeros((16, 16, 3), np.uint8)}
    actions = np.array([policy.act(np.zeros(2), image) for _ in range(12)])
    assert actions.shape == (12, 4)
    # at step t every chunk started at s <= t with t - s < k - d predicts it; arm value 1000 s + (t - s)
    for t in range(12):
        starts = [s for s in range(t + 1) if t - s < CHUNK - 3]
        assert actions[t, 0] == pytest.approx(np.mean([1000 * s + (t - s) for s in starts]))
        assert actions[t, 2] == pytest.approx(np.mean([1000 * s + 200 + 3 + (t - s) for s in starts]))
    with pytest.raises(ValueError, match="base delay must be in 0..7"):
        make_policy(base_delay=CHUNK)


def test_smoothing_averages_only_the_base_columns():
    actions = np.zeros((7, 4), np.float32)
    actions[:, 0] = np.arange(7)
    actions[3, 2] = 5.0  # one spike in the linear velocity
    actions[:, 3] = 0.25  # a constant turn stays constant, edges included
    out = smooth_base_actions(actions, NAMES, window=5)
    assert out[:, 0].tolist() == list(range(7))
    assert out[:, 2].tolist() == pytest.approx([0, 5 / 4, 1, 1, 1, 5 / 4, 0])
    assert out[:, 3].tolist() == pytest.approx([0.25] * 7)
    assert np.array_equal(smooth_base_actions(actions, NAMES, window=1), actions)


def test_rollout_applies_the_robots_configured_delay(layout):
    from hardware.registry import RobotOptions, make_robot
    from hardware.rollout import IncompatiblePolicy, apply_base_delay

    robot = make_robot("emulated-mobile", RobotOptions(cameras=[], layout=layout))
    assert robot.base_delay_steps == 13  # the recipe's default, from configs/mobile_aloha.yaml
    with pytest.raises(IncompatiblePolicy, match="rollout_delay_steps"):
        apply_base_delay(make_policy(), robot)  # a chunk of 8 cannot delay by 13
    robot.config.base.rollout_delay_steps = 2
    policy = make_policy()
    apply_base_delay(policy, robot)
    assert policy.base_delay == 2
