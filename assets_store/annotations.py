"""Session annotations: an append-only log of curation after recording (labels, exclusions), one JSON object a line.

The log sits beside the session (`StoreLayout.annotations_path`), so episodes and finalized sessions are never
touched. Lines are only ever appended (one write under an exclusive lock, then fsync), never rewritten; the last
line about an episode wins. A line that cannot be read is reported by file and line number and the rest still apply.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets_store.errors import StoreError
from assets_store.layout import StoreLayout, episode_dirname, parse_episode_dirname

LABELS = ("success", "failure")
ACTIONS = ("label", "exclude", "include")
MAX_REASON_CHARS = 1000
MAX_LOG_BYTES = 64 << 20  # ~300k lines: far beyond any lab's curation, checked before the log is read


@dataclass(frozen=True)
class Annotation:
    """One line of the log: `who` did `action` to `episode` (its directory name) at `at` (Unix seconds)."""

    episode: str
    action: str
    by: str
    at: float
    label: str | None = None  # action "label"
    reason: str | None = None  # action "exclude"

    def __post_init__(self):
        problem = _problem(self)
        if problem:
            raise StoreError(problem)

    def to_json(self) -> dict[str, Any]:
        body = {"episode": self.episode, "action": self.action, "by": self.by, "at": self.at}
        if self.label is not None:
            body["label"] = self.label
        if self.reason is not None:
            body["reason"] = self.reason
        return body


def _problem(a: Annotation) -> str:
    """What is wrong with an annotation, '' when nothing: the field and what was expected."""
    if not isinstance(a.episode, str) or parse_episode_dirname(a.episode) is None:
        return f"episode: expected an episode directory name like {episode_dirname(0)}, got {a.episode!r}"
    if a.action not in ACTIONS:
        return f"action: expected one of {', '.join(ACTIONS)}, got {a.action!r}"
    if not isinstance(a.by, str) or not a.by.strip():
        return f"by: expected who annotated (a non-empty string), got {a.by!r}"
    if isinstance(a.at, bool) or not isinstance(a.at, (int, float)):
        return f"at: expected Unix seconds, got {a.at!r}"
    if a.action == "label" and a.label not in LABELS:
        return f"label: expected one of {', '.join(LABELS)}, got {a.label!r}"
    if a.action == "exclude":
        if not isinstance(a.reason, str) or not a.reason.strip():
            return f"reason: expected why the episode is excluded (non-empty text), got {a.reason!r}"
        if len(a.reason) > MAX_REASON_CHARS:
            return f"reason: expected at most {MAX_REASON_CHARS} characters, got {len(a.reason)}"
    return ""


def annotate(layout: StoreLayout, session: str, episode_index: int, action: str, *, by: str,
             label: str | None = None, reason: str | None = None) -> Annotation:
    """Check and append one annotation to the session's log; StoreError for bad input (nothing is written)."""
    entry = Annotation(episode=episode_dirname(episode_index), action=action, by=by, at=time.time(),
                       label=label, reason=reason.strip() if isinstance(reason, str) else reason)
    append(layout.annotations_path(session), entry)
    return entry


def append(path: Path, entry: Annotation) -> None:
    """One line, one write, under an exclusive lock (concurrent writers never interleave), fsync'd before return."""
    line = (json.dumps(entry.to_json(), sort_keys=True, ensure_ascii=True) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A writer that crashed mid-line left no newline: start on a fresh line so this entry stays readable.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class EpisodeCuration:
    """What the log says about one episode now: its label and, when excluded, why."""

    label: str | None = None
    excluded: str | None = None

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("label", self.label), ("excluded", self.excluded)) if v is not None}


@dataclass
class SessionAnnotations:
    """A session's log, read: the current state of each annotated episode, and the lines that could not be read."""

    path: Path
    episodes: dict[str, EpisodeCuration] = field(default_factory=dict)  # by episode directory name
    problems: list[str] = field(default_factory=list)  # "<file>:<line>: <field>: <what was expected>"

    def of(self, episode: str) -> EpisodeCuration:
        return self.episodes.get(episode, EpisodeCuration())


def read_annotations(layout: StoreLayout, session: str) -> SessionAnnotations:
    """Replay the log in order; no log is no annotations. Only an unreadable file raises (StoreError)."""
    path = layout.annotations_path(session)
    out = SessionAnnotations(path)
    try:
        size = path.stat().st_size
        if size > MAX_LOG_BYTES:
            raise StoreError(f"{path}: annotation log of {size} bytes, expected at most {MAX_LOG_BYTES}")
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the annotation log ({exc.strerror or exc})") from None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise StoreError(f"expected a JSON object, got {type(body).__name__}")
            unknown = set(body) - {"episode", "action", "by", "at", "label", "reason"}
            if unknown:
                raise StoreError(f"{sorted(unknown)[0]}: unknown field")
            missing = [k for k in ("episode", "action", "by", "at") if k not in body]
            if missing:
                raise StoreError(f"{missing[0]}: missing")
            entry = Annotation(**body)
        except (ValueError, StoreError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            out.problems.append(f"{path}:{number}: {exc}")
            continue
        now = out.of(entry.episode)
        if entry.action == "label":
            now = EpisodeCuration(entry.label, now.excluded)
        elif entry.action == "exclude":
            now = EpisodeCuration(now.label, entry.reason)
        else:
            now = EpisodeCuration(now.label, None)
        out.episodes[entry.episode] = now
    return out
