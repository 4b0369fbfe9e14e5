"""The simulator's evaluation view: cameras moved and lights changed, physics untouched, the default view as it was."""

from __future__ import annotations

from typing import get_args

import mujoco
import numpy as np
import pytest

from hardware.registry import RobotOptions, SimViewName, make_robot
from hardware.sim import make_sim_robot
from hardware.sim.physics import SimPhysics
from hardware.sim.render import CameraRenderer, RenderSettings
from hardware.sim.scripted import plan_demo
from hardware.sim.view import VIEWS, get_view

HW = (48, 64)
SEED = 7


def run(view: str, task: str = "transfer_cube", cameras=("top", "left_wrist"), steps: int = 40):
    """Frames and qpos of a scripted episode's first `steps` steps under `view`."""
    robot = make_sim_robot(task, cameras=list(cameras), resolution=HW, view=view)
    try:
        obs = robot.reset(seed=SEED)
        actions = plan_demo(robot.task, robot.object_poses()).actions
        frames, qpos = [obs.images], [obs.qpos]
        for t in range(steps):
            robot.act(actions[t])
            obs = robot.observe()
            frames.append(obs.images)
            qpos.append(obs.qpos)
        return frames, np.stack(qpos), robot.episode_attrs()
    finally:
        robot.disconnect()


def test_the_cli_and_config_names_are_the_simulators_views():
    assert set(get_args(SimViewName)) == set(VIEWS)


def test_shifted_view_renders_other_frames_of_the_same_physics():
    default_frames, default_qpos, default_attrs = run("default")
    shifted_frames, shifted_qpos, shifted_attrs = run("shifted")
    np.testing.assert_array_equal(shifted_qpos, default_qpos)  # same seed, same actions: the same motion
    for cam in ("top", "left_wrist"):
        a = np.stack([f[cam] for f in default_frames]).astype(np.int16)
        b = np.stack([f[cam] for f in shifted_frames]).astype(np.int16)
        assert np.abs(a - b).mean() > 5.0, cam  # another pose and light, not a rounding difference
        assert b.std() > 1.0  # still a picture
    assert shifted_attrs["sim"]["view"] == "shifted" and "view" not in default_attrs["sim"]
    assert shifted_frames[0]["top"].mean() < default_frames[0]["top"].mean()  # the lights are dimmer


def test_the_shifted_view_is_deterministic():
    first, _, _ = run("shifted", steps=3)
    second, _, _ = run("shifted", steps=3)
    for a, b in zip(first, second):
        for cam in a:
            np.testing.assert_array_equal(a[cam], b[cam])


def test_the_default_view_is_the_scene_file_as_rendered_before_views_existed():
    """Golden: the default view renders pixel for pixel what a renderer on the untouched scene renders."""
    robot = make_sim_robot("transfer_cube", cameras=["top", "angle"], resolution=HW)
    assert robot.view is get_view("default")
    obs = robot.reset(seed=SEED)
    robot.disconnect()
    physics = SimPhysics(robot.task.joint_scene, weld_torque_scale=None)
    physics.reset(robot.task.object_poses(SEED))
    renderer = CameraRenderer(physics.model, ["top", "angle"], RenderSettings(*HW))
    golden = renderer.render(physics.data)
    renderer.close()
    for cam in golden:
        np.testing.assert_array_equal(obs.images[cam], golden[cam])


def test_the_mobile_scene_has_a_shifted_view_too():
    frames, _, _ = run("shifted", task="mobile_transfer_cube", cameras=("cam_high",), steps=0)
    default, _, _ = run("default", task="mobile_transfer_cube", cameras=("cam_high",), steps=0)
    assert np.abs(frames[0]["cam_high"].astype(np.int16) - default[0]["cam_high"]).mean() > 5.0


def camera_poses(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """World position and orientation of every camera at the scene's initial state."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return data.cam_xpos.copy(), data.cam_xmat.reshape(-1, 3, 3).copy()


def test_shifted_view_moves_every_camera_a_few_cm_and_degrees():
    view = get_view("shifted")
    plain = make_sim_robot("insertion", cameras=[]).physics.model
    moved = make_sim_robot("insertion", cameras=[], view="shifted").physics.model
    (pos0, rot0), (pos1, rot1) = camera_poses(plain), camera_poses(moved)
    shift = np.linalg.norm(pos1 - pos0, axis=1)
    np.testing.assert_allclose(shift, np.linalg.norm(view.camera_shift_m))
    assert 0.02 < shift[0] < 0.05
    turned = np.rad2deg(np.arccos(np.clip((np.einsum("nji,nji->n", rot0, rot1) - 1) / 2, -1, 1)))
    assert np.all((1.0 < turned) & (turned < 8.0)), turned  # the top camera does not spin about its axis
    np.testing.assert_allclose(moved.light_diffuse, plain.light_diffuse * view.light_scale)
    # bodies, joints and contacts are the scene's
    for field in ("body_pos", "body_quat", "body_mass", "geom_size", "geom_friction", "jnt_range", "actuator_gainprm"):
        np.testing.assert_array_equal(getattr(moved, field), getattr(plain, field), err_msg=field)


def test_unknown_views_and_views_of_real_cameras_are_refused():
    with pytest.raises(ValueError, match="unknown sim view 'sideways'"):
        make_sim_robot("transfer_cube", cameras=[], view="sideways")
    with pytest.raises(ValueError, match="only a simulator renders another view"):
        make_robot("emulated", RobotOptions(view="shifted"))


def first_video_frame(video_dir) -> np.ndarray:
    import av

    (path,) = sorted(video_dir.glob("*.mp4"))
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_the_pipelines_evaluation_renders_the_view_it_is_configured_with(tmp_path):
    from bundle_kit import tiny_sim_bundle
    from pipeline.assets.evaluation import EvaluationConfig, closed_loop_evaluation

    bundle = tiny_sim_bundle(tmp_path / "bundle", ["top"], robot="sim-transfer-cube")
    frames = {}
    for view in ("default", "shifted"):
        config = EvaluationConfig(episodes=1, episode_len=3, videos=1, sim_view=view)
        report = closed_loop_evaluation(bundle, "sim-transfer-cube", config, (48, 64), video_dir=tmp_path / view)
        assert len(report.episodes) == 1
        frames[view] = first_video_frame(tmp_path / view).astype(np.int16)
    assert np.abs(frames["shifted"] - frames["default"]).mean() > 5.0


def test_rollout_refuses_a_sim_view_on_real_cameras(tmp_path):
    from typer.testing import CliRunner

    from bundle_kit import tiny_sim_bundle
    from pipeline.cli.app import build_app

    bundle = tiny_sim_bundle(tmp_path / "bundle", ["top"], robot="sim-transfer-cube")
    res = CliRunner().invoke(build_app(), ["rollout", "--robot", "emulated", "--policy", str(bundle), "--force",
                                           "--sim-view", "shifted", "--store", str(tmp_path / "store")])
    assert res.exit_code == 2, res.output
    assert "--sim-view shifted: only a simulator renders another view" in res.output
    assert "Traceback" not in res.output
