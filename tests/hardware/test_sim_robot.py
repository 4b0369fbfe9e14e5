"""The simulated ALOHA at the Robot interface: contract, seeding, rewards, rendering settings."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from hardware.registry import RobotOptions, is_simulated, make_robot, make_teleoperator, robot_names, robots_help, task_of
from hardware.sim import SimRobot, make_sim_robot
from hardware.sim import constants as C
from hardware.sim.physics import SimPhysics
from hardware.sim.scripted import ScriptedDemonstrator
from hardware.sim.tasks import TASKS, get_task, insertion_reward, transfer_cube_reward

LF, RF = "vx300s_left/10_left_gripper_finger", "vx300s_right/10_right_gripper_finger"


def pairs(*ps):
    return {frozenset(p) for p in ps}


@pytest.fixture(scope="module")
def cube_robot():
    robot = make_sim_robot("transfer_cube", cameras=["top", "left_wrist"], resolution=(48, 64))
    robot.connect()
    yield robot
    robot.disconnect()


def test_observation_contract(cube_robot: SimRobot):
    obs = cube_robot.reset(seed=3)
    assert cube_robot.joint_names == C.JOINT_NAMES and len(C.JOINT_NAMES) == 14
    assert obs.qpos.shape == (14,) and obs.qpos.dtype == np.float32
    assert obs.qvel.shape == (14,) and obs.effort.shape == (14,)
    assert 0.0 <= obs.qpos[6] <= 1.0 and 0.0 <= obs.qpos[13] <= 1.0  # grippers normalized
    np.testing.assert_allclose(obs.qpos[:6], C.START_ARM_POSE[:6], atol=1e-6)
    assert set(obs.images) == {"top", "left_wrist"}
    for img in obs.images.values():
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8 and img.std() > 1.0  # a real picture
    assert [(c.name, c.height, c.width) for c in cube_robot.cameras] == [("top", 48, 64), ("left_wrist", 48, 64)]
    assert obs.reward == 0.0 and cube_robot.max_reward() == 4.0 and cube_robot.fps == 50.0
    with pytest.raises(ValueError, match="14-D"):
        cube_robot.act(np.zeros(16))


def test_joint_targets_are_tracked_and_time_advances_50hz(cube_robot: SimRobot):
    obs = cube_robot.reset(seed=0)
    target = obs.qpos.copy()
    target[0] += 0.3  # left waist
    target[13] = 1.0  # right gripper fully open
    t0 = cube_robot.physics.time
    for _ in range(50):
        cube_robot.act(target)
    assert cube_robot.physics.time - t0 == pytest.approx(1.0)
    q = cube_robot.observe().qpos
    assert q[0] == pytest.approx(target[0], abs=0.02)
    assert q[13] > 0.8


def test_seeded_placement_is_reproducible_and_varies(cube_robot: SimRobot):
    cube_robot.reset(seed=11)
    a = cube_robot.object_poses()
    cube_robot.reset(seed=11)
    np.testing.assert_array_equal(a, cube_robot.object_poses())
    cube_robot.reset(seed=12)
    assert not np.allclose(a[:3], cube_robot.object_poses()[:3])
    xs = np.array([get_task("transfer_cube").object_poses(s)[:3] for s in range(200)])
    assert xs[:, 0].min() >= 0.0 and xs[:, 0].max() <= 0.2 and xs[:, 1].min() >= 0.4 and xs[:, 1].max() <= 0.6
    peg_socket = get_task("insertion").object_poses(5)
    assert peg_socket.shape == (14,) and 0.1 <= peg_socket[0] <= 0.2 and -0.2 <= peg_socket[7] <= -0.1


def test_images_follow_the_scene(cube_robot: SimRobot):
    first = cube_robot.reset(seed=1).images["top"]
    other = cube_robot.reset(seed=2).images["top"]
    assert np.abs(first.astype(int) - other.astype(int)).sum() > 0  # the cube moved


def test_transfer_cube_reward_levels():
    box, table = "red_box", "table"
    assert transfer_cube_reward(set()) == 0
    assert transfer_cube_reward(pairs((box, RF), (box, table))) == 1
    assert transfer_cube_reward(pairs((RF, box))) == 2  # lifted (pair order does not matter)
    assert transfer_cube_reward(pairs((box, RF), (box, LF), (box, table))) == 3
    assert transfer_cube_reward(pairs((box, LF))) == 4


def test_insertion_reward_levels():
    assert insertion_reward(pairs(("socket-1", LF), ("red_peg", RF), ("red_peg", "table"))) == 1
    assert insertion_reward(pairs(("socket-2", LF), ("red_peg", RF))) == 2
    assert insertion_reward(pairs(("socket-2", LF), ("red_peg", RF), ("red_peg", "socket-3"))) == 3
    assert insertion_reward(pairs(("red_peg", "pin"))) == 4


def test_weld_fix_and_cheap_render_settings(cube_robot: SimRobot):
    ee = SimPhysics(get_task("transfer_cube").ee_scene)
    welds = [i for i in range(ee.model.neq) if ee.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD]
    assert len(welds) == 2 and all(ee.model.eq_data[i, 10] == C.WELD_TORQUE_SCALE for i in welds)
    assert abs(ee.model.eq_data[welds[0], 3]) > 0.1  # the compiled weld offset is kept
    r = cube_robot._renderer._renderer
    assert r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 0
    assert cube_robot.physics.model.vis.quality.offsamples == 0


def test_registry_builds_sim_robots_with_options():
    assert {"sim-transfer-cube", "sim-insertion"} <= set(robot_names())
    robot = make_robot("sim-insertion", RobotOptions(cameras=["all"], resolution=(24, 32)))
    assert isinstance(robot, SimRobot) and robot.task.name == "insertion"
    names = [c.name for c in robot.cameras]
    assert {"top", "left_wrist", "right_wrist", "angle"} <= set(names)
    assert all((c.height, c.width) == (24, 32) for c in robot.cameras)
    assert isinstance(make_teleoperator("sim-insertion", robot), ScriptedDemonstrator)
    # the registry knows which robots are simulators without building them, and agrees with the robots
    assert [n for n in robot_names() if is_simulated(n)] == sorted(t.robot_name for t in TASKS.values())
    assert robot.simulated and is_simulated(robot.name) and not is_simulated("aloha") and not is_simulated("nope")
    assert "sim-insertion (MuJoCo, insertion)" in robots_help() and robots_help(["aloha"]) == "aloha (real hardware)"
    with pytest.raises(ValueError, match=r"unknown camera\(s\) \['nope'\]"):  # refused when built, not at the first render
        make_robot("sim-transfer-cube", RobotOptions(cameras=["top", "nope"]))


def test_each_sim_task_has_one_name_and_its_robot_another():
    for key, task in TASKS.items():
        assert get_task(key) is task and task.name == key and task_of(task.robot_name) == key
    for other in ("sim-transfer-cube", "transfer-cube"):  # robot names and spellings are not task names
        with pytest.raises(ValueError, match=rf"unknown sim task '{other}'; expected one of \['insertion'"):
            get_task(other)


def test_rendering_then_loading_the_policy_stack_does_not_crash(tmp_path):
    """Mesa's LLVM and triton's must load in the right order: rollout and evaluation render first, then load torch."""
    import subprocess
    import sys

    script = (
        "from hardware.sim import make_sim_robot\n"
        "r = make_sim_robot('transfer_cube', cameras=['top'], resolution=(24, 32)); r.connect(); r.reset(0)\n"
        "import torchvision, model.policy\n"
        "print('alive')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "alive" in proc.stdout, (proc.returncode, proc.stderr[-2000:])
