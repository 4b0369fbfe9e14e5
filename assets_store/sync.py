"""Upload a finalized session from a local store to an object store, its finalized marker last.

Recorders write locally (a 50 Hz loop never waits on the network); this copies what they committed. Every file is
hashed back from the object store after upload and compared with the local file. A sync that stops midway (killed,
network gone) leaves no marker, so the pipeline's sensor does not see the session; run again and it skips each file
the store already holds with the same sha256, uploading only the rest, then the marker.

The session's annotation log (labels, exclusions; append-only, beside the session) goes up whole after the session,
and again whenever it has grown: the store's copy must be an earlier state of the local one, else the sync refuses.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from assets_store.annotations import MAX_LOG_BYTES
from assets_store.bundle import MANIFEST, verify_bundle
from assets_store.errors import StoreError
from assets_store.hashing import file_sha256
from assets_store.layout import FINALIZED_MARKER, StoreLayout
from assets_store.remote import RemoteStore
from assets_store.sessions import read_finalized_marker, session_entries

MARKER_TMP_PREFIX = f".{FINALIZED_MARKER}.tmp-"  # the marker goes up under such a name, then one move


@dataclass
class SyncReport:
    session: str
    url: str  # the session's URL in the object store
    uploaded: list[str] = field(default_factory=list)  # paths relative to the session directory
    skipped: list[str] = field(default_factory=list)  # already there with the same sha256
    bytes_uploaded: int = 0
    annotations_uploaded: bool = False  # the session's annotation log, new or grown since the last sync


def session_files(layout: StoreLayout, session: str) -> list[str]:
    """The files a finalized session consists of, relative to its directory, the marker excluded: every file of the
    episodes its marker lists and the session's own visible files (hidden temporaries are a writer's, not data).
    StoreError when the session is not finalized or is not what its marker says."""
    sdir = layout.session_dir(session)
    if not sdir.is_dir():
        raise StoreError(f"{sdir}: no such session")
    if read_finalized_marker(sdir) is None:
        raise StoreError(
            f"{sdir}: not finalized ({FINALIZED_MARKER} is missing); only a finished recording is synced"
        )
    bad = [f"{e.name}: {e.problem}" for e in session_entries(layout, session) if e.problem]
    if bad:
        raise StoreError(f"{sdir}: the session is not what its {FINALIZED_MARKER} says: " + "; ".join(bad))
    out = []
    for path in sorted(sdir.rglob("*")):
        rel = path.relative_to(sdir)
        if path.is_file() and rel.as_posix() != FINALIZED_MARKER and not any(p.startswith(".") for p in rel.parts):
            out.append(rel.as_posix())
    return out


def sync_session(
    layout: StoreLayout,
    session: str,
    remote: RemoteStore,
    *,
    on_file: Callable[[str, bool], None] | None = None,
    batch_bytes: int = 64 << 20,
) -> SyncReport:
    """Upload `session` to `remote` (see the module docstring). `on_file(rel, uploaded)` is called after each file is
    verified in place. StoreError (nothing uploaded) for a session that is not finalized, is not what its marker
    says, or is already in the store with a different marker; StoreError naming the file for a hash mismatch."""
    sdir = layout.session_dir(session)
    files = session_files(layout, session)
    dest = remote.session_key(session)
    report = SyncReport(session, remote.url_of(dest))
    marker = sdir / FINALIZED_MARKER
    remote.refresh()
    held = remote.files(dest)
    if FINALIZED_MARKER in held:
        if remote.sha256(f"{dest}/{FINALIZED_MARKER}") != file_sha256(marker):
            raise StoreError(
                f"{report.url}: the store already holds a finalized session of this name with another "
                f"{FINALIZED_MARKER}; nothing was uploaded (a finalized session is never replaced)"
            )
    annotations = _annotations_to_upload(layout, session, remote)  # refused here, before anything is uploaded
    local_sha = {rel: file_sha256(sdir / rel) for rel in files}

    # What is already there with the same size is hashed back; a match is kept, anything else uploaded again.
    candidates = [rel for rel in files if held.get(rel) == (sdir / rel).stat().st_size]
    keys = {f"{dest}/{rel}": rel for rel in candidates}
    sizes = {key: held[rel] for key, rel in keys.items()}
    same = {keys[k] for k, digest in remote.sha256_many(list(keys), batch_bytes, sizes) if digest == local_sha[keys[k]]}
    for rel in files:
        if rel in same:
            report.skipped.append(rel)
            if on_file:
                on_file(rel, False)
    todo = [rel for rel in files if rel not in same]
    for rel in todo:
        _upload_verified(remote, sdir / rel, f"{dest}/{rel}", local_sha[rel])
        report.uploaded.append(rel)
        report.bytes_uploaded += (sdir / rel).stat().st_size
        if on_file:
            on_file(rel, True)
    # Last: the marker makes the session visible, and only now is everything it lists in place.
    if FINALIZED_MARKER not in held:
        # Through a hidden name and one move: on a filesystem without atomic puts the marker never shows half-written.
        tmp = f"{dest}/{MARKER_TMP_PREFIX}{uuid.uuid4().hex[:8]}"
        _upload_verified(remote, marker, tmp, file_sha256(marker))
        remote.fs.mv(tmp, f"{dest}/{FINALIZED_MARKER}")
        report.uploaded.append(FINALIZED_MARKER)
        report.bytes_uploaded += marker.stat().st_size
    else:
        report.skipped.append(FINALIZED_MARKER)
    if annotations is not None:  # after the session: the log names its episodes
        key = remote.annotations_key(session)
        remote.fs.pipe_file(key, annotations)  # one PUT: the old log or the new one, never half
        _verify(remote, key, hashlib.sha256(annotations).hexdigest(), layout.annotations_path(session))
        report.annotations_uploaded = True
        report.bytes_uploaded += len(annotations)
    # The marker's temporaries an interrupted sync left (our own names, there before this run started): the marker
    # is in place now, so they are only clutter.
    for rel in sorted(rel for rel in held if rel.startswith(MARKER_TMP_PREFIX) and "/" not in rel):
        remote.fs.rm_file(f"{dest}/{rel}")
    return report


def _annotations_to_upload(layout: StoreLayout, session: str, remote: RemoteStore) -> bytes | None:
    """The local annotation log's bytes when the store's copy is missing or a shorter prefix of it (the log is
    append-only); None when there is no log or the store holds the same. StoreError when the store's copy is not a
    prefix of the local one: someone else's log, never replaced."""
    local = layout.annotations_path(session)
    try:
        size = local.stat().st_size
    except FileNotFoundError:
        return None
    if size > MAX_LOG_BYTES:
        raise StoreError(f"{local}: annotation log of {size} bytes, expected at most {MAX_LOG_BYTES}")
    data = local.read_bytes()
    key = remote.annotations_key(session)
    try:
        held = remote.fs.cat_file(key)
    except FileNotFoundError:
        return data
    if held == data:
        return None
    if not data.startswith(held):
        raise StoreError(f"{remote.url_of(key)}: the store's annotation log is not an earlier state of the local "
                         f"{local} (it was changed elsewhere); nothing was uploaded, neither log was changed")
    return data


