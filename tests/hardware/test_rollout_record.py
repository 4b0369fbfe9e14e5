"""Rollouts become data: `aloha rollout --record` stores labelled rollout episodes (sim: labelled by the task's success;
emulated ALOHA without a terminal: `--label`), and a person's takeover on the emulated ALOHA is stored as a span of
steps whose actions are the leader arms' positions."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import EpisodeReader, SessionIndex, StoreLayout
from assets_store.hashing import file_sha256
from assets_store.sessions import read_finalized_marker
from bundle_kit import POLICY_HW, tiny_sim_bundle
from pipeline.cli.app import build_app

runner = CliRunner()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"sim": tiny_sim_bundle(d / "sim", ["top"], robot="sim-transfer-cube"),
            "emulated": tiny_sim_bundle(d / "emulated", ["cam_high"], robot="emulated")}


def _episodes(store, session):
    return [EpisodeReader(e.path) for e in SessionIndex(StoreLayout(store), session).episodes()]


def test_sim_rollouts_are_stored_labelled_by_the_tasks_success(bundles, tmp_path):
    store, bundle = tmp_path / "store", bundles["sim"]
    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle),
                                      "--episodes", "2", "--max-steps", "12", "--seed", "7", "--record", "eval1",
                                      "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "rollout session finalized" in res.output
    layout = StoreLayout(store)
    marker = read_finalized_marker(layout.session_dir("eval1"))
    digest = file_sha256(bundle / "manifest.json")
    assert marker["kind"] == "rollout" and marker["bundle_manifest_sha256"] == digest
    eps = _episodes(store, "eval1")
    assert len(eps) == 2
    for i, r in enumerate(eps):
        assert len(r) == 12 and r.camera_names == ["top"] and r.frames("top").shape[1:] == (*POLICY_HW, 3)
        assert np.allclose(np.diff(r.timestamps), 0.02)
        a = r.attrs
        assert a["kind"] == "rollout"
        assert a["label"] == "failure" and a["label_source"] == "simulator"  # untrained: never succeeds
        assert a["takeover_spans"] == []
        assert a["rollout"] == {
            "bundle_manifest_sha256": digest, "bundle_dir": str(bundle), "dataset_id": None,
            "robot": "sim-transfer-cube", "task": "transfer_cube", "temporal_ensemble_k": 0.01, "query_every": 1,
            "inference": "sync", "backend": "torch", "seed": 7 + i,
        }
        assert "outcome" not in a  # validation must not quarantine a rollout as a failed demonstration
        assert not np.allclose(r.action, r.qpos, atol=1e-3)  # the policy's actions, not the positions
    # a simulator labels its own rollouts; a finalized session is never added to
    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle),
                                      "--record", "eval2", "--label", "success", "--store", str(store)])
    assert res.exit_code == 2 and "task's own success" in res.output
    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle),
                                      "--record", "eval1", "--store", str(store)])
    assert res.exit_code == 1 and "finalized" in res.output and len(_episodes(store, "eval1")) == 2


def test_record_refuses_to_mix_rollouts_into_a_demonstration_session(bundles, tmp_path):
    store = tmp_path / "store"
    res = runner.invoke(build_app(), ["record", "--robot", "sim-transfer-cube", "--session", "demos",
                                      "--episode-len", "5", "--resolution", "32x32", "--cameras", "top",
                                      "--no-finalize", "--store", str(store)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundles["sim"]),
                                      "--record", "demos", "--store", str(store)])
    assert res.exit_code == 1 and "holds demonstrations" in res.output
    assert len(_episodes(store, "demos")) == 1


def test_a_resumed_rollout_session_takes_rollouts_of_its_own_bundle_only(bundles, tmp_path):
    from hardware.rollout import make_robot_for_policy, run_rollouts
    from hardware.rollout_recording import RolloutRecorder, RolloutSettings, simulator_label
    from model.policy import Policy

    store, bundle = tmp_path / "store", bundles["sim"]
    policy = Policy.from_bundle(bundle, device="cpu")
    robot = make_robot_for_policy("sim-transfer-cube", policy, resolution=POLICY_HW)
    other = RolloutSettings("0" * 64, "/elsewhere/bundle")
    recorder = RolloutRecorder(robot, StoreLayout(store), "open", other, simulator_label)
    run_rollouts(robot, policy, [3], num_steps=4, record=recorder.episode)  # left open: not finalized
    res = runner.invoke(build_app(), ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle),
                                      "--max-steps", "4", "--record", "open", "--store", str(store)])
    assert res.exit_code == 1 and "another bundle (/elsewhere/bundle)" in res.output
    assert len(_episodes(store, "open")) == 1


    # `--episodes 0` finalizes a session an interrupted run left open, with no robot motion: of its own bundle only.
    from assets_store.bundle import bundle_identity

    finalize = ["rollout", "--robot", "sim-transfer-cube", "--policy", str(bundle), "--episodes", "0",
                "--store", str(store)]
    res = runner.invoke(build_app(), finalize + ["--record", "open"])
    assert res.exit_code == 1 and "another bundle (/elsewhere/bundle)" in res.output
    assert read_finalized_marker(StoreLayout(store).session_dir("open")) is None
    assert runner.invoke(build_app(), finalize).exit_code == 2  # nothing named to finalize
    mine = RolloutSettings(bundle_identity(bundle), str(bundle), task="transfer_cube")
    recorder = RolloutRecorder(robot, StoreLayout(store), "interrupted", mine, simulator_label)
    run_rollouts(robot, policy, [3], num_steps=4, record=recorder.episode)
    res = runner.invoke(build_app(), finalize + ["--record", "interrupted"])
    assert res.exit_code == 0, res.output
    assert "rollout session finalized" in res.output
    marker = read_finalized_marker(StoreLayout(store).session_dir("interrupted"))
    assert marker["kind"] == "rollout" and marker["bundle_manifest_sha256"] == bundle_identity(bundle)
    assert marker["episodes"] == ["episode_000000.zarr"] and marker["robot"] == "sim-transfer-cube"


def test_emulated_rollout_without_a_terminal_takes_the_label_option(bundles, tmp_path):
    store = tmp_path / "store"
    args = ["rollout", "--robot", "emulated", "--policy", str(bundles["emulated"]), "--resolution", "32x32",
            "--max-steps", "10", "--store", str(store)]
    res = runner.invoke(build_app(), args + ["--record", "real1", "--label", "success"])
    assert res.exit_code == 0, res.output
    assert "squeeze both leader grippers" in res.output  # takeover offered (leader arms connected)
    (r,) = _episodes(store, "real1")
    assert r.attrs["kind"] == "rollout" and r.attrs["label"] == "success" and r.attrs["label_source"] == "option"
    assert r.attrs["takeover_spans"] == [] and r.attrs["rollout"]["robot"] == "emulated"
    assert r.attrs["rollout"]["seed"] is None and len(r) == 10
    assert read_finalized_marker(StoreLayout(store).session_dir("real1"))["kind"] == "rollout"
    # no terminal and no --label: stored unlabelled, to be labelled with `aloha episodes label`
    res = runner.invoke(build_app(), args + ["--record", "real2", "--no-takeover"])
    assert res.exit_code == 0, res.output
    assert "stored unlabelled" in res.output and "squeeze" not in res.output
    (r,) = _episodes(store, "real2")
    assert r.attrs["label"] is None and r.attrs["label_source"] is None
    res = runner.invoke(build_app(), args + ["--label", "failure"])
    assert res.exit_code == 2 and "--record" in res.output
    # takeover with asynchronous inference is refused before any policy loads (this one does not even exist)
    res = runner.invoke(build_app(), ["rollout", "--robot", "emulated", "--policy", str(tmp_path / "none"),
                                      "--record", "real3", "--takeover", "--async", "--store", str(store)])
    assert res.exit_code == 2 and "--takeover needs synchronous inference" in res.output
    # `episodes list` shows the label a dataset and the real evaluation see: the log's, else the recorded one
    listing = runner.invoke(build_app(), ["episodes", "list", "--store", str(store)], env={"COLUMNS": "300"})
    assert listing.exit_code == 0, listing.output
    assert "rollout: success" in listing.output and "rollout: unlabelled" in listing.output
    res = runner.invoke(build_app(), ["episodes", "label", "real1/0", "failure", "--store", str(store)])
    assert res.exit_code == 0, res.output
    listing = runner.invoke(build_app(), ["episodes", "list", "--store", str(store)], env={"COLUMNS": "300"})
    assert "rollout: failure" in listing.output and "rollout: success" not in listing.output


def test_operator_keys_label_or_discard():
    from hardware.rollout import RolloutEpisode
    from hardware.rollout_recording import OperatorKeys, Verdict

    typed = iter(["t", "", "q", "f"])  # a takeover key typed during the rollout is dropped first
    prompts: list[str] = []
    label = OperatorKeys(lambda: next(typed), prompts.append, poll_s=0.0)
    ep = RolloutEpisode(seed=None, success=None, max_reward=None, steps=1, seconds=0.0, late_steps=0)
    assert label(ep) == Verdict(True, "failure", "operator") and len(prompts) == 1
    typed = iter(["", "sx"])
    assert label(ep) == Verdict(True, "success", "operator")
    typed = iter(["", "x"])
    assert label(ep) == Verdict(False)


def test_operator_labels_rollouts_with_keys_on_a_real_terminal(bundles, tmp_path):
    """`aloha rollout --record` on a pseudo-terminal, as over SSH: after each rollout it waits for a key; `s` stores
    the rollout as a success, `x` discards the next one (never committed)."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    store = tmp_path / "store"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.app", "rollout", "--robot", "emulated", "--policy",
             str(bundles["emulated"]), "--resolution", "32x32", "--max-steps", "10", "--episodes", "2",
             "--no-takeover", "--record", "keyed", "--store", str(store)],
            cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo), COLUMNS="200"),
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    seen, answers, answered = b"", [b"s", b"x"], 0
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the command exited and closed its end of the terminal
                    break
            while seen.count(b"label this rollout") > answered and answered < len(answers):
                os.write(master, answers[answered])  # one key per prompt, in order
                answered += 1
            if proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                break
        if proc.poll() is None:
            pytest.fail("aloha rollout did not finish within 180 s:\n" + seen.decode(errors="replace"))
    finally:
        if proc.poll() is None:  # its own process group: the servo emulator it started goes too
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        os.close(master)
    output = seen.decode(errors="replace")
    assert proc.returncode == 0, output
    assert seen.count(b"label this rollout") == 2
    (r,) = _episodes(store, "keyed")  # the discarded rollout was never committed
    assert (r.attrs["label"], r.attrs["label_source"]) == ("success", "operator")
    assert read_finalized_marker(StoreLayout(store).session_dir("keyed"))["discarded_this_run"] == 1


