"""Every kind of bad input gives an error naming the episode, the array and what was expected,
and never touches data that was already committed."""

import json
import shutil

import numpy as np
import pytest

from assets_store import CameraSpec, EpisodeError, EpisodeInfo, EpisodeReader, EpisodeWriter, StoreError, validate_name
from assets_store.dataset import episode_content_hash
from assets_store.synthetic import write_synthetic_episode


@pytest.fixture
def committed(layout):
    """One committed episode whose content hash is checked after each test."""
    path = write_synthetic_episode(layout, "s", steps=8, cameras={"top": (24, 32)})
    before = episode_content_hash(path)
    yield path
    assert episode_content_hash(path) == before, "committed episode was modified"


def _writer(layout, cams=(("top", 24, 32),)):
    info = EpisodeInfo(robot="t", joint_names=[f"j{i}" for i in range(14)], fps=50,
                       cameras=[CameraSpec(n, h, w) for n, h, w in cams])
    return EpisodeWriter(layout, "s", info)


GOOD_IMG = {"top": np.zeros((24, 32, 3), np.uint8)}


@pytest.mark.parametrize(
    "kwargs, field, expected",
    [
        (dict(qpos=np.zeros(13)), "observations/qpos", r"expected shape \(14,\), got \(13,\)"),
        (dict(qpos=np.zeros((14, 1))), "observations/qpos", r"expected shape \(14,\)"),
        (dict(action=np.array(["a"] * 14)), "action", "expected a float vector, got dtype <U1"),
        (dict(qpos=np.full(14, np.nan)), "observations/qpos", "expected finite values, got NaN/Inf"),
        (dict(action=np.r_[np.zeros(13), np.inf]), "action", r"NaN/Inf at \[13\]"),
        (dict(images={"top": np.zeros((24, 32, 3), np.float32)}), "observations/images/top", "expected uint8"),
        (dict(images={"top": np.zeros((32, 24, 3), np.uint8)}), "observations/images/top", r"\(24, 32, 3\)"),
        (dict(images={}), "observations/images", r"expected frames for cameras \['top'\]"),
        (dict(images={"top": GOOD_IMG["top"], "side": GOOD_IMG["top"]}), "observations/images", "expected frames"),
        (dict(timestamp=float("nan")), "timestamps", "expected a finite time"),
    ],
)
def test_writer_rejects_bad_steps(layout, committed, kwargs, field, expected):
    w = _writer(layout)
    step = dict(qpos=np.zeros(14), action=np.zeros(14), timestamp=0.0, images=GOOD_IMG)
    step.update(kwargs)
    with pytest.raises(EpisodeError, match=expected) as err:
        w.add_step(step.pop("qpos"), step.pop("action"), step.pop("timestamp"), **step)
    assert err.value.field == field
    assert "s/episode_000001.zarr" in str(err.value)  # names the episode
    # the rejected step left no trace: the writer is still usable
    w.add_step(np.zeros(14), np.zeros(14), 0.0, images=GOOD_IMG)
    assert len(w) == 1
    w.discard()


def test_writer_rejects_non_monotonic_timestamps(layout, committed):
    w = _writer(layout)
    w.add_step(np.zeros(14), np.zeros(14), 1.0, images=GOOD_IMG)
    with pytest.raises(EpisodeError, match=r"timestamps: step 1: expected strictly increasing times, got 1.0 after 1.0"):
        w.add_step(np.zeros(14), np.zeros(14), 1.0, images=GOOD_IMG)
    with pytest.raises(EpisodeError, match="strictly increasing"):
        w.add_step(np.zeros(14), np.zeros(14), 0.5, images=GOOD_IMG)
    w.discard()


def test_writer_rejects_optional_array_appearing_midway(layout, committed):
    w = _writer(layout)
    w.add_step(np.zeros(14), np.zeros(14), 0.0, images=GOOD_IMG)
    with pytest.raises(EpisodeError, match="observations/qvel: step 1: expected it absent"):
        w.add_step(np.zeros(14), np.zeros(14), 0.02, qvel=np.zeros(14), images=GOOD_IMG)
    w.discard()


def test_empty_episode_is_refused_and_leaves_nothing(layout, committed):
    w = _writer(layout)
    with pytest.raises(EpisodeError, match="expected at least one recorded step"):
        w.close()
    assert sorted(p.name for p in layout.session_dir("s").iterdir()) == ["episode_000000.zarr"]


def test_episode_is_written_once(layout, committed):
    info = EpisodeInfo(robot="t", joint_names=["a"], fps=50)
    with pytest.raises(StoreError, match="already exists"):
        EpisodeWriter(layout, "s", info, index=0)


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "a" * 101, "x\\y", "sp ace"])
def test_names_cannot_escape_the_store(layout, name):
    with pytest.raises(StoreError, match="invalid session name"):
        layout.session_dir(name)
    with pytest.raises(StoreError):
        validate_name(name)


