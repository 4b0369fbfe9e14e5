"""Sessions: a directory of episodes plus, once recording ends, a marker that makes it immutable."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets_store.episode_reader import check_schema, read_root_attrs
from assets_store.errors import StoreError
from assets_store.layout import FINALIZED_MARKER, StoreLayout, parse_episode_dirname


@dataclass
class EpisodeSummary:
    index: int
    name: str
    path: Path
    num_steps: int
    fps: float
    cameras: list[str]
    attrs: dict[str, Any] = field(repr=False)

    @property
    def duration_s(self) -> float:
        return self.num_steps / self.fps if self.fps else 0.0

    @property
    def dropped_frames(self) -> int:
        return int((self.attrs.get("counters") or {}).get("dropped_frames", 0) or 0)


def episode_dirs(session_dir: Path) -> list[tuple[int, Path]]:
    if not session_dir.is_dir():
        return []
    out = []
    for entry in os.scandir(session_dir):
        index = parse_episode_dirname(entry.name)
        if index is not None and entry.is_dir():
            out.append((index, Path(entry.path)))
    return sorted(out)


def next_episode_index(session_dir: Path) -> int:
    """One past the highest committed or in-progress index: resuming a session never reuses a number."""
    highest = -1
    if session_dir.is_dir():
        for entry in os.scandir(session_dir):
            index = parse_episode_dirname(entry.name, in_progress=True)
            if index is not None:
                highest = max(highest, index)
    return highest + 1


class SessionIndex:
    """A session's episodes with lengths and attributes, read from metadata only (no frame decoding)."""

    def __init__(self, layout: StoreLayout, session: str):
        self.layout = layout
        self.session = session
        self.dir = layout.session_dir(session)

    def episodes(self) -> list[EpisodeSummary]:
        out = []
        for index, path in episode_dirs(self.dir):
            attrs = read_root_attrs(path)
            check_schema(path, attrs)
            out.append(
                EpisodeSummary(
                    index=index,
                    name=path.name,
                    path=path,
                    num_steps=int(attrs.get("num_steps", 0)),
                    fps=float(attrs.get("fps", 0.0)),
                    cameras=[c["name"] for c in attrs.get("cameras", [])],
                    attrs=attrs,
                )
            )
        return out

    @property
    def finalized(self) -> bool:
        return is_session_finalized(self.dir)


def list_sessions(layout: StoreLayout) -> list[str]:
    if not layout.raw_dir.is_dir():
        return []
    return sorted(e.name for e in os.scandir(layout.raw_dir) if e.is_dir() and not e.name.startswith("."))


def is_session_finalized(session_dir: Path) -> bool:
    return (Path(session_dir) / FINALIZED_MARKER).is_file()


def finalize_session(layout: StoreLayout, session: str, info: dict[str, Any] | None = None) -> Path:
    """Mark a session complete: the pipeline's sensor picks it up, and no writer may add to it afterwards."""
    sdir = layout.session_dir(session)
    if not sdir.is_dir():
        raise StoreError(f"{sdir}: no such session")
    marker = sdir / FINALIZED_MARKER
    if marker.exists():
        return marker
    episodes = [p.name for _, p in episode_dirs(sdir)]
    body = {"session": session, "finalized_at": time.time(), "episodes": episodes, **(info or {})}
    tmp = sdir / f".{FINALIZED_MARKER}.tmp"
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, marker)
    return marker


def read_finalized_marker(session_dir: Path) -> dict[str, Any] | None:
    marker = Path(session_dir) / FINALIZED_MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text())
