"""Policy bundles: a directory of safetensors + JSON with a manifest of sha256 hashes. No pickle anywhere.

    model.safetensors   weights
    config.json         architecture, camera names, joint names, fps, chunk size
    stats.json          normalization statistics
    manifest.json       sha256 of every other file, dataset id, MLflow run id, metrics
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from assets_store.errors import BundleIntegrityError
from assets_store.hashing import file_sha256, replace_directory, write_json_atomic

BUNDLE_SCHEMA = "aloha-policy-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_FILES = ("model.safetensors", "config.json", "stats.json")


def _files(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST)


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


def verify_bundle(bundle: Path) -> dict[str, Any]:
    """Check every listed hash, and that no file is missing or unlisted. Returns the manifest."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    listed = manifest.get("files", {})
    for name in REQUIRED_FILES:
        if name not in listed:
            raise BundleIntegrityError(f"{bundle / MANIFEST}: files: expected an entry for {name}")
    for name, want in listed.items():
        path = bundle / name
        if not path.is_file():
            raise BundleIntegrityError(f"{path}: listed in the manifest but missing")
        got = file_sha256(path)
        if got != want:
            raise BundleIntegrityError(f"{path}: sha256 mismatch: manifest says {want}, file has {got}")
    unlisted = sorted(set(_files(bundle)) - set(listed))
    if unlisted:
        raise BundleIntegrityError(f"{bundle}: files not in the manifest: {unlisted}")
    return manifest


def copy_bundle(src: Path, dst: Path) -> dict[str, Any]:
    """Verify `src`, copy it to a temporary sibling of `dst`, verify the copy, then rename into place."""
    verify_bundle(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    shutil.copytree(src, tmp)
    try:
        manifest = verify_bundle(tmp)
        replace_directory(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
