"""A store root that is a URL: `file://` is a local path, other URLs are object stores reached through fsspec.

The store's own round trips (sync a session, publish a bundle) on `memory://` and `file://` roots; the S3 protocol
itself is exercised in tests/e2e/test_s3_store.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid

import pytest

import numpy as np

from assets_store import EpisodeReader, StoreError, StoreLayout, finalize_session
from assets_store.bundle import MANIFEST, seal_bundle
from assets_store.hashing import file_sha256
from assets_store.layout import FINALIZED_MARKER, is_remote_root, resolve_store_root
from assets_store.remote import RemoteStore, open_store
from assets_store.sync import publish_bundle, session_files, sync_session
from assets_store.synthetic import write_synthetic_episode
from s3_kit import placeholder_bundle


@pytest.fixture(params=["memory", "file"])
def remote(request, tmp_path) -> RemoteStore:
    if request.param == "memory":
        url = f"memory://bucket-{uuid.uuid4().hex[:8]}/aloha"
    else:
        url = (tmp_path / "bucket" / "aloha").as_uri()
    return RemoteStore.at(url)


def _session(layout: StoreLayout, name: str = "s1", episodes: int = 2) -> str:
    for i in range(episodes):
        write_synthetic_episode(layout, name, steps=6, seed=i)
    finalize_session(layout, name)
    return name


def test_file_url_root_is_the_local_path_and_object_store_urls_are_not_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_store_root((tmp_path / "st").as_uri()) == tmp_path / "st"
    assert isinstance(open_store((tmp_path / "st").as_uri()), StoreLayout)
    with pytest.raises(StoreError, match=r"s3://robot-data/aloha: an object-store URL"):
        StoreLayout.at("s3://robot-data/aloha")
    monkeypatch.setenv("ALOHA_STORE", "s3://robot-data/aloha")
    with pytest.raises(StoreError, match="object-store URL"):
        StoreLayout.at()
    assert not (tmp_path / "s3:").exists()  # the old behaviour: a local folder named `s3:`
    assert is_remote_root("memory://x") and is_remote_root("s3://b/p")
    assert not is_remote_root("file:///x") and not is_remote_root("/x")
    assert isinstance(open_store("memory://b/aloha"), RemoteStore)


def test_sync_uploads_every_file_verified_with_the_marker_last(layout, remote):
    session = _session(layout)
    seen: list[str] = []
    report = sync_session(layout, session, remote, on_file=lambda rel, up: seen.append(rel))
    files = session_files(layout, session)
    assert report.uploaded == [*files, FINALIZED_MARKER] and report.skipped == []
    assert seen == files  # every file verified before the marker went up
    sdir = layout.session_dir(session)
    dest = remote.session_key(session)
    assert set(remote.files(dest)) == {*files, FINALIZED_MARKER}
    for rel in [*files, FINALIZED_MARKER]:
        assert remote.sha256(f"{dest}/{rel}") == file_sha256(sdir / rel)
    assert remote.is_session_finalized(session)

    again = sync_session(layout, session, remote)
    assert again.uploaded == [] and again.skipped == [*files, FINALIZED_MARKER]


def test_an_interrupted_sync_resumes_and_the_session_is_visible_only_once_complete(layout, remote):
    session = _session(layout)
    files = session_files(layout, session)

    class Killed(Exception):
        pass

    def die_after_three(rel, uploaded):  # called once a file is uploaded and verified
        done.append(rel)
        if len(done) == 3:
            raise Killed

    done: list[str] = []
    with pytest.raises(Killed):
        sync_session(layout, session, remote, on_file=die_after_three)
    assert not remote.is_session_finalized(session)
    dest = remote.session_key(session)
    # A file damaged in the store (same size, other bytes) is found by its hash and uploaded again.
    damaged = files[-1]
    size = (layout.session_dir(session) / damaged).stat().st_size
    remote.fs.pipe_file(f"{dest}/{damaged}", b"x" * size)

    report = sync_session(layout, session, remote)
    assert sorted(report.skipped) == sorted(done)  # not uploaded again
    assert sorted(report.uploaded) == sorted([*(set(files) - set(done)), FINALIZED_MARKER])
    assert damaged in report.uploaded
    assert remote.is_session_finalized(session)
    assert remote.sha256(f"{dest}/{damaged}") == file_sha256(layout.session_dir(session) / damaged)


def test_sync_refuses_an_unfinalized_session_and_a_different_one_of_the_same_name(layout, remote):
    write_synthetic_episode(layout, "open", steps=6)
    with pytest.raises(StoreError, match=rf"open: not finalized \({FINALIZED_MARKER} is missing\)"):
        sync_session(layout, "open", remote)
    assert remote.files(remote.session_key("open")) == {}

    session = _session(layout)
    sync_session(layout, session, remote)
    other = StoreLayout(layout.root.parent / "other")
    _session(other, session, episodes=1)
    with pytest.raises(StoreError, match="already holds a finalized session of this name"):
        sync_session(other, session, remote)


def test_sync_refuses_a_session_that_is_not_what_its_marker_says(layout, remote):
    session = _session(layout)
    marker = layout.session_dir(session) / FINALIZED_MARKER
    body = json.loads(marker.read_text())
    body["episodes"].append("episode_000009.zarr")
    marker.write_text(json.dumps(body))
    with pytest.raises(StoreError, match=r"episode_000009.zarr: listed in .* but missing"):
        sync_session(layout, session, remote)
    assert remote.files(remote.session_key(session)) == {}


def test_publish_bundle_replaces_a_bundle_manifest_last(tmp_path, remote):
    def bundle(path, weights: bytes, extra: str | None = None):
        path.mkdir()
        (path / "model.safetensors").write_bytes(weights)
        (path / "config.json").write_text("{}")
        (path / "stats.json").write_text("{}")
        if extra:
            (path / extra).write_text("x")
        seal_bundle(path, dataset_id=weights.decode())
        return path

    key = remote.deploy_key("aloha-act", "champion")
    first = publish_bundle(bundle(tmp_path / "a", b"one", extra="notes.txt"), remote, key)
    assert set(remote.files(key)) == {*first["files"], MANIFEST}
    second = publish_bundle(bundle(tmp_path / "b", b"two"), remote, key)
    assert set(remote.files(key)) == {*second["files"], MANIFEST}  # the old bundle's extra file is gone
    assert json.loads(remote.fs.cat_file(f"{key}/{MANIFEST}"))["dataset_id"] == "two"

    # Files under the key that are not a bundle of ours are someone else's: refused, nothing removed.
    theirs = remote.deploy_key("aloha-act", 7)
    remote.fs.pipe_file(f"{theirs}/notes.txt", b"a user's file")
    with pytest.raises(StoreError, match="no bundle manifest"):
        publish_bundle(bundle(tmp_path / "c", b"three"), remote, theirs)
    assert remote.fs.cat_file(f"{theirs}/notes.txt") == b"a user's file" and set(remote.files(theirs)) == {"notes.txt"}


def test_an_episode_reads_the_same_from_the_object_store(layout, remote):
    session = _session(layout, episodes=1)
    sync_session(layout, session, remote)
    local = EpisodeReader(layout.episode_path(session, 0))
    url = remote.episode_url(session, "episode_000000.zarr")
    there = EpisodeReader(url)
    assert str(there.path) == url.removeprefix("file://") and there.info == local.info  # file:// is a local path
    for name in ("qpos", "action", "timestamps"):
        np.testing.assert_array_equal(getattr(there, name), getattr(local, name))
    cam = local.camera_names[0]
    assert there.frame_bytes(cam, 3) == local.frame_bytes(cam, 3)
    np.testing.assert_array_equal(there.frame(cam, 3), local.frame(cam, 3))
    np.testing.assert_array_equal(there.frame_info(cam), local.frame_info(cam))
    remote.fs.rm_file(f"{remote.session_key(session)}/episode_000000.zarr/observations/images/{cam}/c/2/0/0/0")
    with pytest.raises(StoreError, match=rf"{re.escape(str(there.path))}: observations/images/{cam}: step 2: expected a"):
        there.frame(cam, 2)


def test_a_dataset_goes_to_the_object_store_manifest_last_and_loads_from_there(layout, tmp_path):
    from assets_store.dataset import (build_manifest, dataset_episodes_url, episode_content_hash, load_dataset,
                                      write_dataset)
    from assets_store.stats import dataset_stats, episode_partial_stats

    path = write_synthetic_episode(layout, "s1", steps=6)
    r = EpisodeReader(path)
    manifest = build_manifest([("s1", path.name, episode_content_hash(path), len(r))], val_fraction=0.0)
    stats = dataset_stats([episode_partial_stats(r.qpos, r.action)])
    url = f"memory://bucket-{uuid.uuid4().hex[:8]}/aloha"
    hybrid = StoreLayout(tmp_path / "local", data_url=url)
    out = write_dataset(hybrid, manifest, stats)
    assert out.is_relative_to(tmp_path / "local")  # the local copy the pipeline keeps
    remote = RemoteStore.at(url)
    key = remote.dataset_key(manifest.id)
    assert set(remote.files(key)) == {"manifest.json", "stats.json"}
    assert load_dataset(f"{url}/datasets/{manifest.id}")[0] == manifest
    # Where a trainer reads the episodes: recorded beside the local copy (outside the manifest: same dataset id).
    assert dataset_episodes_url(out) == url == dataset_episodes_url(f"{url}/datasets/{manifest.id}")
    assert dataset_episodes_url(write_dataset(layout, manifest, stats)) is None
    remote.fs.rm_file(f"{key}/manifest.json")  # what a crash between the two writes leaves
    with pytest.raises(StoreError, match="expected a dataset directory with manifest.json"):
        load_dataset(f"{url}/datasets/{manifest.id}")
    with pytest.raises(StoreError, match="expected an object-store URL"):
        StoreLayout(tmp_path, data_url="/not/a/url")


class RecordingFs:
    """The store's filesystem, with every write and removal recorded in order; `corrupt` names a file (by its last
    path part) whose upload lands altered in the store, as a broken transfer would leave it."""

    def __init__(self, fs, corrupt: str | None = None):
        self._fs, self.corrupt, self.ops = fs, corrupt, []

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def put_file(self, lpath, rpath, **kwargs):
        self.ops.append(("put", rpath.rsplit("/", 1)[-1]))
        self._fs.put_file(lpath, rpath, **kwargs)
        if self.corrupt and rpath.endswith("/" + self.corrupt):
            self._fs.pipe_file(rpath, b"altered in transit")

    def rm_file(self, path, **kwargs):
        self.ops.append(("rm", path.rsplit("/", 1)[-1]))
        self._fs.rm_file(path, **kwargs)

    def mv(self, src, dst, **kwargs):
        self.ops.append(("mv", dst.rsplit("/", 1)[-1]))
        self._fs.mv(src, dst, **kwargs)


def _recording(remote: RemoteStore, corrupt: str | None = None) -> tuple[RemoteStore, RecordingFs]:
    fs = RecordingFs(remote.fs, corrupt)
    return dataclasses.replace(remote, fs=fs), fs


def test_sync_writes_the_marker_last_and_refuses_a_corrupted_upload(layout, remote):
    session = _session(layout)
    recorded, fs = _recording(remote)
    sync_session(layout, session, recorded)
    files = session_files(layout, session)
    puts = [name for op, name in fs.ops if op == "put"]
    assert len(puts) == len(files) + 1 and puts[-1].startswith(f".{FINALIZED_MARKER}.tmp-")  # the marker's upload
    assert fs.ops[-1] == ("mv", FINALIZED_MARKER)  # ... and its move into place is the very last write

    _session(layout, "s2")
    corrupted, fs = _recording(remote, corrupt="zarr.json")
    with pytest.raises(StoreError, match="sha256 after upload"):
        sync_session(layout, "s2", corrupted)
    assert not any(name.endswith(FINALIZED_MARKER) for _, name in fs.ops)  # no marker after a bad file
    assert not remote.is_session_finalized("s2")


def test_publish_bundle_removes_the_old_manifest_first_and_puts_the_new_one_last(tmp_path, remote):
    key = remote.deploy_key("aloha-act", "champion")
    publish_bundle(placeholder_bundle(tmp_path / "a", dataset_id="one"), remote, key)
    remote.fs.pipe_file(f"{key}/old-notes.txt", b"x")  # a file of the old bundle the new one does not have
    recorded, fs = _recording(remote)
    publish_bundle(placeholder_bundle(tmp_path / "b", dataset_id="two"), recorded, key)
    assert fs.ops[0] == ("rm", MANIFEST)  # the old bundle stops being one before any of its files changes
    assert fs.ops[-1] == ("put", MANIFEST) and [op for op in fs.ops if op[1] == MANIFEST] == [fs.ops[0], fs.ops[-1]]
    assert ("rm", "old-notes.txt") in fs.ops

    corrupted, fs = _recording(remote, corrupt="model.safetensors")
    with pytest.raises(StoreError, match="sha256 after upload"):
        publish_bundle(placeholder_bundle(tmp_path / "c", dataset_id="three"), corrupted, key)
    assert ("put", MANIFEST) not in fs.ops and MANIFEST not in remote.files(key)  # no bundle visible under the key


def test_a_later_sync_removes_the_marker_temporaries_an_interrupted_one_left(layout, remote):
    session = _session(layout)
    dest = remote.session_key(session)
    remote.fs.pipe_file(f"{dest}/.{FINALIZED_MARKER}.tmp-dead0001", b"half a marker")  # a sync killed mid-marker
    sync_session(layout, session, remote)
    assert remote.is_session_finalized(session)
    assert not [rel for rel in remote.files(dest) if ".tmp-" in rel]
    remote.fs.pipe_file(f"{dest}/.{FINALIZED_MARKER}.tmp-dead0002", b"half a marker")
    sync_session(layout, session, remote)  # the session already complete: the leftover goes all the same
    assert set(remote.files(dest)) == {*session_files(layout, session), FINALIZED_MARKER}


def test_sync_uploads_the_annotation_log_and_refuses_one_changed_elsewhere(layout, remote):
    from assets_store.annotations import annotate, read_annotations

    session = _session(layout)
    annotate(layout, session, 0, "label", by="ana", label="success")
    assert sync_session(layout, session, remote).annotations_uploaded
    key = remote.annotations_key(session)
    local = layout.annotations_path(session)
    assert remote.fs.cat_file(key) == local.read_bytes()
    assert not sync_session(layout, session, remote).annotations_uploaded  # unchanged: not uploaded again

    annotate(layout, session, 1, "exclude", by="ana", reason="gripper slipped")  # appended after the first sync
    report = sync_session(layout, session, remote)
    assert report.annotations_uploaded and report.uploaded == []  # the session itself was already there
    assert remote.fs.cat_file(key) == local.read_bytes()

    remote.fs.pipe_file(key, b'{"edited": "elsewhere"}\n')  # not an earlier state of the local log
    annotate(layout, session, 0, "label", by="ana", label="failure")
    with pytest.raises(StoreError, match=rf"annotation log is not an earlier state of the local {re.escape(str(local))}"):
        sync_session(layout, session, remote)
    assert remote.fs.cat_file(key) == b'{"edited": "elsewhere"}\n'  # neither log changed

    if remote.url.startswith("memory://"):  # a pipeline on the bucket reads the log from there
        remote.fs.pipe_file(key, local.read_bytes())
        hybrid = StoreLayout(layout.root.parent / "pipeline-state", data_url=remote.url)
        notes = read_annotations(hybrid, session)
        assert notes.of("episode_000000.zarr").label == "failure"
        assert notes.of("episode_000001.zarr").excluded == "gripper slipped"