def test_gripper_gesture_fires_once_per_held_squeeze():
    from hardware.aloha.takeover import GripperGesture

    g = GripperGesture(close_threshold=0.15, hold_steps=3)
    seq = [(0.9, 0.9), (0.1, 0.9), (0.1, 0.1), (0.1, 0.1), (0.05, 0.1), (0.0, 0.0), (0.0, 0.0),  # fires at the 3rd
           (0.5, 0.1), (0.1, 0.1), (0.1, 0.1), (0.1, 0.1)]  # opened, re-armed, fires again
    assert [g.update(v) for v in seq] == [False, False, False, False, True, False, False,
                                          False, False, False, True]
    # one gripper shut alone (a one-handed grasp) never fires
    g = GripperGesture(close_threshold=0.15, hold_steps=2)
    assert not any(g.update((0.0, 0.8)) for _ in range(10))


def test_takeover_on_the_emulated_aloha_is_stored_as_a_span_of_leader_actions(bundles, layout):
    from hardware.aloha.config import TakeoverConfig
    from hardware.aloha.takeover import LeaderTakeover
    from hardware.registry import RobotOptions, make_robot
    from hardware.rollout import run_rollouts
    from hardware.rollout_recording import RolloutRecorder, RolloutSettings, fixed_label
    from model.policy import Policy

    robot = make_robot("emulated", RobotOptions(cameras=["cam_high"], resolution=POLICY_HW, layout=layout))
    policy = Policy.from_bundle(bundles["emulated"], device="cpu", temporal_ensemble_k=0.01)
    resets = []
    reset = policy.reset
    policy.reset = lambda: (resets.append(1), reset())[1]
    human = LeaderTakeover(robot.rig, TakeoverConfig(ramp_s=0.1))  # 5 ramp steps at 50 Hz
    human_actions = []
    action = human.action
    human.action = lambda: (lambda a: (human_actions.append(a), a)[1])(action())
    script = {10: "t", 40: "xt"}  # the operator presses t at step 10 and again at step 40 (x: no meaning here)
    calls = iter(range(10_000))
    keys = lambda: script.get(next(calls), "")  # noqa: E731  (called once per control step)
    recorder = RolloutRecorder(robot, layout, "dagger", RolloutSettings("0" * 64, "bundle"), fixed_label("failure"))
    report = run_rollouts(robot, policy, [None], num_steps=50, record=recorder.episode, takeover=human, keys=keys)
    recorder.finalize()

    (ep,) = report.episodes
    assert ep.takeover_spans == [[15, 40]] and ep.label == "failure"
    assert len(resets) == 2  # at the start, and when the policy got control back: no stale chunk blended in
    (r,) = _episodes(layout.root, "dagger")
    assert r.attrs["takeover_spans"] == [[15, 40]] and r.attrs["label"] == "failure"
    assert len(human_actions) == 30  # steps 10..39 the leaders drove (ramp included)
    leader = np.asarray(human_actions[5:], dtype=np.float32)
    np.testing.assert_array_equal(r.action[15:40], leader)  # the span's actions are the leaders' positions
    # bumpless: the ramp steps lie between the policy's last action and the leaders' pose, one fifth each step
    start, first = r.action[9].astype(np.float64), np.asarray(human_actions[0], np.float64)
    np.testing.assert_allclose(r.action[10], start + (first - start) / 5, atol=1e-5)
    assert read_finalized_marker(layout.session_dir("dagger"))["kind"] == "rollout"


