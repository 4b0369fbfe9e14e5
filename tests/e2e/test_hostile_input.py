"""Damaged and hostile input: one bad episode never blocks its session, the work stays bounded whatever a file
claims, a finalized session is what its marker says, and HDF5 import reads only what the file itself holds."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from dagster import AssetCheckSeverity, DagsterInstance, SkipReason, build_sensor_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from assets_store import EpisodeError, EpisodeReader, StoreLayout, finalize_session
from assets_store.checks import CHECKS, CheckSettings
from assets_store.codec import encode_jpeg
from assets_store.hdf5 import import_hdf5
from assets_store.layout import FINALIZED_MARKER, TMP_PREFIX, host_tag
from assets_store.sessions import session_entries
from pipeline.cli.app import build_app
from pipeline.definitions import build_definitions
from pipeline.resources import StoreResource
from pipeline.sensors import finalized_sessions_sensor
from pipeline.validation import validate_cached
from hdf5_kit import write_aloha_hdf5
from pipeline_kit import H, W, check_one, check_results, corrupt_frame, ingest, make_session, metadata, write_episode

runner = CliRunner()


def set_attrs(episode: Path, **changes) -> None:
    meta = json.loads((episode / "zarr.json").read_text())
    meta["attributes"].update(changes)
    (episode / "zarr.json").write_text(json.dumps(meta))


def replace_attrs(episode: Path, value) -> None:
    meta = json.loads((episode / "zarr.json").read_text())
    meta["attributes"] = value
    (episode / "zarr.json").write_text(json.dumps(meta))


def quarantine_reasons(layout: StoreLayout, session: str, episode: Path) -> list[str]:
    return json.loads(layout.quarantine_record_path(session, episode.name).read_text())["reasons"]


def cli(*args: str):
    result = runner.invoke(build_app(), list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def jpeg_claiming(height: int, width: int) -> bytes:
    """A real 48x64 JPEG whose frame header claims another size (675 bytes, as in the report)."""
    data = bytearray(encode_jpeg(np.zeros((H, W, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def complete_temp_episode(layout: StoreLayout, session: str, final_name: str) -> Path:
    """What a writer leaves when it finished everything but died before its rename."""
    donor = write_episode(layout, "donor", seed=9)
    tmp = layout.session_dir(session) / f"{TMP_PREFIX}{final_name}.{host_tag()}.{dead_pid()}.aaaa0000"
    os.rename(donor, tmp)
    (tmp / ".aloha_complete").write_text("{}")
    return tmp


# ------------------------------------------------------------------------------ one bad episode never blocks its session
def test_malformed_attributes_quarantine_only_their_episode(layout):
    paths = make_session(layout, "s", 4)
    set_attrs(paths[1], num_steps="abc")
    set_attrs(paths[2], fps=0)
    replace_attrs(paths[3], [1, 2])

    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "s")
    assert result.success
    validated = metadata(result, "validated_episodes")
    assert validated["episodes_kept"] == 1 and validated["episodes_quarantined"] == 3
    for path, field in ((paths[1], "attrs.num_steps"), (paths[2], "attrs.fps"), (paths[3], "zarr.json")):
        reasons = quarantine_reasons(layout, "s", path)
        assert any(path.name in r and f"{field}: expected" in r for r in reasons), reasons


def test_unreadable_files_quarantine_only_their_episode(layout, monkeypatch):
    import assets_store.dataset

    paths = make_session(layout, "s", 4)
    chunk = paths[1] / "observations/images/top/c/3/0/0/0"  # a directory where a frame chunk should be
    chunk.unlink()
    chunk.mkdir()
    (paths[2] / "zarr.json").unlink()  # a directory where the group metadata should be
    (paths[2] / "zarr.json").mkdir()
    hash_tree = assets_store.dataset.directory_sha256

    def unreadable(path, skip=()):  # as root, chmod does not stop reads: the read itself fails here
        if Path(path) == paths[3]:
            raise PermissionError(13, "Permission denied", str(paths[3] / "action" / "c" / "0" / "0"))
        return hash_tree(path, skip)

    monkeypatch.setattr(assets_store.dataset, "directory_sha256", unreadable)

    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "s")
    assert result.success
    assert metadata(result, "validated_episodes")["episodes_quarantined"] == 3
    expected = {1: "observations/images/top: step 3: expected a readable frame chunk", 2: "zarr.json: expected a readable",
                3: "action/c/0/0: cannot read it to hash the episode (Permission denied)"}
    for i, text in expected.items():
        reasons = quarantine_reasons(layout, "s", paths[i])
        assert any(paths[i].name in r and text in r for r in reasons), reasons


def test_a_session_whose_every_episode_fails_still_gets_quarantine_records(layout):
    paths = make_session(layout, "bad", 2)
    set_attrs(paths[0], fps=0)
    corrupt_frame(paths[1])
    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "bad")
    assert check_results(result)["schema"].severity == AssetCheckSeverity.ERROR
    assert metadata(result, "validated_episodes") is None  # blocked downstream, as before
    assert any("attrs.fps" in r for r in quarantine_reasons(layout, "bad", paths[0]))
    assert any(r.startswith("frames_decodable:") for r in quarantine_reasons(layout, "bad", paths[1]))


def test_list_and_show_report_each_bad_episode_and_go_on(layout):
    paths = make_session(layout, "s", 4)
    set_attrs(paths[0], num_steps="abc")
    replace_attrs(paths[1], ["not", "a", "dict"])
    set_attrs(paths[2], fps=0)
    make_session(layout, "t", 1)
    (layout.raw_dir / "bad name").mkdir()

    res = cli("episodes", "list", "--store", str(layout.root))
    assert res.exit_code == 0, res.output
    for text in ("attrs.num_steps: expected a whole number", "zarr.json: expected an object of attributes",
                 "attrs.fps: expected a positive number", "bad name", "not a session: invalid session name",
                 "episode_000003.zarr"):
        assert text in res.output, text
    assert re.search(r"t \(finalized\)\s*│\s*episode_000000\.zarr\s*│\s*ok", res.output)  # later sessions still listed

    for i, text in ((0, "attrs.num_steps"), (1, "zarr.json: expected an object"), (2, "attrs.fps")):
        res = cli("episodes", "show", f"s/{i}")
        assert res.exit_code == 1 and res.output.startswith("error:") and text in res.output, res.output

    res = cli("episodes", "list", "--store", str(layout.root / "nonexistent"))
    assert res.exit_code == 1 and "does not exist" in res.output


def test_doctor_repairs_despite_a_foreign_directory(layout):
    make_session(layout, "s", 1, finalize=False)
    tmp = complete_temp_episode(layout, "s", "episode_000001.zarr")
    (layout.raw_dir / "not a session").mkdir()
    res = cli("episodes", "doctor", "--store", str(layout.root))
    assert res.exit_code == 0, res.output
    assert "recovered" in res.output and "not a session" in res.output
    assert not tmp.exists() and len(EpisodeReader(layout.episode_path("s", 1))) == 24


def test_sensor_reports_a_finalized_directory_it_cannot_ingest(layout):
    make_session(layout, "ok1", 1)
    foreign = layout.raw_dir / "has space"
    foreign.mkdir()
    (foreign / FINALIZED_MARKER).write_text(json.dumps({"episodes": []}))
    instance = DagsterInstance.ephemeral()
    context = build_sensor_context(instance=instance, resources={"store": StoreResource(root=str(layout.root))})
    assert [r.partition_key for r in finalized_sessions_sensor(context).run_requests] == ["ok1"]
    instance.add_dynamic_partitions("sessions", ["ok1"])
    skip = finalized_sessions_sensor(context)
    assert isinstance(skip, SkipReason) and "has space" in skip.skip_message and "invalid session name" in skip.skip_message


# ------------------------------------------------------------------------------ aloha episodes check
def test_episodes_check_answers_as_the_pipeline_does(layout):
    paths = make_session(layout, "s", 3)
    corrupt_frame(paths[1])
    set_attrs(paths[2], counters={"dropped_frames": 20})

    res = cli("episodes", "check", "s", "--store", str(layout.root))
    assert res.exit_code == 1, res.output
    lines = re.findall(r"^(episode_\d{6}\.zarr)\s+(\w+)\s+(ok|FAIL)\b", res.output, re.M)
    assert [(e, c) for e, c, _ in lines] == [(p.name, c) for p in paths for c in CHECKS]  # one line per episode, check
    assert "2 of 3 episodes fail" in res.output

    ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "s")
    for episode, check, verdict in lines:
        report = json.loads(layout.episode_report_path("s", episode).read_text())
        assert report["checks"][check]["passed"] == (verdict == "ok"), (episode, check)

    make_session(layout, "good", 2)
    res = cli("episodes", "check", "good", "--store", str(layout.root))
    assert res.exit_code == 0 and "every episode passes" in res.output, res.output
    assert cli("episodes", "check", "nope", "--store", str(layout.root)).exit_code == 1


# ------------------------------------------------------------------------------ bounded work on hostile input
def test_a_claimed_shape_is_compared_before_anything_is_read(layout):
    path = make_session(layout, "s", 1, finalize=False)[0]
    meta_file = path / "observations/qpos/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["shape"] = [2_400_000, 14]
    meta_file.write_text(json.dumps(meta))

    start = time.perf_counter()
    report = check_one(layout, "s", path)
    assert time.perf_counter() - start < 1.0  # it took 60 s when the claimed rows were loaded first
    assert "observations/qpos=2400000" in report.checks["lengths_agree"]["detail"]
    assert "observations/qpos: expected (24, 14) float32, got (2400000, 14) float32" in report.checks["finite_values"]["detail"]
    with pytest.raises(EpisodeError, match=r"observations/qpos: expected \(24, 14\) float32, got \(2400000, 14\)"):
        EpisodeReader(path)


def test_a_jpeg_claiming_a_huge_frame_is_never_decoded(layout):
    path = make_session(layout, "s", 1, finalize=False)[0]
    (path / "observations/images/top/c/3/0/0/0").write_bytes(jpeg_claiming(65000, 65000))
    reader = EpisodeReader(path)
    with pytest.raises(EpisodeError, match=r"step 3: .*JPEG header declares 65000x65000 .*not decoded"):
        reader.frame("top", 3)
    with pytest.raises(ValueError, match="declares 65000x65000.*expected 48x64.*not decoded"):
        zarr.open_array(str(path / "observations/images/top"), mode="r")[3]  # Zarr's path: the codec checks too
    assert "65000x65000" in check_one(layout, "s", path).checks["frames_decodable"]["detail"]


def test_hdf5_import_refuses_oversized_frames_before_reading_them(layout, tmp_path):
    huge = tmp_path / "huge.hdf5"
    write_aloha_hdf5(huge, steps=2, cams=("top",))
    with h5py.File(huge, "a") as f:  # 2 x 20000x20000 frames claimed, no data stored (a few KiB on disk)
        del f["observations/images/top"]
        f["observations/images"].create_dataset("top", shape=(2, 20000, 20000, 3), dtype="uint8", chunks=(1, 64, 64, 3))
    bomb = tmp_path / "bomb.hdf5"
    write_aloha_hdf5(bomb, steps=2, cams=("top",), hw=(H, W), compress=True)
    with h5py.File(bomb, "a") as f:
        row = np.zeros(f["observations/images/top"].shape[1], np.uint8)
        jpeg = np.frombuffer(jpeg_claiming(65000, 65000), np.uint8)
        row[: len(jpeg)] = jpeg
        f["observations/images/top"][0] = row
        f["compress_len"][0, 0] = len(jpeg)

    start = time.perf_counter()
    report = import_hdf5(layout, "imp", [huge, bomb])
    assert time.perf_counter() - start < 5.0
    reasons = dict((p.name, why) for p, why in report.failed)
    assert report.imported == [] and set(reasons) == {"huge.hdf5", "bomb.hdf5"}
    assert "/observations/images/top: expected RGB frames of at most 4096x4096, got 20000x20000x3" in reasons["huge.hdf5"]
    assert "got 65000x65000x3" in reasons["bomb.hdf5"]


def _with_qpos(path: Path, make) -> None:
    write_aloha_hdf5(path, steps=6, cams=("top",))
    with h5py.File(path, "a") as f:
        del f["observations/qpos"]
        make(f)


@pytest.mark.timeout(60)  # a FIFO used to block the import forever
def test_hdf5_import_reads_nothing_outside_the_file(layout, tmp_path):
    secret = np.full((6, 14), 42.0)
    outside = tmp_path / "outside.hdf5"
    with h5py.File(outside, "w") as f:
        f.create_dataset("secret", data=secret)
    raw = tmp_path / "outside.raw"
    raw.write_bytes(secret.tobytes())

    files = {
        "external_link.hdf5": lambda f: f.__setitem__("observations/qpos", h5py.ExternalLink(str(outside), "/secret")),
        "external_raw.hdf5": lambda f: f.create_dataset(
            "observations/qpos", shape=(6, 14), dtype="f8", external=[(str(raw), 0, secret.nbytes)]),
    }

    def virtual(f):
        vds = h5py.VirtualLayout(shape=(6, 14), dtype="f8")
        vds[:] = h5py.VirtualSource(str(outside), "secret", shape=(6, 14))
        f.create_virtual_dataset("observations/qpos", vds)

    files["virtual.hdf5"] = virtual
    for name, make in files.items():
        _with_qpos(tmp_path / name, make)
    fifo = tmp_path / "fifo.hdf5"
    os.mkfifo(fifo)

    report = import_hdf5(layout, "imp", [tmp_path / n for n in files] + [fifo, tmp_path])
    assert report.imported == []
    reasons = {p.name: why for p, why in report.failed}
    assert "external link to" in reasons["external_link.hdf5"]
    assert "raw data stored in external files" in reasons["external_raw.hdf5"]
    assert "virtual dataset" in reasons["virtual.hdf5"]
    assert "expected a regular HDF5 file, got a FIFO" in reasons["fifo.hdf5"]
    assert "got a directory" in reasons[tmp_path.name]


def test_hdf5_cli_fps_and_export_targets(layout, tmp_path):
    src = tmp_path / "episode_0.hdf5"
    write_aloha_hdf5(src, steps=6, cams=("top",))
    for fps in ("0", "-5"):
        res = cli("import-hdf5", str(src), "--session", "s", "--fps", fps, "--store", str(layout.root))
        assert res.exit_code == 1 and res.output.startswith("error: fps: expected a positive number"), res.output
    assert not layout.session_dir("s").exists()
    assert cli("import-hdf5", str(src), "--session", "s", "--store", str(layout.root)).exit_code == 0

    out = tmp_path / "out"
    out.mkdir()
    mine = out / "episode_000000.hdf5"
    mine.write_bytes(b"a file the user wrote")
    res = cli("export-hdf5", "s/0", "--out", str(out), "--store", str(layout.root))
    assert res.exit_code == 1 and "refusing to overwrite" in res.output and "--force" in res.output
    assert mine.read_bytes() == b"a file the user wrote"
    res = cli("export-hdf5", "s/0", "--out", str(out), "--force", "--store", str(layout.root))
    assert res.exit_code == 0, res.output
    with h5py.File(mine, "r") as f:
        assert f["observations/qpos"].shape == (6, 14)
    res = cli("export-hdf5", "s/0", "--out", str(mine), "--store", str(layout.root))
    assert res.exit_code == 1 and "expected a directory" in res.output


# ------------------------------------------------------------------------------ a finalized session is what its marker says
def test_a_finalized_session_is_compared_with_its_marker(layout):
    paths = make_session(layout, "s", 3)
    shutil.rmtree(paths[0])  # deleted after finalization
    shutil.rmtree(paths[1])
    paths[1].write_bytes(b"")  # a file in place of an episode
    added = layout.episode_path("s", 5)
    shutil.copytree(paths[2], added)  # added after finalization
    before = sorted(p.name for p in layout.session_dir("s").iterdir())

    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "s")
    assert result.success and metadata(result, "validated_episodes")["episodes_kept"] == 1
    assert not check_results(result)["in_session"].passed
    expected = {paths[0]: "listed in SESSION_FINALIZED.json but missing", paths[1]: "expected an episode directory, found a file",
                added: "not listed in SESSION_FINALIZED.json: added after the session was finalized"}
    for path, text in expected.items():
        assert any(r.startswith("in_session:") and text in r for r in quarantine_reasons(layout, "s", path))

    res = cli("episodes", "check", "s", "--store", str(layout.root))
    assert res.exit_code == 1
    for path, text in expected.items():
        assert re.search(rf"{path.name}\s+in_session\s+FAIL .*{text}", res.output), res.output
    res = cli("episodes", "doctor", "--store", str(layout.root))
    assert res.exit_code == 0 and all(f"problem: {p}: {t}" in res.output for p, t in expected.items()), res.output
    assert sorted(p.name for p in layout.session_dir("s").iterdir()) == before  # reported, never changed


def test_doctor_never_recovers_into_a_finalized_session(layout):
    make_session(layout, "s", 1)
    tmp = complete_temp_episode(layout, "s", "episode_000001.zarr")
    res = cli("episodes", "doctor", "--store", str(layout.root))
    assert res.exit_code == 0 and f"kept (session finalized): {tmp}" in res.output, res.output
    assert tmp.is_dir() and not layout.episode_path("s", 1).exists()


def test_links_out_of_the_store_are_reported_and_never_read(layout, tmp_path):
    paths = make_session(layout, "s", 2, finalize=False)
    outside = tmp_path / "outside"
    shutil.copytree(paths[1], outside / "episode.zarr")
    linked_dir = layout.episode_path("s", 2)
    linked_dir.symlink_to(outside / "episode.zarr", target_is_directory=True)
    chunk = paths[1] / "observations/qpos/c/0/0"
    chunk.unlink()
    chunk.symlink_to(outside / "episode.zarr/observations/qpos/c/0/0")
    finalize_session(layout, "s")

    result = ingest(build_definitions(store_root=str(layout.root)), DagsterInstance.ephemeral(), "s")
    assert result.success and metadata(result, "validated_episodes")["episodes_quarantined"] == 2
    assert any("a symbolic link to" in r and "outside the store" in r for r in quarantine_reasons(layout, "s", linked_dir))
    assert any("observations/qpos/c/0/0 is a symbolic link" in r for r in quarantine_reasons(layout, "s", paths[1]))
    res = cli("episodes", "doctor", "--store", str(layout.root))
    assert res.output.count("outside the store") == 2, res.output
    assert linked_dir.is_symlink() and chunk.is_symlink()  # kept where the user put them, only reported


# ------------------------------------------------------------------------------ property: random damage
def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    layout = StoreLayout(tmp_path_factory.mktemp("pristine") / "store")
    make_session(layout, "s", 2)
    return layout.root


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


def _json_paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _json_paths(v, prefix + (i,))


def _mutate_metadata(data, meta_file: Path) -> None:
    meta = json.loads(meta_file.read_text())
    where = data.draw(st.sampled_from([p for p in _json_paths(meta) if p]))
    parent = meta
    for key in where[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = data.draw(JSON_VALUES)
    meta_file.write_text(json.dumps(meta))


def _mutate_chunk(data, chunk: Path) -> None:
    raw = chunk.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "flip", "random", "jpeg_bomb"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif how == "flip" and raw:
        at = data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8))
        buf = bytearray(raw)
        for i in at:
            buf[i] ^= data.draw(st.integers(1, 255))
        raw = bytes(buf)
    elif how == "random":
        raw = data.draw(st.binary(max_size=256))
    else:
        raw = jpeg_claiming(data.draw(st.integers(0, 65535)), data.draw(st.integers(0, 65535)))
    chunk.write_bytes(raw)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_is_a_per_episode_failure_in_bounded_time(pristine, data):
    with tempfile.TemporaryDirectory() as scratch:
        layout = StoreLayout(Path(scratch) / "store")
        shutil.copytree(pristine, layout.root)
        episode = layout.episode_path("s", 0)  # episode 1 stays intact: it must still pass
        metas = sorted(str(p.relative_to(episode)) for p in episode.rglob("zarr.json"))
        chunks = sorted(str(p.relative_to(episode)) for p in episode.rglob("*") if p.is_file() and "c" in p.relative_to(episode).parts[:-1])
        for _ in range(data.draw(st.integers(1, 3))):
            if data.draw(st.booleans()):
                _mutate_metadata(data, episode / data.draw(st.sampled_from(metas)))
            else:
                _mutate_chunk(data, episode / data.draw(st.sampled_from(chunks)))
        before = _tree_digest(layout.raw_dir)

        reports = {}
        for entry in session_entries(layout, "s"):
            start = time.perf_counter()
            reports[entry.name], _ = validate_cached(
                "s", entry, CheckSettings(), layout.episode_report_path("s", entry.name)
            )
            assert time.perf_counter() - start < 1.0, entry.name
        assert _tree_digest(layout.raw_dir) == before  # validation never writes under raw/
        assert all(list(r.checks) == list(CHECKS) for r in reports.values())
        assert reports["episode_000001.zarr"].passed
