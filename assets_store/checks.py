"""The per-episode checks: does an episode follow the schema (DESIGN.md, "Episode"), and is it fit to train on?

Each check answers one question and says why when the answer is no, so a malformed episode gets an answer per
question where `EpisodeReader` stops at the first problem. The structural questions (schema, lengths) are the
format's own; the others judge the recorded data (rates, joint limits, dropped frames) against `CheckSettings`,
whose defaults are the quality bar an episode must pass to enter a dataset. They live here, below both the pipeline
(which runs them in `raw_episodes` and quarantines failures) and the `aloha episodes check` verb (which runs them
right after recording), so both answer with the same functions and the same thresholds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from assets_store import schema as S
from assets_store.episode_reader import EpisodeArrays, EpisodeReader, frame_number_gaps
from assets_store.errors import EpisodeError
from assets_store.hashing import canonical_hash

# Bump when a check changes what it answers: cached reports of an older version are recomputed.
CHECKS_VERSION = 3


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class CheckSettings:
    rate_tolerance: float = 0.2  # median period within +-20% of 1/fps
    max_late_ratio: float = 0.1  # share of steps taking more than 1.5 periods
    joint_margin: float = 0.1  # rad (or normalized gripper units) beyond the limit still accepted
    max_dropped_ratio: float = 0.05
    decode_stride: int = 1  # decode every n-th frame (1 = all)
    keep_failed_demos: bool = False  # train on demonstrations whose outcome says they failed the task
    # Mobile base velocity limits (m/s, rad/s) for episodes that do not record their robot's own (`base_limits`):
    # the Mobile ALOHA paper's 1.6 m/s; the angular limit is ours (the Tracer's is unconfirmed).
    base_limits: tuple[float, float] = (1.6, 2.0)
    base_margin: float = 0.05  # share of the limit beyond it still accepted (measured velocities overshoot a bit)

    def key(self) -> str:
        return canonical_hash({"v": CHECKS_VERSION, **asdict(self)})[:16]


# Check names, in the order they run; also the Dagster asset check names. `in_session` is answered by the session's
# directory and marker (`sessions.session_entries`), every other one by the episode itself.
CHECKS = (
    "in_session",
    "recording_completed",
    "demonstration_succeeded",
    "schema",
    "lengths_agree",
    "finite_values",
    "timestamps",
    "joint_limits",
    "base_velocity",
    "dropped_frames",
    "frames_decodable",
)
CHECK_DESCRIPTIONS = {
    "in_session": "an episode directory inside the store that the finalized session lists (none added, removed, "
    "replaced by a file or linked in from outside the store after finalization)",
    "recording_completed": "the recorder finished the episode (not cut short by a robot fault and marked failed)",
    "demonstration_succeeded": "a demonstration that failed its task (outcome.success false) is not trained on "
    "unless keep_failed_demos",
    "schema": "schema name/version known; attributes well-typed; required arrays present with the declared dtypes "
    "and widths",
    "lengths_agree": "every array has one row per recorded step",
    "finite_values": "no NaN/Inf in joints, actions, velocities, efforts or timestamps",
    "timestamps": "strictly increasing, at the declared rate (median period and late-step share within tolerance)",
    "joint_limits": "follower joints stay within the arm's limits (grippers within [0, 1] plus margin)",
    "base_velocity": "mobile base velocities in the action (base_linear_vel, base_angular_vel) stay within the "
    "robot's configured limits (attrs extra.base_limits, else the settings' base_limits) plus base_margin",
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

Check = Callable[[EpisodeArrays, CheckSettings], CheckResult]
DEFAULT_SETTINGS = CheckSettings()


def _as_result(check: Check) -> Check:
    """A check that cannot run (unreadable metadata, unknown codec) fails, with the exception as the reason."""

    @functools.wraps(check)
    def run(ep: EpisodeArrays, s: CheckSettings = DEFAULT_SETTINGS) -> CheckResult:
        try:
            return check(ep, s)
        except EpisodeError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:
            return CheckResult(False, f"{type(exc).__name__}: {exc}")

    return run


# ---------------------------------------------------------------------------------------------- structure
@_as_result
def schema(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    """Schema name and version known; attributes well-typed; every declared array present with its dtype and width."""
    declared = ep.header.declared_arrays()
    problems = []
    for name, (shape, dtype) in declared.items():
        arr = ep.info(name)
        if arr is None:
            if name not in (S.QVEL, S.EFFORT):
                problems.append(f"{name} missing")
            continue
        if arr.dtype != dtype:
            problems.append(f"{name} dtype {arr.dtype}, expected {dtype}")
        if tuple(arr.shape[1:]) != shape[1:]:
            problems.append(f"{name} shape {tuple(arr.shape)}, expected (T, {', '.join(map(str, shape[1:]))})")
    present = sum(ep.info(n) is not None for n in declared)
    return CheckResult(not problems, "; ".join(problems) or f"{present} arrays as declared")


@_as_result
def lengths(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    """Every array has one row per recorded step (the `num_steps` attribute)."""
    T = ep.header.num_steps
    rows = {n: arr.shape[0] for n in ep.header.declared_arrays() if (arr := ep.info(n)) is not None and arr.shape}
    bad = {n: L for n, L in rows.items() if L != T}
    if bad:
        return CheckResult(False, f"expected {T} rows, got " + ", ".join(f"{n}={L}" for n, L in bad.items()))
    return CheckResult(True, f"{len(rows)} arrays x {T} steps")


def dropped_frame_count(ep: EpisodeArrays) -> int:
    """Frames the cameras skipped: frame-number gaps over all cameras, or the recorder's own count when higher."""
    gaps = 0
    for cam in ep.header.info.cameras:
        info = ep.read(S.frame_info_array(cam.name))
        if info is None or len(info) < 2:
            continue
        gaps += frame_number_gaps(info)
    return max(gaps, ep.header.count("dropped_frames"))


