"""`aloha record` end to end on the simulator, then `aloha replay` and `aloha view` on what it wrote; `aloha rollout`
against the pipeline's evaluation (one rollout loop, one compatibility check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader, SessionIndex, is_session_finalized
from bundle_kit import POLICY_HW, tiny_sim_bundle
from pipeline.cli.app import build_app
from hardware.sim import get_task, plan_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = runner.invoke(build_app(), [
        "record", "--robot", "sim-transfer-cube", "--session", "demo", "--episodes", "2",
        "--resolution", "32x48", "--cameras", "top", "--seed", "40", "--store", str(store),
    ])
    assert result.exit_code == 0, result.output
    return store, result.output


def test_record_writes_valid_episodes_with_demonstrator_actions(recorded):
    store, output = recorded
    from assets_store import StoreLayout

    layout = StoreLayout(store)
    eps = SessionIndex(layout, "demo").episodes()
    assert [e.index for e in eps] == [0, 1]
    assert is_session_finalized(layout.session_dir("demo"))
    assert "session finalized" in output and "keyboard controls off" in output
    task = get_task("transfer_cube")
    for e in eps:
        r = EpisodeReader(e.path)
        assert r.fps == 50.0 and len(r) == 400 and r.info.robot == "sim-transfer-cube"
        assert r.qpos.shape == (400, 14) and r.action.shape == (400, 14) and r.qvel.shape == (400, 14)
        assert r.camera_names == ["top"]
        assert r.frames("top").shape == (400, 32, 48, 3)
        assert np.allclose(np.diff(r.timestamps), 0.02)  # virtual 50 Hz clock in --fast mode
        seed = 40 + e.index
        assert r.attrs["extra"]["seed"] == seed and r.attrs["outcome"]["success"] is True
        assert r.attrs["counters"]["late_steps"] == 0 and r.attrs["counters"]["dropped_frames"] == 0
        # the label is exactly what the demonstrator commanded for that seed's scene
        np.testing.assert_array_equal(r.action, plan_demo(task, task.object_poses(seed)).actions)
        assert not np.allclose(r.action, r.qpos, atol=1e-3)


def test_replay_succeeds_again(recorded):
    store, _ = recorded
    result = runner.invoke(build_app(), ["replay", "demo/0", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "success" in result.output and "(seed 40)" in result.output


def test_view_writes_video_and_plot(recorded, tmp_path):
    store, _ = recorded
    result = runner.invoke(build_app(), ["view", "demo/1", "--out", str(tmp_path), "--store", str(store)])
    assert result.exit_code == 0, result.output
    mp4, png = tmp_path / "episode_000001.mp4", tmp_path / "episode_000001.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import imageio.v3 as iio

    frames = iio.imread(mp4)
    assert frames.shape == (400, 32, 48, 3)


def test_finalized_session_refuses_more_and_bad_input_is_reported(recorded):
    store, _ = recorded
    app = build_app()
    again = runner.invoke(app, ["record", "--robot", "sim-transfer-cube", "--session", "demo", "--episodes", "1",
                                "--resolution", "32x48", "--store", str(store)])
    assert again.exit_code == 1 and "finalized" in again.output
    bad = runner.invoke(app, ["record", "--robot", "nope", "--session", "x", "--store", str(store)])
    assert bad.exit_code == 1 and "unknown robot" in bad.output
    res = runner.invoke(app, ["record", "--robot", "sim-insertion", "--session", "x", "--resolution", "big",
                              "--store", str(store)])
    assert res.exit_code == 2
    missing = runner.invoke(app, ["view", "demo/7", "--store", str(store)])
    assert missing.exit_code == 1 and "no episode" in missing.output


def test_covering_placements_record_the_covering_seeds(tmp_path):
    from hardware.sim import covering_seeds

    result = runner.invoke(build_app(), [
        "record", "--robot", "sim-transfer-cube", "--session", "cover", "--episodes", "2", "--episode-len", "20",
        "--cameras", "none", "--seed", "7", "--placements", "covering", "--store", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    from assets_store import StoreLayout

    stored = [EpisodeReader(e.path).attrs["extra"]["seed"] for e in SessionIndex(StoreLayout(tmp_path), "cover").episodes()]
    assert stored == covering_seeds("transfer_cube", 2, first_seed=7) and stored != [7, 8]


# ---------------------------------------------------------------------------------------------- rollout


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {"top": tiny_sim_bundle(root / "top", ["top"]), "other": tiny_sim_bundle(root / "other", ["no_such_camera"]),
            "insertion": tiny_sim_bundle(root / "insertion", ["top"], robot="sim-insertion")}


def test_sim_evaluation_and_aloha_rollout_report_the_same(bundles, tmp_path):
    import json

    from pipeline.assets.evaluation import EvaluationConfig, closed_loop_evaluation

    report = tmp_path / "rollout.json"
    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundles["top"]),
                                      "--episodes", "2", "--max-steps", "30", "--json", str(report),
                                      "--store", str(tmp_path / "store")])
    assert res.exit_code == 0, res.output
    cli = json.loads(report.read_text())
    evaluation = closed_loop_evaluation(bundles["top"], "sim-transfer-cube", EvaluationConfig(episodes=2, episode_len=30),
                                        resolution=POLICY_HW)
    per_episode = [(e["seed"], e["success"], e["max_reward"], e["steps"]) for e in cli["episodes"]]
    assert per_episode == [(e.seed, e.success, e.max_reward, e.steps) for e in evaluation.episodes]
    assert cli["success_rate"] == evaluation.summary.rate and len(per_episode) == 2
    assert f"{evaluation.summary.rate:.0%} (0/2)" in res.output  # the table prints the same summary


def test_mismatched_cameras_are_refused_by_every_entry(bundles, tmp_path):
    from hardware.registry import RobotOptions, make_robot
    from hardware.rollout import IncompatiblePolicy, run_rollouts
    from model.policy import Policy
    from pipeline.assets.evaluation import EvaluationConfig, closed_loop_evaluation

    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundles["other"]),
                                      "--store", str(tmp_path / "store")])
    assert res.exit_code == 2 and "refusing to run" in res.output and "no_such_camera" in res.output
    with pytest.raises(IncompatiblePolicy, match="no_such_camera"):
        closed_loop_evaluation(bundles["other"], "sim-transfer-cube", EvaluationConfig(episodes=1, episode_len=5),
                               resolution=POLICY_HW)
    # The check itself (the policy's), wherever a robot comes from: other cameras, or other joints.
    policy = Policy.from_bundle(bundles["top"])
    wrist_only = make_robot("sim-transfer-cube", RobotOptions(cameras=["left_wrist"], resolution=POLICY_HW))
    with pytest.raises(IncompatiblePolicy, match=r"cameras \['top'\] required by the policy are missing"):
        run_rollouts(wrist_only, policy, [0], num_steps=5)
    policy.joint_names = policy.joint_names[::-1]
    top = make_robot("sim-transfer-cube", RobotOptions(cameras=["top"], resolution=POLICY_HW))
    with pytest.raises(IncompatiblePolicy, match="joint names differ"):
        run_rollouts(top, policy, [0], num_steps=5)


def test_a_policy_for_another_robot_or_task_needs_force(bundles, tmp_path):
    args = ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundles["insertion"]), "--max-steps", "5",
            "--store", str(tmp_path / "store")]
    res = runner.invoke(build_app(), args)
    assert res.exit_code == 2 and "trained on robot 'sim-insertion', not 'sim-transfer-cube'" in res.output
    assert "--force" in res.output and "Traceback" not in res.output
    res = runner.invoke(build_app(), [*args, "--force"])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "running it because of --force" in res.output
    # A real robot does whatever it is shown: the task it is run for is said with --task.
    from model.policy import Policy

    assert Policy.from_bundle(bundles["top"]).trained_for_other("aloha", "fold towel") is None  # the bundle knows none


def test_the_policy_loads_the_bytes_it_verified(bundles, tmp_path, monkeypatch):
    """A weights file swapped right after its hash was checked is never what gets loaded."""
    import shutil

    import torch

    from assets_store import bundle as bundle_mod
    from model.policy import Policy

    src = tmp_path / "bundle"
    shutil.copytree(bundles["top"], src)
    original = Policy.from_bundle(src)
    swapped = tmp_path / "swapped.safetensors"
    tiny_sim_bundle(tmp_path / "b2", ["top"])
    shutil.copy(tmp_path / "b2" / "model.safetensors", swapped)
    torch.manual_seed(1)  # different random weights for the swapped file
    from safetensors.torch import load_file, save_file

    save_file({k: torch.randn_like(v) for k, v in load_file(str(swapped)).items()}, str(swapped))

    real_sha256 = bundle_mod.hashlib.sha256
    real_file_sha256 = bundle_mod.file_sha256

    weights = (src / "model.safetensors").read_bytes()

    def swap_after(digest, was_weights):
        if was_weights:  # an attacker (or a sync tool) replaces the file right after its check
            shutil.copy(swapped, src / "model.safetensors")
        return digest

    class Hashlib:
        @staticmethod
        def sha256(data=b""):
            h = real_sha256(data)
            return type("H", (), {"hexdigest": lambda self: swap_after(h.hexdigest(), data == weights)})()

    monkeypatch.setattr(bundle_mod, "hashlib", Hashlib)
    monkeypatch.setattr(bundle_mod, "file_sha256",
                        lambda p: swap_after(real_file_sha256(p), Path(p).name == "model.safetensors"))
    loaded = Policy.from_bundle(src)
    assert (src / "model.safetensors").read_bytes() == swapped.read_bytes()  # the swap did happen
    for name, value in original.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name
