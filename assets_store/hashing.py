"""Content hashes of directories (episodes, bundles), atomic small-file writes and directory swaps."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def directory_sha256(path: Path, skip: tuple[str, ...] = ()) -> str:
    """Hash of every file's relative path and bytes, in sorted order: same content, same hash."""
    root = path if hasattr(path, "rglob") else Path(path)  # a local path or a UPath in an object store
    h = hashlib.sha256()
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.name not in skip),
                   key=lambda p: p.relative_to(root).parts)  # pathlib's own order, for a UPath as well
    for p in files:
        rel = "/".join(p.relative_to(root).parts)
        h.update(rel.encode() + b"\0")
        with p.open("rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; on success it replaces `path` in one rename, on any failure
    (a full disk, an exception) it is removed: `path` is the old file or the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))


def canonical_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def replace_directory(built: Path, dst: Path) -> None:
    """Put the fully built directory `built` (a sibling of `dst`) at `dst`: readers see the old or the new one,
    never a mix. An existing `dst` is moved aside first, then removed."""
    built, dst = Path(built), Path(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dst, old)
        try:
            os.rename(built, dst)
        except BaseException:
            os.rename(old, dst)  # the swap failed: the old directory goes back where it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(built, dst)