def test_the_leader_gripper_gesture_takes_over_on_the_emulated_aloha(bundles, layout):
    from hardware.aloha import emulated as emu
    from hardware.aloha.config import TakeoverConfig
    from hardware.aloha.takeover import LeaderTakeover
    from hardware.registry import RobotOptions, make_robot
    from hardware.rollout import run_rollouts
    from model.policy import Policy

    robot = make_robot("emulated", RobotOptions(cameras=["cam_high"], resolution=POLICY_HW, layout=layout))
    policy = Policy.from_bundle(bundles["emulated"], device="cpu")
    human = LeaderTakeover(robot.rig, TakeoverConfig(hold_s=0.1, ramp_s=0.0))  # 5 steps shut
    leaders = [robot.rig.specs[a.name] for a in robot.rig.config.leaders()]
    calls = iter(range(10_000))

    def grippers(position: float) -> None:  # the stand-in operator holds both leader grippers still there
        for spec in leaders:
            for joint in (j for j in spec.joints if j.gripper):
                robot.rig.emulator.set_motion(spec.name, joint.ids[0], position, 0.0, 1.0)

    def stand_in_operator() -> str:  # called once per control step; types nothing
        step = next(calls)
        if step in (0, 40, 80):  # open (no sway) ...
            grippers(emu.GRIPPER_OPEN - 50)
        if step in (10, 60):  # ... squeezed shut from step 10 to 40 (and 60 to 80): far longer than the 5 steps
            # the gesture needs
            grippers(emu.GRIPPER_CLOSED)
        return ""

    report = run_rollouts(robot, policy, [None], num_steps=60, takeover=human, keys=stand_in_operator)
    (ep,) = report.episodes
    # one takeover (the squeeze fires once, however long it is held), never handed back: it lasts to the end
    assert len(ep.takeover_spans) == 1 and 10 < ep.takeover_spans[0][0] < 40 and ep.takeover_spans[0][1] == 60
    # The same squeeze again hands the followers back to the policy (held from step 60 of a longer rollout).
    calls = iter(range(10_000))
    report = run_rollouts(robot, policy, [None], num_steps=100, takeover=human, keys=stand_in_operator)
    (ep,) = report.episodes
    (start, end), = ep.takeover_spans
    assert 10 < start < 40 and 60 < end < 80