# ---------------------------------------------------------------------------------------------- the recorded data
@_as_result
def recording_completed(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    status = ep.attrs.get("status", "ok")
    if status != "ok":
        return CheckResult(False, f"recording {status}: {ep.attrs.get('failure', 'no reason recorded')}")
    return CheckResult(True, "recorded to the end")


@_as_result
def demonstration_succeeded(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    outcome = ep.attrs.get("outcome")
    success = outcome.get("success") if isinstance(outcome, dict) else None
    if success is not False:  # judged a success, or nobody could judge (teleoperation on hardware)
        return CheckResult(True, "no failed outcome recorded" if success is None else "succeeded")
    detail = f"outcome.success is false (max reward {outcome.get('max_reward')})"
    if s.keep_failed_demos:
        return CheckResult(True, f"{detail}; kept (keep_failed_demos)")
    return CheckResult(False, f"demonstration failed its task: {detail}; set keep_failed_demos to train on it")


@_as_result
def finite_values(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
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


@_as_result
def timestamps(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    ts = ep.read(S.TIMESTAMPS)
    fps = float(ep.header.info.fps)
    if ts is None or len(ts) < 2:
        return CheckResult(True, "fewer than two steps")
    dt = np.diff(ts)
    if not np.all(dt > 0):
        first = int(np.argmax(dt <= 0)) + 1
        return CheckResult(False, f"not strictly increasing (step {first}: {ts[first - 1]!r} -> {ts[first]!r})")
    period = 1.0 / fps
    median = float(np.median(dt))
    late = float(np.mean(dt > 1.5 * period))
    detail = f"median period {median * 1e3:.2f} ms (expected {period * 1e3:.2f}), {late:.1%} late steps"
    if abs(median - period) > s.rate_tolerance * period:
        return CheckResult(False, f"rate off: {detail}")
    if late > s.max_late_ratio:
        return CheckResult(False, f"too many late steps: {detail} (max {s.max_late_ratio:.0%})")
    return CheckResult(True, detail)


def joint_limits_of(joint_names: list[str], declared: Any = None) -> np.ndarray:
    """(J, 2) limits: the episode's own `joint_limits` attribute when present, else the ViperX table."""
    if declared is not None:
        lim = np.asarray(declared, dtype=np.float64)  # ValueError for anything but numbers
        if lim.shape != (len(joint_names), 2):
            raise ValueError(f"attrs.joint_limits: expected ({len(joint_names)}, 2) numbers, got shape {lim.shape}")
        return lim
    out = []
    for name in joint_names:
        lim = next((v for k, v in ARM_LIMITS.items() if name == k or name.endswith("_" + k)), None)
        out.append(lim if lim is not None else (-2 * math.pi, 2 * math.pi))
    return np.asarray(out, dtype=np.float64)


@_as_result
def joint_limits(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    qpos = ep.read(S.QPOS)
    names = ep.header.info.joint_names
    if qpos is None:
        return CheckResult(False, "cannot check: qpos missing")
    lim = joint_limits_of(names, ep.attrs.get("joint_limits"))
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


BASE_ACTIONS = ("base_linear_vel", "base_angular_vel")


@_as_result
def base_velocity(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    names = list(ep.header.info.action_names)
    if not any(n in names for n in BASE_ACTIONS):
        return CheckResult(True, "no mobile base")
    action = ep.read(S.ACTION)
    if action is None:
        return CheckResult(False, "cannot check: action missing")
    extra = ep.attrs.get("extra") or {}
    declared = extra.get("base_limits") if isinstance(extra, dict) else None
    limits = np.asarray(declared if declared is not None else s.base_limits, dtype=np.float64)  # ValueError if not numbers
    if limits.shape != (2,) or not np.all(limits > 0):
        raise ValueError(f"extra.base_limits: expected two positive numbers (m/s, rad/s), got {declared!r}")
    problems = []
    for name, limit in zip(BASE_ACTIONS, limits):
        if name not in names or not len(action):
            continue
        peak = float(np.nanmax(np.abs(action[:, names.index(name)])))
        if peak > limit * (1 + s.base_margin):
            problems.append(f"{name} reaches {peak:.3f}, limit {limit:.3f}")
    if problems:
        return CheckResult(False, "; ".join(problems))
    return CheckResult(True, f"base velocities within ({limits[0]:.2f} m/s, {limits[1]:.2f} rad/s)")


@_as_result
def dropped_frames(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    cams = ep.header.info.cameras
    if not cams:
        return CheckResult(True, "no cameras")
    total = ep.header.num_steps * len(cams)
    dropped = dropped_frame_count(ep)
    ratio = dropped / total
    detail = f"{dropped} dropped of {total} frames ({ratio:.2%}, max {s.max_dropped_ratio:.0%})"
    return CheckResult(ratio <= s.max_dropped_ratio, detail)


@_as_result
def frames_decodable(ep: EpisodeArrays, s: CheckSettings) -> CheckResult:
    # Through the store's reader: the one place that knows how frames are stored (a missing chunk is an error there,
    # not a silent fill value).
    reader = EpisodeReader(ep.path)
    decoded = 0
    for cam in reader.info.cameras:
        for t in range(0, len(reader), max(1, s.decode_stride)):
            reader.frame(cam.name, t)
            decoded += 1
    return CheckResult(True, f"{decoded} frames decoded")


# Every check an episode's own content answers, by name, in the order of CHECKS.
EPISODE_CHECKS: dict[str, Check] = {
    "recording_completed": recording_completed,
    "demonstration_succeeded": demonstration_succeeded,
    "schema": schema,
    "lengths_agree": lengths,
    "finite_values": finite_values,
    "timestamps": timestamps,
    "joint_limits": joint_limits,
    "base_velocity": base_velocity,
    "dropped_frames": dropped_frames,
    "frames_decodable": frames_decodable,
}
