"""A store root on object storage (`s3://`, `gs://`, `az://`, `memory://`, ...), reached through fsspec.

Sub-paths are the ones `StoreLayout` makes: a remote store holds the same tree as a local one, under a URL.
`file://` roots are local paths (`StoreLayout`); the others need their fsspec package (`s3fs`, `gcsfs`, `adlfs`).
Credentials and endpoints come from the filesystem's usual configuration (for S3: the `AWS_*` variables,
`AWS_ENDPOINT_URL` for an S3-compatible server, or an instance role).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

import fsspec

from assets_store.errors import StoreError
from assets_store.layout import (
    FINALIZED_MARKER, LOCAL_SCHEMES, StoreLayout, is_remote_root, store_root_url, url_scheme,
)

# The layout's sub-paths, relative: every path of a layout rooted at "/" minus the leading slash.
_RELATIVE = StoreLayout(Path("/"))
_BLOCK = 1 << 20


def relative_key(path: Path) -> str:
    """A path of `_RELATIVE` (a layout rooted at "/") as a key below a remote root: raw/<session>, deploy/..."""
    return PurePosixPath(path).relative_to("/").as_posix()


@dataclass(frozen=True)
class RemoteStore:
    """The store at `url`. `key(...)` names objects inside the filesystem; `url_of` is the URL a user sees."""

    url: str
    fs: Any  # fsspec.AbstractFileSystem
    root: str

    @classmethod
    def at(cls, url: str, **storage_options) -> "RemoteStore":
        if url_scheme(url) in LOCAL_SCHEMES:  # object stores have no directories to make; a local tree does
            storage_options.setdefault("auto_mkdir", True)
        try:
            fs, root = fsspec.core.url_to_fs(url.rstrip("/"), **storage_options)
        except (ImportError, ValueError) as exc:
            raise StoreError(
                f"{url}: cannot open this store root ({exc}); install the filesystem package for "
                f"{url_scheme(url)}:// (s3fs, gcsfs or adlfs)"
            ) from None
        return cls(url=url.rstrip("/"), fs=fs, root=root.rstrip("/"))

    # ------------------------------------------------------------------ names
    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def url_of(self, key: str) -> str:
        return self.fs.unstrip_protocol(key)

    def session_key(self, session: str) -> str:
        return self.key(relative_key(_RELATIVE.session_dir(session)))

    def annotations_key(self, session: str) -> str:
        return self.key(relative_key(_RELATIVE.annotations_path(session)))

    def dataset_key(self, dataset_id: str) -> str:
        return self.key(relative_key(_RELATIVE.dataset_dir(dataset_id)))

    def deploy_key(self, model_name: str, version: str | int) -> str:
        return self.key(relative_key(_RELATIVE.deploy_path(model_name, version)))

    def promotion_record_key(self, model_name: str, version: str | int) -> str:
        return self.key(relative_key(_RELATIVE.promotion_record_path(model_name, version)))

    def episode_url(self, session: str, episode: str) -> str:
        """The URL `EpisodeReader` opens for `episode` (a directory name such as episode_000003.zarr) of `session`."""
        return self.url_of(f"{self.session_key(session)}/{episode}")

    def is_session_finalized(self, session: str) -> bool:
        return self.fs.exists(f"{self.session_key(session)}/{FINALIZED_MARKER}")

    # ------------------------------------------------------------------ objects
    def refresh(self) -> None:
        """Forget cached listings: another process may have written since."""
        self.fs.invalidate_cache()

    def files(self, prefix: str) -> dict[str, int]:
        """{path relative to `prefix`: size} of every object below `prefix` (empty when there is none)."""
        try:
            found = self.fs.find(prefix, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for key, info in found.items():
            rel = PurePosixPath(key).relative_to(prefix).as_posix()
            if info.get("type", "file") == "file" and rel != ".":  # "." : `prefix` is itself an object
                out[rel] = int(info.get("size") or 0)
        return out

    def sha256(self, key: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(key, "rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
        return h.hexdigest()

    def sha256_many(self, keys: list[str], batch_bytes: int = 64 << 20, sizes: dict[str, int] | None = None
                    ) -> Iterator[tuple[str, str]]:
        """(key, sha256) of each key, fetched concurrently in batches of about `batch_bytes` (small chunk files)."""
        for batch in _batches(keys, sizes or {}, batch_bytes):
            if len(batch) == 1:
                yield batch[0], self.sha256(batch[0])
                continue
            for key, data in self.fs.cat(batch).items():
                yield key, hashlib.sha256(data).hexdigest()


def _batches(keys: list[str], sizes: dict[str, int], batch_bytes: int, max_files: int = 256) -> Iterable[list[str]]:
    batch: list[str] = []
    total = 0
    for key in keys:
        size = sizes.get(key, 0)
        if batch and (total + size > batch_bytes or len(batch) >= max_files):
            yield batch
            batch, total = [], 0
        batch.append(key)
        total += size
    if batch:
        yield batch


# The errors an fsspec backend raises for a network or credential failure that are not OSError (s3fs passes
# botocore's EndpointConnectionError and NoCredentialsError through; gcsfs aiohttp's and google-auth's).
_BACKEND_ERRORS = (("botocore.exceptions", "BotoCoreError"), ("aiohttp", "ClientError"),
                   ("google.auth.exceptions", "GoogleAuthError"))


def remote_errors() -> tuple[type[BaseException], ...]:
    """The exception types of the installed fsspec backends that mean "the object store could not be reached"
    (network, endpoint, credentials), besides OSError; for `except remote_errors() as exc:` in a verb."""
    found = []
    for module, name in _BACKEND_ERRORS:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:  # that backend is not installed: it raises nothing
            continue
    return tuple(found)


def unreachable_text(url: str, exc: BaseException) -> str:
    """The one line a verb prints when `url` could not be reached (see `remote_errors`)."""
    return f"cannot reach {url}: {exc or type(exc).__name__}"


def path_or_url(location: str | os.PathLike) -> Path | str:
    """A local path as a `Path`; an object-store URL kept a string (`Path` would fold `s3://b/x` into `s3:/b/x`)."""
    text = str(location)
    return text.rstrip("/") if is_remote_root(text) else Path(location)


def open_store(explicit: str | os.PathLike | None = None) -> StoreLayout | RemoteStore:
    """The store a verb that reads from either kind works on: a RemoteStore for an object-store URL, else the
    local layout (`file://` URLs included)."""
    url = store_root_url(explicit)
    return RemoteStore.at(url) if url else StoreLayout.at(explicit)