def test_recorded_settings_say_what_ran_a_policy_server_and_the_champion_version(bundles, tmp_path):
    """The backend that ran is the server's (its address and what it served are recorded), and `--policy champion`
    records the version promoted there now, since the champion path moves with the next promotion."""
    import json
    import shutil
    import signal

    from assets_store.layout import CHAMPION, DEFAULT_MODEL_NAME
    from proc_kit import signal_and_collect, start_server

    store = tmp_path / "store"
    layout = StoreLayout(store)
    shutil.copytree(bundles["emulated"], layout.deploy_path(DEFAULT_MODEL_NAME, CHAMPION))
    layout.promotion_record_path(DEFAULT_MODEL_NAME, CHAMPION).write_text(json.dumps({"version": 3, "rule": "first"}))
    args = ["rollout", "--robot", "emulated", "--policy", "champion", "--resolution", "32x32", "--max-steps", "5",
            "--label", "success", "--no-takeover", "--store", str(store)]
    res = runner.invoke(build_app(), args + ["--record", "local"])
    assert res.exit_code == 0, res.output
    (r,) = _episodes(store, "local")
    rollout = r.attrs["rollout"]
    assert rollout["promoted_version"] == "3" and rollout["backend"] == "torch"
    assert "policy_server" not in rollout and "mlflow_run_id" not in rollout  # an imported bundle: no MLflow run

    proc, address = start_server(bundles["emulated"])
    try:
        res = runner.invoke(build_app(), args + ["--record", "served", "--policy-server", address])
    finally:
        signal_and_collect(proc, signal.SIGTERM)
    assert res.exit_code == 0, res.output
    (r,) = _episodes(store, "served")
    rollout = r.attrs["rollout"]
    assert rollout["backend"] == "policy_server" and rollout["promoted_version"] == "3"
    assert rollout["policy_server"].startswith(f"{address} (device cpu, backend torch")
    # A pipeline bundle names its MLflow training run: recorded too.
    from hardware.cli.rollout_record import what_served

    assert what_served(object(), {"mlflow_run_id": "0123abcd"}, None) == {"mlflow_run_id": "0123abcd"}
    # The champion's record names its bundle: a record of another one (a promotion landing meanwhile) is not taken.
    import json

    from assets_store.bundle import bundle_identity

    record = tmp_path / "promotion.json"
    record.write_text(json.dumps({"version": 4, "bundle_manifest_sha256": bundle_identity(bundles["emulated"])}))
    assert what_served(object(), {}, record, bundles["emulated"]) == {"promoted_version": "4"}
    record.write_text(json.dumps({"version": 5, "bundle_manifest_sha256": "0" * 64}))
    assert what_served(object(), {}, record, bundles["emulated"]) == {}
    record.write_text(json.dumps({"version": 2}))  # written before records named their bundle: taken as it is
    assert what_served(object(), {}, record, bundles["emulated"]) == {"promoted_version": "2"}
