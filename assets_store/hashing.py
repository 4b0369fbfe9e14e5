"""Content hashes of directories (episodes, bundles), atomic small-file writes and directory swaps."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def directory_sha256(path: Path, skip: tuple[str, ...] = ()) -> str:
    """Hash of every file's relative path and bytes, in sorted order: same content, same hash."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip)
    for p in files:
        rel = p.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def write_json_atomic(path: Path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def canonical_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def replace_directory(built: Path, dst: Path) -> None:
    """Put the fully built directory `built` (a sibling of `dst`) at `dst`: readers see the old or the new one,
    never a mix. An existing `dst` is moved aside first, then removed."""
    built, dst = Path(built), Path(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dst, old)
        os.rename(built, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(built, dst)
