"""Reading rollouts back: the labelled rollouts of one bundle, the annotation log's last word, and a bad item reported
by name while the rest still count."""

import json

import pytest

from assets_store import finalize_session
from assets_store.annotations import annotate
from assets_store.layout import FINALIZED_MARKER
from assets_store.rollouts import ROLLOUT_KIND, is_rollout, rollout_attrs, rollout_sessions, wilson_interval
from pipeline_kit import ROBOT as SIM_ROBOT, make_session
from rollout_kit import make_rollout_session, write_rollout

SHA_A, SHA_B = "a" * 64, "b" * 64


def labelled_rollouts(layout, sha):
    """As the pipeline counts them: sim-* robots are simulators (the registry's answer, without importing hardware)."""
    from assets_store.rollouts import labelled_rollouts as count

    return count(layout, sha, simulated=lambda robot: robot.startswith("sim-"))


def test_rollout_attrs_follow_the_contract():
    attrs = rollout_attrs(SHA_A, "/b", robot="aloha", seed=3, label="success", label_source="operator",
                          takeover_spans=[(2, 5)])
    assert attrs["kind"] == ROLLOUT_KIND and is_rollout(attrs) and not is_rollout({"kind": "demonstration"})
    assert attrs["rollout"]["bundle_manifest_sha256"] == SHA_A and attrs["rollout"]["seed"] == 3
    assert attrs["takeover_spans"] == [[2, 5]] and json.loads(json.dumps(attrs)) == attrs


def test_wilson_interval():
    lo, hi = wilson_interval(9, 10)
    assert lo == pytest.approx(0.5958, abs=1e-3) and hi == pytest.approx(0.9821, abs=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # none of 10 is not "certainly never"
    with pytest.raises(ValueError, match="n: expected"):
        wilson_interval(0, 0)


def test_labelled_rollouts_of_a_bundle_honour_the_annotation_log(layout):
    make_session(layout, "demos", 1)  # demonstrations never count
    make_rollout_session(layout, "r1", SHA_A, ["success", "failure", None, "failure"])
    make_rollout_session(layout, "r2", SHA_B, ["success", "success"])  # another bundle
    make_rollout_session(layout, "r3", SHA_A, ["success"], finalize=False)  # still recording: not counted
    annotate(layout, "r1", 1, "label", by="op", label="success")  # the log's last label wins over the attr
    annotate(layout, "r1", 2, "label", by="op", label="failure")  # labels an unlabelled rollout
    annotate(layout, "r1", 3, "exclude", by="op", reason="camera unplugged")

    tally = labelled_rollouts(layout, SHA_A)
    assert tally.sessions == ["r1"] and not tally.problems
    assert [(r.ref, r.label, r.label_source) for r in tally.rollouts] == [
        ("r1/0", "success", "operator"), ("r1/1", "success", "annotation"), ("r1/2", "failure", "annotation")]
    assert (tally.successes, tally.count, tally.excluded, tally.unlabelled) == (2, 3, 1, 0)
    assert tally.rate == pytest.approx(2 / 3) and tally.interval == wilson_interval(2, 3)
    assert labelled_rollouts(layout, SHA_B).successes == 2
    assert labelled_rollouts(layout, "c" * 64).count == 0 and labelled_rollouts(layout, "c" * 64).rate is None


def test_a_malformed_episode_or_session_is_reported_by_name_and_the_rest_count(layout):
    paths = make_rollout_session(layout, "r1", SHA_A, ["success", "failure", "success"])
    (paths[1] / "zarr.json").write_text("{not json")
    make_rollout_session(layout, "r2", SHA_A, ["success"], finalize=False)
    write_rollout(layout, "r2", SHA_B, "success")  # an episode of another bundle in this bundle's session
    finalize_session(layout, "r2", {"kind": ROLLOUT_KIND, "bundle_manifest_sha256": SHA_A})
    make_rollout_session(layout, "r3", SHA_A, ["success"], finalize=False)
    (layout.session_dir("r3") / FINALIZED_MARKER).write_text("{broken")
    make_rollout_session(layout, "r4", SHA_A, ["success"], finalize=False)
    finalize_session(layout, "r4", {"kind": ROLLOUT_KIND})  # no bundle hash

    tally = labelled_rollouts(layout, SHA_A)
    assert (tally.successes, tally.count) == (3, 3)  # r1/0, r1/2 and r2/0
    problems = "\n".join(tally.problems)
    assert str(paths[1]) in problems and "zarr.json" in problems
    assert "episode_000001.zarr: rollout.bundle_manifest_sha256: expected" in problems
    assert f"r3/{FINALIZED_MARKER}" in problems and f"r4/{FINALIZED_MARKER}: bundle_manifest_sha256" in problems
    assert sorted(rollout_sessions(layout)[0]) == ["r1", "r2"]


def test_simulator_rollouts_never_count_as_real_success(layout):
    make_rollout_session(layout, "real", SHA_A, ["failure", "success"])
    make_rollout_session(layout, "sim", SHA_A, ["success", "success", "success"], robot=SIM_ROBOT,
                         label_source="simulator")
    # A simulator's label on a robot the check does not know (imported, renamed) still marks it simulated.
    make_rollout_session(layout, "sim-label", SHA_A, ["success"], robot="imported", label_source="simulator")
    tally = labelled_rollouts(layout, SHA_A)
    assert (tally.successes, tally.count, tally.simulated) == (1, 2, 4)
    assert [r.ref for r in tally.rollouts] == ["real/0", "real/1"]


def test_a_rollout_a_human_took_over_counts_as_a_failure_whatever_its_label(layout):
    make_rollout_session(layout, "r1", SHA_A, ["success", "success"])
    make_rollout_session(layout, "r2", SHA_A, ["success", "failure"], takeover_spans=[(2, 4)])
    tally = labelled_rollouts(layout, SHA_A)
    assert (tally.successes, tally.count, tally.with_takeover) == (2, 4, 2)
    assert tally.rate == pytest.approx(0.5)
    assert [(r.ref, r.label, r.succeeded, r.takeover_steps) for r in tally.rollouts[2:]] == [
        ("r2/0", "success", False, 2), ("r2/1", "failure", False, 2)]
