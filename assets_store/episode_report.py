"""Every check run on one episode of a session: the report the pipeline caches and quarantines by, and that
`aloha episodes check` prints.

A report never raises for what is wrong with the episode: each failure (unreadable attributes or files, a damaged
array, a file or a foreign link where an episode should be) is an answer of one check, naming the episode and the
field, and the episode's partial statistics come only with a clean bill.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assets_store import schema as S
from assets_store.checks import CHECKS, EPISODE_CHECKS, CheckResult, CheckSettings, dropped_frame_count
from assets_store.dataset import episode_content_hash
from assets_store.episode_reader import EpisodeArrays
from assets_store.errors import EpisodeError
from assets_store.sessions import SessionEntry
from assets_store.stats import episode_partial_stats


@dataclass
class EpisodeReport:
    session: str
    episode: str
    path: str
    content_hash: str
    settings_key: str
    num_steps: int = 0
    duration_s: float = 0.0
    fps: float = 0.0
    robot: str = ""
    joint_names: list[str] = field(default_factory=list)
    action_names: list[str] = field(default_factory=list)
    camera_names: list[str] = field(default_factory=list)
    dropped_frames: int = 0
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    partial_stats: dict[str, dict] | None = None  # only for episodes that passed every check
    checked_at: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks.values()) and len(self.checks) == len(CHECKS)

    @property
    def reasons(self) -> list[str]:
        return [f"{name}: {c['detail']}" for name, c in self.checks.items() if not c["passed"]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EpisodeReport":
        return cls(**d)

    def _set(self, name: str, outcome: CheckResult) -> None:
        self.checks[name] = asdict(outcome)

    def _fail(self, names: tuple[str, ...], reason: str) -> None:
        for name in names:
            self._set(name, CheckResult(False, reason))


def check_entry(
    session: str, entry: SessionEntry, settings: CheckSettings, content_hash: str | None = None
) -> EpisodeReport:
    """Every check on one entry of a session (see `sessions.session_entries`); never raises for the episode's content."""
    report = EpisodeReport(
        session=session, episode=entry.name, path=str(entry.path), content_hash="", settings_key=settings.key()
    )
    if entry.problem:  # not an episode to open: nothing of it is read
        report._set("in_session", CheckResult(False, f"{entry.path}: {entry.problem}"))
        report._fail(CHECKS[1:], "skipped: in_session failed")
        return report
    report._set("in_session", CheckResult(True, entry.note))
    # Unreadable files or group metadata fail every other check for the same reason.
    try:
        report.content_hash = content_hash or episode_content_hash(entry.path)
    except OSError as exc:
        report._fail(CHECKS[1:], str(EpisodeError(entry.path, _relative(exc.filename, entry.path),
                                                  f"cannot read it to hash the episode ({exc.strerror or exc})")))
        return report
    try:
        ep = EpisodeArrays(entry.path)
    except Exception as exc:
        report._fail(CHECKS[1:], str(exc) if isinstance(exc, EpisodeError) else f"{entry.path}: cannot open episode: {exc}")
        return report
    _describe(report, ep)
    schema_ok = True
    for name, check in EPISODE_CHECKS.items():
        if not schema_ok and name != "frames_decodable":
            report._set(name, CheckResult(False, "skipped: schema check failed"))
            continue
        outcome = check(ep, settings)
        report._set(name, outcome)
        if name == "schema":
            schema_ok = outcome.passed
    try:
        report.dropped_frames = dropped_frame_count(ep)
    except Exception:
        pass  # the dropped_frames check has said why
    if report.passed:
        parts = episode_partial_stats(ep.read(S.QPOS), ep.read(S.ACTION))
        report.partial_stats = {k: v.to_dict() for k, v in parts.items()}
    return report


def _relative(filename: str | None, episode: Path) -> str:
    """The file an OSError names, relative to its episode where it lies inside it."""
    if not filename:
        return "files"
    if not isinstance(episode, Path):  # an episode in an object store: the filesystem's key names the file
        return str(filename)
    path = Path(filename)
    return str(path.relative_to(episode)) if path.is_relative_to(episode) else str(path)


def _describe(report: EpisodeReport, ep: EpisodeArrays) -> None:
    """Fill in what the header says; a header that does not parse leaves the defaults (the schema check says why)."""
    try:
        header = ep.header
    except EpisodeError:
        return
    info = header.info
    report.num_steps = header.num_steps
    report.fps = float(info.fps)
    report.duration_s = header.num_steps / report.fps
    report.robot = str(info.robot)
    report.joint_names = list(info.joint_names)
    report.action_names = list(info.action_names or info.joint_names)
    report.camera_names = [c.name for c in info.cameras]
