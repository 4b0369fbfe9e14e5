"""The simulated Mobile ALOHA base: planar pose, unicycle commands, seeded start poses and a smooth drive plan.

The base carries the whole bimanual rig. Its pose (x, y, heading) is the offset of the rig from where the static
gym-aloha scenes put it: (0, 0, 0) is the working pose at the table. Heading 0 faces +y (towards the table), and
the base turns about its reference point BASE_ORIGIN, midway between the two arm roots. Commands are what the real
Tracer takes: linear velocity along the heading (m/s) and angular velocity (rad/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The base's reference point in the rig frame (between the arm roots at x = -/+0.469, y = 0.5).
BASE_ORIGIN = np.array([0.0, 0.5])

# Speed limits of the demonstrator, well within the Tracer's (1.6 m/s in the Mobile ALOHA paper; the TRACER MINI
# manual: 1.8 m/s, 1 rad/s): gentle, as a person pushing Mobile ALOHA would move it. +angular turns counter-clockwise
# seen from above, as on the Tracer.
MAX_LINEAR = 0.6  # m/s
MAX_LINEAR_ACCEL = 1.0  # m/s^2
MAX_ANGULAR = 0.8  # rad/s
MAX_ANGULAR_ACCEL = 1.6  # rad/s^2

# Seeded start poses, relative to the working pose: the arms cannot reach the table from any of them (the
# ViperX 300 S reaches ~0.75 m; from 1 m back the nearest cube is > 0.8 m from both shoulders).
START_BACK = (1.0, 1.2)  # m behind the working pose
START_SIDE = (-0.15, 0.15)  # m to the side
START_HEADING = (-0.25, 0.25)  # rad


@dataclass(frozen=True)
class BasePose:
    x: float
    y: float
    heading: float

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.heading])

    @property
    def origin(self) -> np.ndarray:
        """World position of the base's reference point."""
        return BASE_ORIGIN + [self.x, self.y]


def sample_start_pose(rng: np.random.Generator) -> BasePose:
    back, side, heading = rng.uniform(*START_BACK), rng.uniform(*START_SIDE), rng.uniform(*START_HEADING)
    return BasePose(side, -back, heading)


def world_velocity(linear: float, angular: float, heading: float) -> np.ndarray:
    """Unicycle command -> (x', y', heading') of the base joints."""
    return np.array([-linear * np.sin(heading), linear * np.cos(heading), angular])


def to_base_frame(object_pose: np.ndarray, base: BasePose) -> np.ndarray:
    """A free body's world pose (xyz + wxyz) as it sits relative to a rig at `base`, expressed where the static
    scene's rig would see it: the pose to plan the arms against."""
    c, s = np.cos(-base.heading), np.sin(-base.heading)
    dx, dy = np.asarray(object_pose[:2]) - base.origin
    xy = BASE_ORIGIN + [c * dx - s * dy, s * dx + c * dy]
    half = -base.heading / 2.0
    turn = np.array([np.cos(half), 0.0, 0.0, np.sin(half)])  # rotation about z, wxyz
    w1, x1, y1, z1 = turn
    w2, x2, y2, z2 = object_pose[3:7]
    quat = [w1 * w2 - z1 * z2, w1 * x2 - z1 * y2, w1 * y2 + z1 * x2, w1 * z2 + z1 * w2]
    return np.concatenate([xy, [object_pose[2]], quat])


def trapezoid(distance: float, vmax: float, amax: float, dt: float) -> np.ndarray:
    """Per-step velocities that cover `distance` (signed) with bounded speed and acceleration, ending at rest.

    The commanded profile is scaled so its sum * dt is exactly `distance`: a base that tracks it with a lag still
    ends where the integral says once it has settled."""
    d = abs(distance)
    if d < 1e-9:
        return np.zeros(0)
    t_acc = min(vmax / amax, np.sqrt(d / amax))
    t_total = 2 * t_acc + max(0.0, d - amax * t_acc**2) / (amax * t_acc)
    n = max(2, int(np.ceil(t_total / dt)))
    t = (np.arange(n) + 0.5) * dt
    v = np.minimum.reduce([amax * t, np.full(n, amax * t_acc), amax * (n * dt - t)])
    v = np.clip(v, 0.0, None)
    return np.sign(distance) * v * d / (v.sum() * dt)


def drive_plan(start: BasePose, goal: BasePose, dt: float, settle_steps: int = 10) -> np.ndarray:
    """(T, 2) unicycle commands that drive along one smooth curve from `start` to `goal`, turning while moving, as a
    person pushing the base would; `settle_steps` of zero command at the end let the lagging base come to rest.

    The curve is the cubic Hermite between the two reference points whose end tangents are the two headings, so it
    leaves along the start heading and arrives along the goal heading. Speed follows one trapezoid over its length
    (lowered where the curve would need more than MAX_ANGULAR). A turn in place first, as a plan of straight legs has,
    would start every demonstration with the base standing still: a policy that does not observe the base's velocity
    sees the same view either way, learns to stand, and never leaves."""
    p0, p1 = start.origin, goal.origin
    length = float(np.hypot(*(p1 - p0)))
    if length < 1e-6:  # already there: only the heading to set, turning in place
        w = trapezoid(_wrap(goal.heading - start.heading), MAX_ANGULAR, MAX_ANGULAR_ACCEL, dt)
        turn = np.stack([np.zeros_like(w), w], axis=1)
        return np.concatenate([turn, np.zeros((settle_steps, 2))]).astype(np.float32)
    u = np.linspace(0.0, 1.0, 2001)[:, None]
    h00, h10, h01, h11 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2
    ahead0, ahead1 = (world_velocity(length, 0.0, h)[:2] for h in (start.heading, goal.heading))  # tangents
    path = h00 * p0 + h10 * ahead0 + h01 * p1 + h11 * ahead1
    steps = np.diff(path, axis=0)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(steps[:, 0], steps[:, 1]))])
    heading = np.unwrap(np.arctan2(-steps[:, 0], steps[:, 1]))
    heading = np.concatenate([[heading[0]], heading])  # heading at each sample, by arc length
    heading += 2 * np.pi * np.round((start.heading - heading[0]) / (2 * np.pi))  # the start's own turn count
    curvature = np.abs(np.gradient(heading, arc))
    vmax = min(MAX_LINEAR, MAX_ANGULAR / max(float(curvature.max()), 1e-9))
    v = trapezoid(float(arc[-1]), vmax, MAX_LINEAR_ACCEL, dt)
    travelled = np.concatenate([[0.0], np.cumsum(v) * dt])
    # the heading change of each step where the curve says, plus whatever the start heading misses of it
    along = np.interp(travelled, arc, heading)
    along[0], along[-1] = start.heading, start.heading + _wrap(goal.heading - start.heading)
    w = np.diff(along) / dt
    commands = np.stack([v, w], axis=1)
    return np.concatenate([commands, np.zeros((settle_steps, 2))]).astype(np.float32)


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)
