"""Sessions: a directory of episodes plus, once recording ends, a marker that makes it immutable.

A finalized session is what its marker says: `session_entries` compares the marker's episode list with the
directory (and finds episodes that are files, or links out of the store), so readers report a tampered session
instead of trusting whatever the directory holds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upath import UPath

from assets_store.episode_reader import read_root_attrs
from assets_store.errors import StoreError
from assets_store.layout import FINALIZED_MARKER, StoreLayout, parse_episode_dirname
from assets_store.names import validate_name
from assets_store.schema import EpisodeHeader, parse_header


@dataclass
class EpisodeSummary:
    index: int
    name: str
    path: Path
    num_steps: int
    fps: float
    cameras: list[str]
    attrs: dict[str, Any] = field(repr=False)
    header: EpisodeHeader = field(repr=False)

    @classmethod
    def of(cls, path: Path) -> "EpisodeSummary":
        """From the episode's metadata alone; EpisodeError names the attribute that is not what the schema says."""
        attrs = read_root_attrs(path)
        header = parse_header(path, attrs)
        return cls(
            index=parse_episode_dirname(path.name) or 0, name=path.name, path=path, num_steps=header.num_steps,
            fps=float(header.info.fps), cameras=[c.name for c in header.info.cameras], attrs=attrs, header=header,
        )

    @property
    def duration_s(self) -> float:
        return self.num_steps / self.fps

    @property
    def dropped_frames(self) -> int:
        return self.header.count("dropped_frames")


def _children(directory: Path | UPath) -> list[tuple[str, Path | UPath, bool]]:
    """(name, path, is a directory) of each entry: local (one scandir) or in an object store (a `UPath` listing)."""
    if isinstance(directory, UPath):
        return [(p.name, p, p.is_dir()) for p in directory.iterdir()]
    with os.scandir(directory) as entries:
        return [(e.name, Path(e.path), e.is_dir()) for e in entries]


def _as_path(path: str | os.PathLike | UPath) -> Path | UPath:
    return path if isinstance(path, UPath) else Path(path)


def episode_dirs(session_dir: Path | UPath) -> list[tuple[int, Path | UPath]]:
    if not session_dir.is_dir():
        return []
    out = []
    for name, path, is_dir in _children(session_dir):
        index = parse_episode_dirname(name)
        if index is not None and is_dir:
            out.append((index, path))
    return sorted(out, key=lambda item: item[0])


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
        """Every committed episode; raises EpisodeError at the first malformed one (`session_entries` reports all)."""
        return [EpisodeSummary.of(path) for _, path in episode_dirs(self.dir)]

    @property
    def finalized(self) -> bool:
        return is_session_finalized(self.dir)


def _raw_dirs(layout: StoreLayout) -> list[str]:
    if not layout.raw_dir.is_dir():
        return []
    return sorted(name for name, _, is_dir in _children(layout.raw_dir) if is_dir and not name.startswith("."))


def _invalid_name(name: str) -> str:
    try:
        validate_name(name, "session name")
        return ""
    except StoreError as exc:
        return str(exc)


def list_sessions(layout: StoreLayout) -> list[str]:
    """The sessions under raw/: directories with a valid session name (`foreign_session_dirs` lists the others)."""
    return [name for name in _raw_dirs(layout) if not _invalid_name(name)]


def foreign_session_dirs(layout: StoreLayout) -> list[tuple[Path, str]]:
    """(directory, why) of every directory under raw/ that cannot be a session: reported by readers, never read."""
    return [(layout.raw_dir / name, why) for name in _raw_dirs(layout) if (why := _invalid_name(name))]


def is_session_finalized(session_dir: Path | UPath) -> bool:
    return (_as_path(session_dir) / FINALIZED_MARKER).is_file()


