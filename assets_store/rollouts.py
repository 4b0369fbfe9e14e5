"""Rollouts stored as episodes: the attributes that mark one, and (below) the readers that count what they scored.

A rollout session is an ordinary session: the finalized marker says `"kind": "rollout"` and which bundle ran
(`bundle_manifest_sha256`, the sha256 of the bundle's manifest.json); each episode's root attributes carry the same
kind, the rollout settings, the operator's or simulator's label and the steps a human drove (takeover spans).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from assets_store.annotations import LABELS, EpisodeCuration, read_annotations
from assets_store.episode_reader import read_root_attrs
from assets_store.errors import EpisodeError, StoreError
from assets_store.layout import FINALIZED_MARKER, StoreLayout, parse_episode_dirname
from assets_store.sessions import list_sessions, read_finalized_marker, session_entries

ROLLOUT_KIND = "rollout"
DEMONSTRATION_KIND = "demonstration"  # the default: episodes without a `kind` attribute are demonstrations
LABEL_SOURCES = ("operator", "simulator", "option")


def rollout_attrs(
    bundle_manifest_sha256: str,
    bundle_dir: str,
    *,
    dataset_id: str | None = None,
    robot: str,
    task: str | None = None,
    temporal_ensemble_k: float | None = None,
    query_every: int = 1,
    inference: str = "sync",
    backend: str = "torch",
    seed: int | None = None,
    label: str | None = None,
    label_source: str | None = None,
    takeover_spans: list[tuple[int, int]] | list[list[int]] | None = None,
    served: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The root attributes of one rollout episode (`EpisodeWriter.close(extra_attrs=...)`), as the contract fixes.
    `served`: where the policy came from where that is not the bundle_dir alone (`policy_server`: the server's
    address and what it ran; `mlflow_run_id`; `promoted_version` of a champion, whose path moves), added to
    `rollout` as given."""
    return {
        "kind": ROLLOUT_KIND,
        "rollout": {
            "bundle_manifest_sha256": str(bundle_manifest_sha256),
            "bundle_dir": str(bundle_dir),
            "dataset_id": None if dataset_id is None else str(dataset_id),
            "robot": str(robot),
            "task": None if task is None else str(task),
            "temporal_ensemble_k": None if temporal_ensemble_k is None else float(temporal_ensemble_k),
            "query_every": int(query_every),
            "inference": str(inference),
            "backend": str(backend),
            "seed": None if seed is None else int(seed),
            **{str(k): str(v) for k, v in (served or {}).items()},
        },
        "label": label,
        "label_source": label_source,
        "takeover_spans": [[int(a), int(b)] for a, b in (takeover_spans or [])],
    }


def is_rollout(attrs: Mapping[str, Any] | None) -> bool:
    """An episode's (or a finalized marker's) attributes say it is a rollout, not a demonstration."""
    return bool(attrs) and attrs.get("kind") == ROLLOUT_KIND


# ---------------------------------------------------------------------------------------------- reading them back
@dataclass(frozen=True)
class LabelledRollout:
    """One rollout episode that counts: its effective label and where it came from (the log wins over the attr)."""

    session: str
    episode: str  # episode_000003.zarr
    path: Path
    label: str  # success | failure
    label_source: str  # annotation, or the attr's label_source (operator, simulator, option)
    takeover_steps: int  # steps a human drove
    taken_over: bool = False  # a human took over at least once (non-empty takeover_spans)

    @property
    def succeeded(self) -> bool:
        """Counts as a policy success: labelled success and nobody had to take over (an intervention means the
        policy needed help, whatever the label says)."""
        return self.label == "success" and not self.taken_over

    @property
    def ref(self) -> str:
        """What `aloha episodes show` takes: SESSION/N."""
        return f"{self.session}/{parse_episode_dirname(self.episode)}"