# ---------------------------------------------------------------------------------------- reader side
def _tampered(committed, tmp_path):
    copy = tmp_path / "tampered" / committed.name
    shutil.copytree(committed, copy)
    return copy


def _set_attrs(path, **changes):
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"].update(changes)
    meta_file.write_text(json.dumps(meta))


def test_unknown_schema_version_names_the_file(committed, tmp_path):
    bad = _tampered(committed, tmp_path)
    _set_attrs(bad, schema_version=99)
    with pytest.raises(EpisodeError, match=r"attrs.schema_version: unknown schema version 99") as err:
        EpisodeReader(bad)
    assert str(bad) in str(err.value)


def test_not_an_episode(committed, tmp_path):
    bad = _tampered(committed, tmp_path)
    _set_attrs(bad, schema="something-else")
    with pytest.raises(EpisodeError, match="attrs.schema: expected 'aloha-episode'"):
        EpisodeReader(bad)
    (bad / "zarr.json").write_text("{not json")
    with pytest.raises(EpisodeError, match="zarr.json: expected JSON"):
        EpisodeReader(bad)
    with pytest.raises(EpisodeError, match="does not exist"):
        EpisodeReader(tmp_path / "nope.zarr")


def test_missing_array(committed, tmp_path):
    bad = _tampered(committed, tmp_path)
    shutil.rmtree(bad / "action")
    with pytest.raises(EpisodeError, match=r"action: expected this array; it is missing"):
        EpisodeReader(bad)


def test_mismatched_array_lengths(committed, tmp_path):
    import zarr

    bad = _tampered(committed, tmp_path)
    shutil.rmtree(bad / "action")
    g = zarr.open_group(str(bad), mode="a")
    g.create_array("action", data=np.zeros((5, 14), np.float32))
    with pytest.raises(EpisodeError, match=r"action: expected \(8, 14\) float32, got \(5, 14\) float32"):
        EpisodeReader(bad)


def test_truncated_lowdim_chunk(committed, tmp_path):
    bad = _tampered(committed, tmp_path)
    chunk = bad / "observations" / "qpos" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:17])
    with pytest.raises(EpisodeError, match=r"observations/qpos: cannot read the data"):
        EpisodeReader(bad)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_bad_frame_chunk(committed, tmp_path, damage):
    bad = _tampered(committed, tmp_path)
    chunk = bad / "observations/images/top/c/3/0/0/0"
    if damage == "garbage":
        chunk.write_bytes(b"\x00garbage" * 10)
    elif damage == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:40])
    else:
        chunk.unlink()
    r = EpisodeReader(bad)  # low-dim data is still readable
    assert r.frame("top", 2).shape == (24, 32, 3)
    with pytest.raises(EpisodeError, match=r"observations/images/top: step 3: expected a") as err:
        r.frame("top", 3)
    assert str(bad) in str(err.value)


def test_unknown_codec(committed, tmp_path):
    bad = _tampered(committed, tmp_path)
    meta_file = bad / "observations/images/top/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["codecs"] = [{"name": "fancy_video_codec", "configuration": {}}]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(EpisodeError, match=r"observations/images/top: cannot open the array.*fancy_video_codec"):
        EpisodeReader(bad)


def test_unknown_camera(committed):
    with pytest.raises(EpisodeError, match=r"no such camera; expected one of \['top'\]"):
        EpisodeReader(committed).frame("side", 0)


def test_structural_checks_answer_per_question_without_the_pipeline(committed, tmp_path):
    import zarr

    from assets_store import checks
    from assets_store.episode_reader import EpisodeArrays

    assert checks.schema(EpisodeArrays(committed)).passed and checks.lengths(EpisodeArrays(committed)).passed

    short = _tampered(committed, tmp_path)
    shutil.rmtree(short / "action")
    zarr.open_group(str(short), mode="a").create_array("action", data=np.zeros((5, 14), np.float32))
    ep = EpisodeArrays(short)  # where EpisodeReader would refuse to open it
    assert checks.schema(ep).passed  # right dtype and width: only the length is wrong
    assert checks.lengths(ep) == checks.CheckResult(False, "expected 8 rows, got action=5")

    newer = tmp_path / "newer" / committed.name
    shutil.copytree(committed, newer)
    _set_attrs(newer, schema_version=99)
    result = checks.schema(EpisodeArrays(newer))
    assert not result.passed
    assert "attrs.schema_version: unknown schema version 99" in result.detail and str(newer) in result.detail