def finalize_session(layout: StoreLayout, session: str, info: dict[str, Any] | None = None) -> Path:
    """Mark a session complete: the pipeline's sensor picks it up, and no writer may add to it afterwards."""
    sdir = layout.session_dir(session)
    if not sdir.is_dir():
        raise StoreError(f"{sdir}: no such session")
    marker = sdir / FINALIZED_MARKER
    if marker.exists():
        return marker
    episodes = [p.name for _, p in episode_dirs(sdir)]
    body = {"session": session, **(info or {}), "finalized_at": time.time(), "episodes": episodes}
    tmp = sdir / f".{FINALIZED_MARKER}.tmp"
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, marker)
    return marker


def read_finalized_marker(session_dir: Path | UPath) -> dict[str, Any] | None:
    """The marker's content, None when the session is not finalized; StoreError when it is unreadable."""
    marker = _as_path(session_dir) / FINALIZED_MARKER
    if not marker.is_file():
        return None
    try:
        body = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{marker}: expected the JSON the recorder wrote, got unreadable content ({exc})") from None
    episodes = body.get("episodes") if isinstance(body, dict) else None
    if not isinstance(episodes, list) or not all(
        isinstance(e, str) and parse_episode_dirname(e) is not None for e in episodes
    ):
        raise StoreError(f"{marker}: episodes: expected a list of episode directory names, got {episodes!r:.200}")
    return body


# ---------------------------------------------------------------------------------------------- what a session holds
@dataclass(frozen=True)
class SessionEntry:
    """One episode of a session, as its directory and finalized marker show it. `problem` says why it cannot be
    read as one of the session's episodes; `note` says how its membership was established."""

    name: str  # episode_000003.zarr
    path: Path
    problem: str = ""
    note: str = ""


def session_entries(layout: StoreLayout, session: str, *, deep: bool = True) -> list[SessionEntry]:
    """Every episode the session's directory or its finalized marker names, each checked against the other.

    A finalized session's episodes are exactly those its marker lists: one listed but missing, one added later, and a
    file where a directory should be are problems. So is a symbolic link that leads out of the store, for the episode
    directory or (with `deep`, which walks every file) anything inside it (an object store has no links). StoreError
    for a session-level problem (unreadable marker, session directory outside the store).
    """
    sdir = layout.session_dir(session)
    root = layout.root
    local = not isinstance(sdir, UPath)
    if local and not _inside(sdir, root):
        raise StoreError(f"{sdir}: expected a session directory inside the store, it leads to {os.path.realpath(sdir)}")
    marker = read_finalized_marker(sdir)
    listed = set(marker["episodes"]) if marker is not None else None
    on_disk = set()
    if sdir.is_dir():
        on_disk = {name for name, _, _ in _children(sdir) if parse_episode_dirname(name) is not None}
    out = []
    for name in sorted(on_disk | (listed or set()), key=lambda n: parse_episode_dirname(n)):
        path = sdir / name
        problem = ""
        if name not in on_disk:
            problem = f"listed in {FINALIZED_MARKER} but missing from the session"
        elif local and path.is_symlink() and not _inside(path, root):
            problem = f"a symbolic link to {os.path.realpath(path)}, outside the store"
        elif not path.is_dir():
            problem = "expected an episode directory, found a file" if path.is_file() else "expected an episode directory"
        elif listed is not None and name not in listed:
            problem = f"not listed in {FINALIZED_MARKER}: added after the session was finalized"
        elif deep and local:
            problem = _link_out_of(path, root)
        note = f"listed in {FINALIZED_MARKER}" if listed is not None else "session not finalized yet"
        out.append(SessionEntry(name, path, problem, "" if problem else note))
    return out


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


def _link_out_of(episode: Path, root: Path) -> str:
    """The first symbolic link inside `episode` that leads out of the store, as a problem; "" when there is none."""
    stack = [episode]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_symlink():
                    if not _inside(Path(e.path), root):
                        rel = Path(e.path).relative_to(episode)
                        return f"{rel} is a symbolic link to {os.path.realpath(e.path)}, outside the store"
                elif e.is_dir():
                    stack.append(Path(e.path))
    return ""