@dataclass
class RolloutTally:
    """The labelled rollouts of one bundle across the store's finalized rollout sessions."""

    bundle_manifest_sha256: str
    rollouts: list[LabelledRollout] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)  # finalized rollout sessions run with this bundle
    unlabelled: int = 0  # episodes without a label: not counted
    excluded: int = 0  # episodes excluded in the annotation log: not counted
    simulated: int = 0  # rollouts on a simulator (robot or label source): real success counts only real robots
    problems: list[str] = field(default_factory=list)  # "<path>: <what is wrong>", one per skipped episode/session/line

    @property
    def count(self) -> int:
        return len(self.rollouts)

    @property
    def successes(self) -> int:
        return sum(r.succeeded for r in self.rollouts)

    @property
    def with_takeover(self) -> int:
        """Counted rollouts a human took over during: each counts as a failure of the policy."""
        return sum(r.taken_over for r in self.rollouts)

    @property
    def rate(self) -> float | None:
        return self.successes / self.count if self.count else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.successes, self.count) if self.count else None


Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a success rate: unlike the normal approximation it stays inside
    [0, 1] and is sensible for the handful of trials a real robot gets (0/10 is not "certainly 0%")."""
    if n <= 0:
        raise ValueError(f"n: expected at least one trial, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes: expected 0..{n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rollout_sessions(layout: StoreLayout) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """({session: finalized marker} of every finalized rollout session, problems): an unreadable marker is reported
    by its path and the other sessions still count."""
    out, problems = {}, []
    for session in list_sessions(layout):
        try:
            marker = read_finalized_marker(layout.session_dir(session))
        except StoreError as exc:
            problems.append(str(exc))
            continue
        if marker is None or not is_rollout(marker):
            continue
        if not isinstance(marker.get("bundle_manifest_sha256"), str):
            problems.append(f"{layout.session_dir(session) / FINALIZED_MARKER}: bundle_manifest_sha256: expected the "
                            f"sha256 of the bundle that ran, got {marker.get('bundle_manifest_sha256')!r:.80}")
            continue
        out[session] = marker
    return out, problems


def labelled_rollouts(layout: StoreLayout, bundle_manifest_sha256: str, *,
                      simulated: Callable[[str], bool]) -> RolloutTally:
    """Every labelled, not excluded rollout episode on a real robot run with the bundle whose manifest.json has this
    sha256, in finalized rollout sessions. The effective label is the annotation log's last label, else the
    episode's attr. `simulated(robot_name)` says which robots are simulators (the caller knows the registry): their
    rollouts, and any labelled by a simulator, are counted apart in `simulated`. A malformed episode, marker or log
    line is reported in `problems`, and the rest still count."""
    tally = RolloutTally(bundle_manifest_sha256)
    sessions, tally.problems = rollout_sessions(layout)
    for session, marker in sessions.items():
        if marker.get("bundle_manifest_sha256") != bundle_manifest_sha256:
            continue
        tally.sessions.append(session)
        try:
            log = read_annotations(layout, session)
            entries = session_entries(layout, session, deep=False)
        except StoreError as exc:
            tally.problems.append(str(exc))
            continue
        tally.problems += log.problems
        for entry in entries:
            _count(tally, session, entry.path, entry.name, entry.problem, log.of(entry.name), simulated)
    return tally


def _count(tally: RolloutTally, session: str, path: Path, name: str, problem: str, curation: EpisodeCuration,
           simulated: Callable[[str], bool]) -> None:
    if problem:
        tally.problems.append(f"{path}: {problem}")
        return
    try:
        attrs = read_root_attrs(path)
    except EpisodeError as exc:
        tally.problems.append(str(exc))
        return
    why = _attrs_problem(attrs, tally.bundle_manifest_sha256)
    if why:
        tally.problems.append(f"{path}: {why}")
        return
    if curation.excluded is not None:
        tally.excluded += 1
        return
    if attrs.get("label_source") == "simulator" or simulated(str(attrs["rollout"].get("robot"))):
        tally.simulated += 1
        return
    label, source = effective_label(attrs, curation.label)
    if label is None:
        tally.unlabelled += 1
        return
    spans = attrs.get("takeover_spans") or []
    steps = sum(b - a for a, b in spans)
    tally.rollouts.append(LabelledRollout(session, name, path, label, str(source or "?"), int(steps), bool(spans)))


def effective_label(attrs: Mapping[str, Any], annotated: str | None) -> tuple[str | None, str | None]:
    """(label, where it came from): the annotation log's last label wins over the one recorded with the rollout."""
    if annotated:
        return annotated, "annotation"
    return attrs.get("label"), attrs.get("label_source")


def _attrs_problem(attrs: Mapping[str, Any], bundle_manifest_sha256: str) -> str:
    """What in a rollout episode's attributes contradicts the contract ('' when nothing): the field, what was
    expected."""
    if not is_rollout(attrs):
        return f"kind: expected {ROLLOUT_KIND!r} in a rollout session, got {attrs.get('kind')!r}"
    rollout = attrs.get("rollout")
    if not isinstance(rollout, dict) or rollout.get("bundle_manifest_sha256") != bundle_manifest_sha256:
        got = rollout.get("bundle_manifest_sha256") if isinstance(rollout, dict) else rollout
        return (f"rollout.bundle_manifest_sha256: expected {bundle_manifest_sha256} as the session's marker says, "
                f"got {got!r:.80}")
    if attrs.get("label") not in (None, *LABELS):
        return f"label: expected one of {', '.join(LABELS)} or null, got {attrs.get('label')!r:.80}"
    spans = attrs.get("takeover_spans", [])
    if not isinstance(spans, list) or not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in s)
        and 0 <= s[0] <= s[1] for s in spans
    ):
        return f"takeover_spans: expected a list of [start, stop] step indices, got {spans!r:.80}"
    return ""
