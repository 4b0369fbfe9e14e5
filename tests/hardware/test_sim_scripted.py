"""Scripted demonstrators succeed through the joint-space replay (a MuJoCo upgrade that breaks them fails here)."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.interfaces import Teleoperator
from hardware.loop import run_episode
from hardware.rollout import run_rollouts
from hardware.sim import ScriptedDemonstrator, heldout_seeds, make_sim_robot

# Full runs: transfer cube 50/50 seeds, insertion see bench/REPORT in the closing note. CI samples a few.
CUBE_SEEDS = [0, 7, 21, 33, 48]
INSERTION_SEEDS = [0, 4, 10]  # 4 and 10 jammed the peg with ACT's original meeting height


def test_transfer_cube_scripted_demos_succeed():
    result = run_rollouts(make_sim_robot("transfer_cube", cameras=[]), ScriptedDemonstrator(), CUBE_SEEDS)
    assert [e.success for e in result.episodes] == [True] * len(CUBE_SEEDS), result.to_dict()
    assert result.success_rate == 1.0
    # evaluation stops once success is decided: ACT's scripted demos reach reward 4 well before step 400
    assert all(150 < e.steps < 400 for e in result.episodes), [e.steps for e in result.episodes]


def test_insertion_scripted_demos_succeed():
    result = run_rollouts(make_sim_robot("insertion", cameras=[]), ScriptedDemonstrator(), INSERTION_SEEDS)
    assert result.success_rate == 1.0, result.to_dict()


def test_demonstrator_is_an_ordinary_teleoperator_and_deterministic():
    robot = make_sim_robot("transfer_cube", cameras=[])
    demo = ScriptedDemonstrator()
    runs = []
    for _ in range(2):
        actions = []
        run = run_episode(robot, _Tap(demo, actions), num_steps=200, seed=5, realtime=False)
        runs.append(np.stack(actions))
        assert run.steps == 200 and run.max_reward >= 1  # the right gripper grasped the cube
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (200, 14) and runs[0].dtype == np.float32
    assert np.all((runs[0][:, [6, 13]] >= -0.05) & (runs[0][:, [6, 13]] <= 1.05))  # normalized gripper commands


def test_heldout_seeds_are_disjoint_from_recording_seeds():
    seeds = heldout_seeds(50)
    assert len(set(seeds)) == 50 and min(seeds) >= 1_000_000


def test_scripted_demonstrator_rejects_a_real_robot():
    class NotSim:  # only the attributes a demonstrator would look at
        name = "aloha"

    with pytest.raises(TypeError, match="simulated robot"):
        ScriptedDemonstrator().start_episode(NotSim(), 0)


class _Tap(Teleoperator):  # forwards the demonstrator's commands and keeps a copy
    def __init__(self, inner, out):
        self.inner, self.out = inner, out

    def start_episode(self, robot, seed=None):
        self.inner.start_episode(robot, seed)

    def next_action(self, observation):
        a = self.inner.next_action(observation)
        self.out.append(a)
        return a
