"""Fetch a policy bundle from <store>/deploy or from the MLflow registry, verifying every sha256 on the way."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from assets_store.bundle import MANIFEST, bundle_identity, copy_bundle, existing_bundle, verify_bundle
from assets_store.errors import BundleIntegrityError, StoreError
from assets_store.hashing import file_sha256
from assets_store.layout import CHAMPION, DEFAULT_MODEL_NAME, StoreLayout
from assets_store.remote import RemoteStore
from pipeline.promotion import Decision, Scores, promotion_record


def deploy_source(layout: StoreLayout, name: str, version: str) -> Path:
    path = layout.deploy_path(name, version)
    if not path.is_dir():
        have = sorted(p.name for p in path.parent.glob("*") if p.is_dir() and not p.name.startswith("."))
        raise StoreError(
            f"{path}: no deployed bundle {name!r} {version}"
            + (f"; deployed: {have}" if have else "; nothing is deployed yet (run the pipeline, or `aloha demo`)")
        )
    return path


def download_deployed(remote: RemoteStore, name: str, version: str, into: Path) -> tuple[Path, dict[str, Any] | None]:
    """Download the deployed bundle and its promotion record from an object store into the local directory `into`
    (checked by the caller with `verify_bundle`: the manifest's hashes decide, not the transfer)."""
    remote.refresh()
    key = remote.deploy_key(name, version)
    files = remote.files(key)
    if not files:
        deployed = remote.files(str(PurePosixPath(key).parent))
        have = sorted({rel.split("/")[0] for rel in deployed if "/" in rel and not rel.startswith(".")})
        raise StoreError(
            f"{remote.url_of(key)}: no deployed bundle {name!r} {version}"
            + (f"; deployed: {have}" if have else "; nothing is deployed in this store")
        )
    local = into / "bundle"
    for rel in files:
        if rel.startswith(".") or ".." in PurePosixPath(rel).parts:
            continue
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        remote.fs.get_file(f"{key}/{rel}", str(local / rel))
    record_key = remote.promotion_record_key(name, version)
    record = None
    if remote.fs.exists(record_key):
        remote.fs.get_file(record_key, str(into / "promotion.json"))
        record = read_promotion_record(into / "promotion.json")
    return local, record


def check_destination(dest: Path, *, force: bool) -> None:
    """`dest` may receive a bundle: new, empty, or (with `force`) a bundle pulled before. Anything else is refused
    before a byte moves: pull never removes a file it did not write."""
    held = existing_bundle(dest)
    if held is not None and not force:
        raise StoreError(
            f"{dest}: already holds a policy bundle (dataset {held.get('dataset_id') or '?'}, MLflow run "
            f"{held.get('mlflow_run_id') or '?'}); pass --force to replace it"
        )


def pull_bundle(
    layout: StoreLayout | RemoteStore,
    dest: Path,
    *,
    name: str = DEFAULT_MODEL_NAME,
    version: str = CHAMPION,
    source: str = "deploy",
    tracking_uri: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Copy the bundle to `dest` (new, empty, or an earlier bundle with `force`; replaced atomically) and return its
    verified manifest. Raises StoreError on any mismatch or refusal; a failed write (OSError) leaves `dest` as it was."""
    dest = Path(dest).resolve()
    if source not in ("deploy", "mlflow"):
        raise ValueError(f"unknown source {source!r}; expected 'deploy' or 'mlflow'")
    check_destination(dest, force=force)
    if isinstance(layout, RemoteStore):
        if source != "deploy":
            raise StoreError(f"{layout.url}: an object-store root serves --from deploy; for mlflow give --tracking-uri "
                             "with a local --store")
        with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest.parent if dest.parent.exists() else None) as tmp:
            local, record = download_deployed(layout, name, version, Path(tmp))
            manifest = copy_bundle(local, dest)  # verifies every sha256 of the download, then of the copy
        return {**manifest, **record_of(record, dest, layout.url_of(layout.promotion_record_key(name, version)))}
    if source == "deploy":
        # The record names its bundle's manifest: whichever of the two a promotion replaced meanwhile, they differ.
        record_path = layout.promotion_record_path(name, version)
        record = read_promotion_record(record_path)
        manifest = copy_bundle(deploy_source(layout, name, version), dest)
        return {**manifest, **record_of(record, dest, str(record_path))}

    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri is None and not layout.mlflow_db.is_file():  # reading must never create an empty registry
        raise StoreError(f"{layout.mlflow_db}: no MLflow registry in store {layout.root} (nothing was trained there; "
                         f"give --store, or --tracking-uri)")
    uri = tracking_uri or layout.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION) if version == CHAMPION else client.get_model_version(
            name, str(int(version))
        )
    except MlflowException as exc:
        raise StoreError(f"MLflow registry at {uri}: no model version {name!r} {version}: {exc.message}") from None
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest.parent if dest.parent.exists() else None) as tmp:
        try:
            local = Path(download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=uri))
        except MlflowException as exc:
            raise StoreError(f"{mv.source}: could not download v{mv.version}: {exc.message}") from None
        manifest = verify_bundle(local)
        expected = (mv.tags or {}).get("bundle_manifest_sha256")
        got = file_sha256(local / MANIFEST)
        if expected and got != expected:
            raise BundleIntegrityError(
                f"{mv.source}: manifest.json sha256 {got} differs from the one registered for v{mv.version} ({expected})"
            )
        copy_bundle(local, dest)
    tags = mv.tags or {}
    promotion = None
    if tags.get("promotion") == "promoted":
        decision = Decision(True, tags.get("promotion_reason", "?"), tags.get("promotion_rule", ""))
        promotion = promotion_record(mv.version, Scores.from_tags(tags), decision)
    return {**manifest, "registered_version": mv.version, "promotion": promotion}


def record_of(record: dict[str, Any] | None, bundle: Path, where: str) -> dict[str, Any]:
    """`promotion` (the record, when it describes the bundle pulled to `bundle`) and, when it describes another
    bundle (a promotion landed during the pull, or a record left from an earlier one), `promotion_mismatch` saying so.
    Records written before they named their bundle are taken as they are."""
    expected = (record or {}).get("bundle_manifest_sha256")
    if record is None or not expected:
        return {"promotion": record}
    got = bundle_identity(bundle)
    if got == expected:
        return {"promotion": record}
    return {"promotion": None, "promotion_mismatch": (
        f"{where}: the promotion record is for another bundle (manifest sha256 {str(expected)[:12]}…, pulled "
        f"{got[:12]}…, v{record.get('version', '?')} in the record); a promotion may have landed during the pull: "
        "pull again to get the newest bundle with its record")}


def read_promotion_record(path: Path) -> dict[str, Any] | None:
    """The promotion record beside a deployed bundle; None for bundles deployed before records were written."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable promotion record ({exc})") from None
    return record if isinstance(record, dict) else None
