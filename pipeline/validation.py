"""Per-episode quality checks, independent of Dagster so they are cheap to test and to reuse.

Each check answers one question about one episode and says why when the answer is no. The structural ones (schema,
lengths) are the store's own (`assets_store.checks`); the rest is this pipeline's policy: rates, joint limits, how
many dropped frames are too many, and what fails an episode into quarantine. The result, together with the
episode's partial normalization statistics, is cached next to the store keyed by the episode's content hash and
the check settings: an unchanged episode is never read twice.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from assets_store import checks
from assets_store import schema as S
from assets_store.checks import CheckResult
from assets_store.dataset import episode_content_hash
from assets_store.episode_reader import EpisodeArrays, EpisodeReader
from assets_store.errors import EpisodeError, StoreError
from assets_store.hashing import canonical_hash, write_json_atomic
from assets_store.stats import episode_partial_stats

REPORT_VERSION = 1

# Check names, in the order they run; also the Dagster asset check names.
CHECKS = (
    "recording_completed",
    "demonstration_succeeded",
    "schema",
    "lengths_agree",
    "finite_values",
    "timestamps",
    "joint_limits",
    "dropped_frames",
    "frames_decodable",
)
CHECK_DESCRIPTIONS = {
    "recording_completed": "the recorder finished the episode (not cut short by a robot fault and marked failed)",
    "demonstration_succeeded": "a demonstration that failed its task (outcome.success false) is not trained on "
                               "unless keep_failed_demos",
    "schema": "schema name/version known; required arrays present with the declared dtypes and widths",
    "lengths_agree": "every array has one row per recorded step",
    "finite_values": "no NaN/Inf in joints, actions, velocities, efforts or timestamps",
    "timestamps": "strictly increasing, at the declared rate (median period and late-step share within tolerance)",
    "joint_limits": "follower joints stay within the arm's limits (grippers within [0, 1] plus margin)",
    "dropped_frames": "camera frame drops stay under the allowed share of frames",
    "frames_decodable": "every stored camera frame decodes to the declared resolution",
}

# ViperX 300 (ALOHA follower) limits in radians by joint-name suffix; grippers are normalized to [0, 1].
ARM_LIMITS = {
    "waist": (-math.pi, math.pi),
    "shoulder": (-1.85, 1.26),
    "elbow": (-1.76, 1.61),
    "forearm_roll": (-math.pi, math.pi),
    "wrist_angle": (-1.87, 2.23),
    "wrist_rotate": (-math.pi, math.pi),
    "gripper": (0.0, 1.0),
}


@dataclass(frozen=True)
class CheckSettings:
    rate_tolerance: float = 0.2  # median period within +-20% of 1/fps
    max_late_ratio: float = 0.1  # share of steps taking more than 1.5 periods
    joint_margin: float = 0.1  # rad (or normalized gripper units) beyond the limit still accepted
    max_dropped_ratio: float = 0.05
    decode_stride: int = 1  # decode every n-th frame (1 = all)
    keep_failed_demos: bool = False  # train on demonstrations whose outcome says they failed the task

    def key(self) -> str:
        return canonical_hash({"v": REPORT_VERSION, **asdict(self)})[:16]


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


def _check_finite(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    bad = []
    for name in (S.QPOS, S.ACTION, S.QVEL, S.EFFORT, S.TIMESTAMPS):
        data = ep.read(name)
        if data is None:
            continue
        mask = ~np.isfinite(data)
        if mask.any():
            first = int(np.argwhere(mask)[0][0])
            bad.append(f"{name}: {int(mask.sum())} non-finite values (first at step {first})")
    return CheckResult(not bad, "; ".join(bad) or "all finite")


def _check_timestamps(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    ts = ep.read(S.TIMESTAMPS)
    fps = float(ep.attrs.get("fps", 0) or 0)
    if ts is None or len(ts) < 2:
        return CheckResult(True, "fewer than two steps")
    dt = np.diff(ts)
    if not np.all(dt > 0):
        first = int(np.argmax(dt <= 0)) + 1
        return CheckResult(False, f"not strictly increasing (step {first}: {ts[first - 1]!r} -> {ts[first]!r})")
    if fps <= 0:
        return CheckResult(False, f"fps attribute is {fps}")
    period = 1.0 / fps
    median = float(np.median(dt))
    late = float(np.mean(dt > 1.5 * period))
    detail = f"median period {median * 1e3:.2f} ms (expected {period * 1e3:.2f}), {late:.1%} late steps"
    if abs(median - period) > s.rate_tolerance * period:
        return CheckResult(False, f"rate off: {detail}")
    if late > s.max_late_ratio:
        return CheckResult(False, f"too many late steps: {detail} (max {s.max_late_ratio:.0%})")
    return CheckResult(True, detail)


def joint_limits(joint_names: list[str], declared: Any = None) -> np.ndarray:
    """(J, 2) limits: the episode's own `joint_limits` attribute when present, else the ViperX table."""
    if isinstance(declared, (list, tuple)) and len(declared) == len(joint_names):
        return np.asarray(declared, dtype=np.float64).reshape(len(joint_names), 2)
    out = []
    for name in joint_names:
        lim = next((v for k, v in ARM_LIMITS.items() if name == k or name.endswith("_" + k)), None)
        out.append(lim if lim is not None else (-2 * math.pi, 2 * math.pi))
    return np.asarray(out, dtype=np.float64)


