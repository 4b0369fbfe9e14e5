"""Structural checks of one episode: does it follow the schema (DESIGN.md, "Episode")?

Each check answers one question and says why when the answer is no, so a malformed episode gets an answer per
question where `EpisodeReader` stops at the first problem. Judging the recorded data (rates, joint limits, how many
dropped frames are too many, what to quarantine) is the caller's policy, not the store's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from assets_store import schema as S
from assets_store.episode_reader import EpisodeArrays, check_schema, frame_number_gaps


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str = ""


def _as_result(check: Callable[[EpisodeArrays], CheckResult]) -> Callable[[EpisodeArrays], CheckResult]:
    """A check that cannot run (unreadable metadata, unknown codec) fails, with the exception as the reason."""

    @functools.wraps(check)
    def run(ep: EpisodeArrays) -> CheckResult:
        try:
            return check(ep)
        except Exception as exc:
            return CheckResult(False, f"{type(exc).__name__}: {exc}")

    return run


@_as_result
def schema(ep: EpisodeArrays) -> CheckResult:
    """Schema name and version known; every declared array present with its dtype and per-step shape."""
    check_schema(ep.path, ep.attrs)
    info = S.EpisodeInfo.from_attrs(ep.attrs)
    want = {S.QPOS: (info.num_joints, np.float32), S.ACTION: (info.action_dim, np.float32), S.TIMESTAMPS: (None, np.float64)}
    for name in (S.QVEL, S.EFFORT):
        if ep.info(name) is not None:
            want[name] = (info.num_joints, np.float32)
    for cam in info.cameras:
        want[S.image_array(cam.name)] = ((cam.height, cam.width, 3), np.uint8)
        want[S.frame_info_array(cam.name)] = (2, np.float64)
    problems = []
    for name, (width, dtype) in want.items():
        arr = ep.info(name)
        if arr is None:
            problems.append(f"{name} missing")
            continue
        if arr.dtype != dtype:
            problems.append(f"{name} dtype {arr.dtype}, expected {np.dtype(dtype)}")
        tail = tuple(arr.shape[1:])
        expect_tail = () if width is None else (width if isinstance(width, tuple) else (width,))
        if tail != expect_tail:
            problems.append(f"{name} shape {tuple(arr.shape)}, expected (T, {', '.join(map(str, expect_tail))})")
    return CheckResult(not problems, "; ".join(problems) or f"{len(want)} arrays as declared")


def _camera_arrays(ep: EpisodeArrays) -> list[str]:
    cams = [c["name"] for c in ep.attrs.get("cameras", [])]
    return [S.image_array(c) for c in cams] + [S.frame_info_array(c) for c in cams]


@_as_result
def lengths(ep: EpisodeArrays) -> CheckResult:
    """Every array has one row per recorded step (the `num_steps` attribute)."""
    T = int(ep.attrs.get("num_steps", -1))
    names = [S.QPOS, S.ACTION, S.TIMESTAMPS, S.QVEL, S.EFFORT, *_camera_arrays(ep)]
    found = {n: ep.info(n) for n in names}
    rows = {n: arr.shape[0] for n, arr in found.items() if arr is not None}
    bad = {n: L for n, L in rows.items() if L != T}
    if T <= 0:
        return CheckResult(False, f"num_steps attribute is {T}")
    if bad:
        return CheckResult(False, f"expected {T} rows, got " + ", ".join(f"{n}={L}" for n, L in bad.items()))
    return CheckResult(True, f"{len(rows)} arrays x {T} steps")


def dropped_frame_count(ep: EpisodeArrays) -> int:
    """Frames the cameras skipped: frame-number gaps over all cameras, or the recorder's own count when higher."""
    gaps = 0
    for cam in ep.attrs.get("cameras", []):
        info = ep.read(S.frame_info_array(cam["name"]))
        if info is None or info.ndim != 2 or len(info) < 2:
            continue
        gaps += frame_number_gaps(info)
    recorded = int((ep.attrs.get("counters") or {}).get("dropped_frames", 0) or 0)
    return max(gaps, recorded)
