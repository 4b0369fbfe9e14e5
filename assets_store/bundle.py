"""Policy bundles: a directory of safetensors + JSON with a manifest of sha256 hashes. No pickle anywhere.

    model.safetensors   weights
    config.json         architecture, camera names, joint names, fps, chunk size
    stats.json          normalization statistics
    manifest.json       sha256 of every other file, dataset id, MLflow run id, metrics
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from assets_store.errors import BundleIntegrityError, StoreError
from assets_store.hashing import file_sha256, replace_directory, write_json_atomic

BUNDLE_SCHEMA = "aloha-policy-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATS = "stats.json"
REQUIRED_FILES = (WEIGHTS, CONFIG, STATS)


def _files(bundle: Path) -> list[str]:
    """Every file in the bundle but the manifest; a link anywhere in it is refused (its bytes live elsewhere)."""
    names = []
    for p in bundle.rglob("*"):
        if p.is_symlink():
            raise BundleIntegrityError(f"{p}: a symbolic link; a bundle holds its own files only")
        if p.is_file() and p.name != MANIFEST:
            names.append(p.relative_to(bundle).as_posix())
    return sorted(names)


def seal_bundle(
    bundle: Path,
    *,
    dataset_id: str = "",
    mlflow_run_id: str = "",
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write manifest.json listing the sha256 of every file now in the bundle directory."""
    bundle = Path(bundle)
    missing = [f for f in REQUIRED_FILES if not (bundle / f).is_file()]
    if missing:
        raise BundleIntegrityError(f"{bundle}: cannot seal, missing {missing}")
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "schema_version": BUNDLE_VERSION,
        "created": time.time(),
        "dataset_id": dataset_id,
        "mlflow_run_id": mlflow_run_id,
        "metrics": metrics or {},
        "files": {name: file_sha256(bundle / name) for name in _files(bundle)},
        **(extra or {}),
    }
    write_json_atomic(bundle / MANIFEST, manifest)
    return manifest


def bundle_identity(bundle: Path) -> str:
    """A bundle's identity: the sha256 of its manifest.json (which lists every file's sha256). MLflow model versions
    are tagged with it (`bundle_manifest_sha256`), rollouts record it, and the policy server checks it both ends."""
    return file_sha256(Path(bundle) / MANIFEST)


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = Path(bundle) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleIntegrityError(f"{path}: missing; not a policy bundle (or not sealed)") from None
    except json.JSONDecodeError as exc:
        raise BundleIntegrityError(f"{path}: expected JSON, got unreadable content ({exc})") from None
    if manifest.get("schema") != BUNDLE_SCHEMA or manifest.get("schema_version") != BUNDLE_VERSION:
        raise BundleIntegrityError(
            f"{path}: schema: expected {BUNDLE_SCHEMA!r} v{BUNDLE_VERSION}, "
            f"got {manifest.get('schema')!r} v{manifest.get('schema_version')!r}"
        )
    return manifest


def _verified_files(bundle: Path, keep: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read every listed file once, hash those bytes, and return them when `keep`: what a loader then parses is
    exactly what was verified (no second read that a swapped file could slip into)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    listed = manifest.get("files", {})
    if not isinstance(listed, dict):
        raise BundleIntegrityError(f"{bundle / MANIFEST}: files: expected a mapping of file name to sha256")
    for name in REQUIRED_FILES:
        if name not in listed:
            raise BundleIntegrityError(f"{bundle / MANIFEST}: files: expected an entry for {name}")
    present = set(_files(bundle))  # first: a link anywhere is refused before any byte is read through it
    contents: dict[str, bytes] = {}
    for name, want in listed.items():
        if not _inside(name):
            raise BundleIntegrityError(
                f"{bundle / MANIFEST}: files: {name!r}: expected a relative path inside the bundle"
            )
        path = bundle / name
        if path.is_symlink():
            raise BundleIntegrityError(f"{path}: a symbolic link; a bundle holds its own files only")
        if not path.is_file():
            raise BundleIntegrityError(f"{path}: listed in the manifest but missing")
        if keep:
            data = path.read_bytes()
            got = hashlib.sha256(data).hexdigest()
        else:
            data, got = b"", file_sha256(path)  # streamed: a copy or a pull never holds the weights in memory
        if got != want:
            raise BundleIntegrityError(f"{path}: sha256 mismatch: manifest says {want}, file has {got}")
        if keep:
            contents[name] = data
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleIntegrityError(f"{bundle}: files not in the manifest: {unlisted}")
    return manifest, contents


def verify_bundle(bundle: Path) -> dict[str, Any]:
    """Check every listed hash, and that no file is missing or unlisted. Returns the manifest."""
    return _verified_files(bundle, keep=False)[0]


def read_verified_bundle(bundle: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the bytes of every file, verified as read: load a policy from these bytes, not the disk."""
    return _verified_files(bundle, keep=True)


def _inside(name: str) -> bool:
    """A manifest entry names a file inside the bundle: relative, POSIX, no '..' (else it is hashed from outside)."""
    rel = PurePosixPath(name)
    return bool(name) and not rel.is_absolute() and ".." not in rel.parts and "\\" not in name


def existing_bundle(path: Path) -> dict[str, Any] | None:
    """What a bundle writer would replace at `path`: None when nothing (absent, or an empty directory), the manifest
    of a sealed bundle that verifies. Anything else raises: a writer never removes a file it did not write."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir():
        raise StoreError(f"{path}: exists and is not a directory; refusing to replace it (nothing was changed)")
    if not any(path.iterdir()):
        return None
    try:
        return verify_bundle(path)
    except BundleIntegrityError as exc:
        raise StoreError(
            f"{path}: not empty and not a verified policy bundle ({exc}); refusing to replace it (nothing was "
            "changed): choose a new or empty directory"
        ) from None


def copy_bundle(src: Path, dst: Path) -> dict[str, Any]:
    """Verify `src`, copy it to a temporary sibling of `dst`, verify the copy, then rename into place.

    `dst` must be absent, an empty directory or a verified bundle (see `existing_bundle`); on any failure (a hash,
    a full disk) `dst` is left as it was and nothing of the copy remains."""
    verify_bundle(src)
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if src in dst.parents:
        raise StoreError(f"{dst}: inside the bundle it would be copied from ({src}); choose another directory")
    replacing = existing_bundle(dst) is not None
    created = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        for name in [*_files(src), MANIFEST]:  # only what is inside `src`, whatever the manifest says
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, tmp / name)
        manifest = verify_bundle(tmp)
        if replacing or not dst.is_dir():
            replace_directory(tmp, dst)
        else:
            _move_into_empty(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:  # deepest first; only the empty directories this call made
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return manifest


def _move_into_empty(built: Path, dst: Path) -> None:
    """Move what `built` holds into the empty directory `dst`, which stays (a mount point, someone's working
    directory): the manifest last, so a reader never sees it before its files. On failure `dst` is empty again."""
    moved: list[str] = []
    try:
        for entry in sorted(built.iterdir(), key=lambda p: p.name == MANIFEST):
            os.rename(entry, dst / entry.name)
            moved.append(entry.name)
        built.rmdir()
    except BaseException:
        for name in moved:
            os.rename(dst / name, built / name)
        raise