def _check_joint_limits(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    qpos = ep.read(S.QPOS)
    names = list(ep.attrs.get("joint_names", []))
    if qpos is None or qpos.ndim != 2 or qpos.shape[1] != len(names):
        return CheckResult(False, "cannot check: qpos missing or its width differs from joint_names")
    lim = joint_limits(names, ep.attrs.get("joint_limits"))
    lo, hi = lim[:, 0] - s.joint_margin, lim[:, 1] + s.joint_margin
    with np.errstate(invalid="ignore"):
        out = (qpos < lo) | (qpos > hi)
    if out.any():
        bad = np.flatnonzero(out.any(axis=0))
        parts = [
            f"{names[j]} in [{np.nanmin(qpos[:, j]):.3f}, {np.nanmax(qpos[:, j]):.3f}] "
            f"outside [{lim[j, 0]:.3f}, {lim[j, 1]:.3f}]"
            for j in bad[:4]
        ]
        return CheckResult(False, "; ".join(parts))
    return CheckResult(True, f"{len(names)} joints within limits")


def _check_dropped(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    cams = ep.attrs.get("cameras", [])
    if not cams:
        return CheckResult(True, "no cameras")
    total = int(ep.attrs.get("num_steps", 0)) * len(cams)
    dropped = checks.dropped_frame_count(ep)
    ratio = dropped / max(total, 1)
    detail = f"{dropped} dropped of {total} frames ({ratio:.2%}, max {s.max_dropped_ratio:.0%})"
    return CheckResult(ratio <= s.max_dropped_ratio, detail)


def _check_recording(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    status = ep.attrs.get("status", "ok")
    if status != "ok":
        return CheckResult(False, f"recording {status}: {ep.attrs.get('failure', 'no reason recorded')}")
    return CheckResult(True, "recorded to the end")


def _check_outcome(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    outcome = ep.attrs.get("outcome")
    success = outcome.get("success") if isinstance(outcome, dict) else None
    if success is not False:  # judged a success, or nobody could judge (teleoperation on hardware)
        return CheckResult(True, "no failed outcome recorded" if success is None else "succeeded")
    detail = f"outcome.success is false (max reward {outcome.get('max_reward')})"
    if s.keep_failed_demos:
        return CheckResult(True, f"{detail}; kept (keep_failed_demos)")
    return CheckResult(False, f"demonstration failed its task: {detail}; set keep_failed_demos to train on it")


def _check_frames(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    # Through the store's reader: the one place that knows how frames are stored (a missing chunk is an error there,
    # not a silent fill value).
    reader = EpisodeReader(ep.path)
    decoded = 0
    for cam in reader.info.cameras:
        for t in range(0, len(reader), max(1, s.decode_stride)):
            try:
                reader.frame(cam.name, t)
            except EpisodeError as exc:
                return CheckResult(False, str(exc))
            decoded += 1
    return CheckResult(True, f"{decoded} frames decoded")


_CHECK_FUNCS: dict[str, Callable[[EpisodeArrays, CheckSettings], CheckResult]] = {
    "recording_completed": _check_recording,
    "demonstration_succeeded": _check_outcome,
    "schema": lambda ep, s: checks.schema(ep),
    "lengths_agree": lambda ep, s: checks.lengths(ep),
    "finite_values": _check_finite,
    "timestamps": _check_timestamps,
    "joint_limits": _check_joint_limits,
    "dropped_frames": _check_dropped,
    "frames_decodable": _check_frames,
}


def validate_episode(session: str, path: Path, settings: CheckSettings, content_hash: str | None = None) -> EpisodeReport:
    """Run every check on one episode; a check that crashes counts as failed, with the exception as the reason."""
    path = Path(path)
    report = EpisodeReport(
        session=session,
        episode=path.name,
        path=str(path),
        content_hash=content_hash or episode_content_hash(path),
        settings_key=settings.key(),
    )
    try:
        ep = EpisodeArrays(path)
    except (StoreError, Exception) as exc:  # unreadable group metadata fails every check for the same reason
        reason = f"cannot open episode: {exc}"
        report.checks = {name: asdict(CheckResult(False, reason)) for name in CHECKS}
        return report
    a = ep.attrs
    report.num_steps = int(a.get("num_steps", 0) or 0)
    report.fps = float(a.get("fps", 0) or 0)
    report.duration_s = report.num_steps / report.fps if report.fps else 0.0
    report.robot = str(a.get("robot", ""))
    report.joint_names = list(a.get("joint_names", []))
    report.action_names = list(a.get("action_names") or report.joint_names)
    report.camera_names = [c.get("name", "") for c in a.get("cameras", [])]
    schema_ok = True
    for name in CHECKS:
        if not schema_ok and name != "frames_decodable":
            report.checks[name] = asdict(CheckResult(False, "skipped: schema check failed"))
            continue
        try:
            outcome = _CHECK_FUNCS[name](ep, settings)
        except Exception as exc:
            outcome = CheckResult(False, f"{type(exc).__name__}: {exc}")
        report.checks[name] = asdict(outcome)
        if name == "schema":
            schema_ok = outcome.passed
    try:
        report.dropped_frames = checks.dropped_frame_count(ep)
    except Exception:
        pass
    if report.passed:
        parts = episode_partial_stats(ep.read(S.QPOS), ep.read(S.ACTION))
        report.partial_stats = {k: v.to_dict() for k, v in parts.items()}
    return report


def validate_cached(
    session: str, path: Path, settings: CheckSettings, cache_file: Path
) -> tuple[EpisodeReport, bool]:
    """(report, reused): reuse the cached report when the content hash and settings are unchanged."""
    content_hash = episode_content_hash(Path(path))
    if cache_file.is_file():
        try:
            cached = EpisodeReport.from_json(json.loads(cache_file.read_text()))
            if cached.content_hash == content_hash and cached.settings_key == settings.key():
                return cached, True
        except (ValueError, TypeError, KeyError):
            pass  # a stale or foreign file: recompute
    report = validate_episode(session, path, settings, content_hash)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cache_file, report.to_json())
    return report, False
