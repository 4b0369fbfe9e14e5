"""Co-training: one dataset of several groups of sessions, conformed to a target robot and sampled by weight.

Mobile ALOHA (act-plus-plus) co-trains its mobile demonstrations with static ALOHA data. What is kept of its recipe:

- the target robot is the dataset's robot: its action names, joint names and cameras (a subset of them if asked);
- actions are matched by name; a target action a group lacks is padded with 0 (static 14-D episodes get the target's
  two base velocities as zeros, as the recipe appends [0, 0]) and recorded as padded, so the loss can leave it out
  (`ACTConfig.mask_padded_actions`; the original keeps them in); an action the target lacks is an error;
- cameras are matched by name: a camera the target lacks is dropped, a target camera missing from a group is an
  error that names the group, its session and the camera. A group whose rig names a camera differently maps it
  (`cameras: {target: its own}`, e.g. the simulator's static `top` as `cam_high`): the recipe matches static
  ALOHA's cam_high, fixed above the table, with Mobile ALOHA's head camera of the same name;
- joints (the state) must be the target's, in order (the recipe's state is the 14 arm joints in both datasets);
- normalization statistics come from the groups that carry every target action: the target robot's own data, as
  the recipe's `stats_dir` is the mobile data only. Padded zeros never enter them; in a padded group they are then
  normalized with the target's statistics (-mean/std, as in the original);
- each group has a sampling weight: a training sample first picks a group with probability weight / sum(weights),
  then a sample within it (the recipe: `sample_weights`, 50/50 for most tasks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from assets_store.errors import StoreError
from assets_store.stats import DEFAULT_STD_FLOOR, NormStats, PartialStats, merge_all


@dataclass
class DatasetGroup:
    """One group of a dataset's sessions as its manifest records it."""

    name: str
    sessions: list[str]
    weight: float = 1.0
    robot: str = ""
    action_names: list[str] = field(default_factory=list)  # the group's own actions, before padding
    padded_actions: list[str] = field(default_factory=list)  # target actions the group lacks: zero, masked
    dropped_cameras: list[str] = field(default_factory=list)  # the group's cameras the target does not use
    in_stats: bool = True  # its data enters the normalization statistics
    # target camera -> the group's camera that plays it, where the names differ (absent from the JSON when empty,
    # so the ids of datasets built before it stay)
    camera_map: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "DatasetGroup":
        camera_map = d.get("camera_map", {})
        if not isinstance(camera_map, Mapping) or not all(isinstance(x, str) for kv in camera_map.items() for x in kv):
            raise TypeError(f"group {d.get('name')!r}: camera_map: expected {{target camera: the group's camera}}, "
                            f"got {camera_map!r}")
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["camera_map"]:
            del d["camera_map"]
        return d

    def source_camera(self, camera: str) -> str:
        """The group's own name of target camera `camera`."""
        return self.camera_map.get(camera, camera)


@dataclass(frozen=True)
class GroupSpec:
    """What a user asks for: a named group of sessions and its sampling weight."""

    name: str
    sessions: Sequence[str]
    weight: float = 1.0
    cameras: Mapping[str, str] = field(default_factory=dict)  # target camera -> the group's own name of it


@dataclass(frozen=True)
class EpisodeEntry:
    """What building a dataset needs to know of one validated episode (a session summary's entry)."""

    session: str
    episode: str
    content_hash: str
    num_steps: int
    robot: str
    fps: float
    joint_names: Sequence[str]
    action_names: Sequence[str]
    camera_names: Sequence[str]
    partial_stats: Mapping[str, PartialStats]

    @classmethod
    def from_summary(cls, session: str, d: Mapping[str, Any]) -> "EpisodeEntry":
        parts = {k: PartialStats.from_dict(v) for k, v in (d.get("partial_stats") or {}).items()}
        return cls(session, d["episode"], d["content_hash"], int(d["num_steps"]), d["robot"], float(d["fps"]),
                   list(d["joint_names"]), list(d["action_names"] or d["joint_names"]), list(d["camera_names"]), parts)


@dataclass(frozen=True)
class Target:
    """The robot a co-trained dataset trains for."""

    robot: str
    fps: float
    joint_names: list[str]
    action_names: list[str]
    camera_names: list[str]


def action_columns(source: Sequence[str], target: Sequence[str]) -> list[int]:
    """For each target action, its column in `source`, or -1 where the source lacks it (padded)."""
    where = {name: i for i, name in enumerate(source)}
    return [where.get(name, -1) for name in target]