def _upload_verified(remote: RemoteStore, local: Path, key: str, digest: str) -> None:
    remote.fs.put_file(str(local), key)
    _verify(remote, key, digest, local)


def _verify(remote: RemoteStore, key: str, digest: str, local: Path) -> None:
    got = remote.sha256(key)
    if got != digest:
        raise StoreError(
            f"{remote.url_of(key)}: sha256 after upload is {got}, expected {digest} (the local {local}); "
            "run the sync again"
        )


def publish_bundle(src: Path, remote: RemoteStore, key: str, beside: dict[str, bytes] | None = None) -> dict:
    """Put the verified bundle `src` at `key` of an object store. Its manifest is the bundle's visibility: an old
    manifest at `key` is removed first, then every file is uploaded and verified, and the new manifest goes last, so
    a reader (`aloha pull`, which verifies every hash) never takes a half-written bundle for a complete one.
    `beside` ({key: bytes}, outside the bundle: its promotion record) is written just before the manifest, so a
    reader that finds the new manifest finds what belongs with it."""
    manifest = verify_bundle(src)
    remote.refresh()
    held = set(remote.files(key))
    if held and MANIFEST not in held:  # not a bundle of ours: its files are someone else's, never removed
        raise StoreError(f"{remote.url_of(key)}: holds files but no bundle manifest; refusing to replace them "
                         "(nothing was changed)")
    if held:
        remote.fs.rm_file(f"{key}/{MANIFEST}")
    for name in sorted(manifest["files"]):
        _upload_verified(remote, Path(src) / name, f"{key}/{name}", manifest["files"][name])
    stale = held - set(manifest["files"]) - {MANIFEST}
    for rel in sorted(stale):  # files of the bundle this one replaces (never the manifest's own files)
        remote.fs.rm_file(f"{key}/{rel}")
    for other, body in (beside or {}).items():
        remote.fs.pipe_file(other, body)  # one PUT: old or new, never half
    _upload_verified(remote, Path(src) / MANIFEST, f"{key}/{MANIFEST}", file_sha256(Path(src) / MANIFEST))
    return manifest