def conform_actions(actions: np.ndarray, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """(T, len(source)) actions -> (T, len(target)): columns by name, 0 where the source lacks a target action."""
    cols = action_columns(source, target)
    out = np.zeros((len(actions), len(target)), dtype=actions.dtype)
    have = [i for i, c in enumerate(cols) if c >= 0]
    out[:, have] = actions[:, [cols[i] for i in have]]
    return out


def _session_owners(specs: Sequence[GroupSpec]) -> dict[str, str]:
    """session -> its group's name, once the groups are checked (weights, names, one group per session)."""
    if not specs:
        raise StoreError("groups: expected at least one group of sessions")
    if len({s.name for s in specs}) != len(specs):
        raise StoreError(f"groups: names must differ, got {[s.name for s in specs]}")
    owner: dict[str, str] = {}
    for spec in specs:
        if not spec.weight >= 0 or not np.isfinite(spec.weight):
            raise StoreError(f"group {spec.name!r}: weight: expected a number >= 0, got {spec.weight!r}")
        if not spec.sessions:
            raise StoreError(f"group {spec.name!r}: sessions: expected at least one session")
        for s in spec.sessions:
            if s in owner:
                raise StoreError(f"session {s!r} is in groups {owner[s]!r} and {spec.name!r}: expected one group")
            owner[s] = spec.name
    if sum(s.weight for s in specs) <= 0:
        raise StoreError("groups: at least one weight must be > 0")
    return owner


def _camera_map(spec: GroupSpec, target: Target) -> dict[str, str]:
    """The group's camera map, checked: keys are target cameras, each of the group's cameras plays at most one."""
    # a camera mapped to its own name is matched by name: kept out, so it changes neither the id nor the report
    camera_map = {str(k): str(v) for k, v in dict(spec.cameras).items() if str(k) != str(v)}
    unknown = [c for c in camera_map if c not in target.camera_names]
    if unknown:
        raise StoreError(f"group {spec.name!r}: cameras: {unknown} are not target cameras (the target uses "
                         f"{target.camera_names}); expected {{target camera: the group's camera}}")
    plays: dict[str, list[str]] = {}
    for cam in target.camera_names:
        plays.setdefault(camera_map.get(cam, cam), []).append(cam)
    twice = {own: cams for own, cams in plays.items() if len(cams) > 1}
    if twice:
        raise StoreError(f"group {spec.name!r}: cameras: each of the group's cameras plays one target camera, "
                         f"got {twice} (the group's camera: the target cameras it would play)")
    return camera_map


def plan_groups(entries: Sequence[EpisodeEntry], specs: Sequence[GroupSpec], *, robot: str | None = None,
                camera_names: Sequence[str] | None = None) -> tuple[Target, list[DatasetGroup]]:
    """The target robot (named, else the first group's) and each group conformed to it; raises StoreError on a
    group that cannot be (the message names the group, the session and what is missing)."""
    owner = _session_owners(specs)
    by_group: dict[str, list[EpisodeEntry]] = {s.name: [] for s in specs}
    for e in entries:
        if e.session in owner:
            by_group[owner[e.session]].append(e)
    for spec in specs:
        if not by_group[spec.name]:
            raise StoreError(f"group {spec.name!r}: no episodes in sessions {list(spec.sessions)}")

    robot = robot or by_group[specs[0].name][0].robot
    own = next((e for e in entries if e.session in owner and e.robot == robot), None)
    if own is None:
        raise StoreError(f"robot {robot!r}: no episode of the target robot in any group "
                         f"(the groups hold {sorted({e.robot for e in entries if e.session in owner})})")
    cams = list(camera_names or own.camera_names)
    missing = [c for c in cams if c not in own.camera_names]
    if missing:
        raise StoreError(f"cameras: {missing} are not cameras of the target robot {robot!r} (it has "
                         f"{list(own.camera_names)})")
    target = Target(robot, own.fps, list(own.joint_names), list(own.action_names), cams)

    groups = []
    for spec in specs:
        members = by_group[spec.name]
        first = members[0]
        camera_map = _camera_map(spec, target)
        for e in members:
            where = f"group {spec.name!r} session {e.session!r} episode {e.episode!r}"
            if list(e.action_names) != list(first.action_names) or e.robot != first.robot:
                raise StoreError(f"{where}: robot {e.robot!r} actions {list(e.action_names)} differ from its group's "
                                 f"({first.robot!r}, {list(first.action_names)}): expected one robot per group")
            if list(e.joint_names) != target.joint_names:
                raise StoreError(f"{where}: joints {list(e.joint_names)}: expected the target's {target.joint_names}")
            if e.fps != target.fps:
                raise StoreError(f"{where}: fps {e.fps}: expected the target's {target.fps}")
            extra = [a for a in e.action_names if a not in target.action_names]
            if extra:
                raise StoreError(f"{where}: actions {extra} are not actions of the target robot {robot!r}")
            for cam in target.camera_names:
                own_name = camera_map.get(cam, cam)
                if own_name not in e.camera_names:
                    what = f"camera {own_name!r} (mapped to the target's {cam!r})" if cam in camera_map else \
                        f"target camera {cam!r}"
                    raise StoreError(f"{where}: {what} missing (it has {list(e.camera_names)})")
        padded = [a for a in target.action_names if a not in first.action_names]
        used = {camera_map.get(c, c) for c in target.camera_names}
        dropped = sorted({c for e in members for c in e.camera_names} - used)
        groups.append(DatasetGroup(spec.name, sorted(spec.sessions), float(spec.weight), first.robot,
                                   list(first.action_names), padded, dropped, in_stats=not padded,
                                   camera_map={c: camera_map[c] for c in target.camera_names if c in camera_map}))
    if not any(g.in_stats for g in groups):
        raise StoreError(f"groups: none carries every target action {target.action_names}; the normalization "
                         "statistics come from the target robot's own data")
    return target, groups


def cotraining_stats(entries: Sequence[EpisodeEntry], groups: Sequence[DatasetGroup], target: Target,
                     std_floor: float = DEFAULT_STD_FLOOR) -> dict[str, NormStats]:
    """Statistics of the groups marked `in_stats` (see the module doc), actions in the target's order."""
    sessions = {s for g in groups if g.in_stats for s in g.sessions}
    used = [e for e in entries if e.session in sessions]
    qpos = merge_all([e.partial_stats["qpos"] for e in used])
    action = merge_all([e.partial_stats["action"].select(action_columns(e.action_names, target.action_names))
                        for e in used])
    return {"qpos": qpos.finalize(std_floor), "action": action.finalize(std_floor)}
