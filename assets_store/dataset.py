"""Datasets: a manifest of episodes (content hashes, train/val split) plus merged normalization statistics.

The id is a hash of the manifest: the same episodes with the same content and split give the same id. Session
annotations (labels, exclusions) that affected a dataset are part of its manifest, so they change its id too, and so
do a co-trained dataset's groups (sessions, sampling weights, padding: assets_store/cotraining.py).

Rollout episodes (`assets_store.rollouts`) are never mixed with demonstrations unless asked: `takeover_spans=True`
brings in the steps a person drove during a rollout (HG-DAgger), each span an episode entry with its `span`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assets_store.annotations import SessionAnnotations
from assets_store.cotraining import DatasetGroup, EpisodeEntry, GroupSpec, cotraining_stats, plan_groups
from assets_store.episode_reader import EpisodeReader, read_root_attrs
from assets_store.errors import StoreError
from assets_store.hashing import canonical_hash, directory_sha256, write_json_atomic
from assets_store.layout import COMPLETE_MARKER, StoreLayout, is_remote_root
from assets_store.remote import RemoteStore
from assets_store.rollouts import is_rollout
from assets_store.sessions import read_finalized_marker
from assets_store.stats import NormStats, PartialStats, episode_partial_stats, stats_from_json, stats_to_json

# Beside a dataset the pipeline built from an object store (not part of the dataset: its id does not change).
EPISODES_AT = "episodes_at.json"
MANIFEST_SCHEMA = "aloha-dataset"
# Version 1 still: a manifest without groups reads as it always did (one implicit group of weight 1).
MANIFEST_VERSION = 1


def episode_content_hash(path: Path) -> str:
    return directory_sha256(path, skip=(COMPLETE_MARKER,))


@dataclass(frozen=True)
class EpisodeRef:
    session: str
    episode: str  # directory name, e.g. episode_000003.zarr
    content_hash: str
    num_steps: int
    split: str = "train"  # "train" | "val"
    span: tuple[int, int] | None = None  # only steps [start, stop) of the episode (a takeover); None: all

    @property
    def key(self) -> str:
        return f"{self.session}/{self.episode}"

    def path(self, layout: StoreLayout) -> Path:
        return layout.session_dir(self.session) / self.episode


@dataclass
class DatasetManifest:
    episodes: list[EpisodeRef]
    robot: str = ""
    fps: float = 50.0
    joint_names: list[str] = field(default_factory=list)
    action_names: list[str] = field(default_factory=list)
    camera_names: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    # "<session>/<episode>" -> {"label": ..., "excluded": reason}: the annotations that decided what is in; empty
    # (and then absent from the JSON, so the ids of unannotated datasets stay what they were) when none did.
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    # Co-training groups (assets_store/cotraining.py); empty (and absent from the JSON, ids unchanged): one group of
    # every episode with weight 1, nothing padded.
    groups: list[DatasetGroup] = field(default_factory=list)
    takeover_spans: bool = False  # rollouts' takeover spans are in (absent from the JSON when False)

    @property
    def id(self) -> str:
        body = self.to_json()
        body.pop("id", None)
        return canonical_hash(body)[:16]

    @property
    def train(self) -> list[EpisodeRef]:
        return [e for e in self.episodes if e.split == "train"]

    @property
    def val(self) -> list[EpisodeRef]:
        return [e for e in self.episodes if e.split == "val"]

    @property
    def num_steps(self) -> int:
        return sum(e.num_steps for e in self.episodes)

    @property
    def sampling_groups(self) -> list[DatasetGroup]:
        """The groups a loader samples from: the recorded ones, or the one implicit group of every session."""
        if self.groups:
            return self.groups
        sessions = sorted({e.session for e in self.episodes})
        return [DatasetGroup("all", sessions, 1.0, self.robot, list(self.action_names or self.joint_names))]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["episodes"] = [{k: v for k, v in asdict(e).items() if k != "span" or v is not None} for e in self.episodes]
        if not d["annotations"]:
            del d["annotations"]
        if not d["groups"]:
            del d["groups"]
        else:
            d["groups"] = [g.to_json() for g in self.groups]  # a group's empty camera map stays out (ids unchanged)
        if not d["takeover_spans"]:  # absent: the ids of datasets without rollouts stay what they were
            del d["takeover_spans"]
        d["schema"] = MANIFEST_SCHEMA
        d["schema_version"] = MANIFEST_VERSION
        d["id"] = canonical_hash({k: v for k, v in d.items() if k != "id"})[:16]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "manifest") -> "DatasetManifest":
        if d.get("schema") != MANIFEST_SCHEMA or d.get("schema_version") != MANIFEST_VERSION:
            raise StoreError(
                f"{source}: schema: expected {MANIFEST_SCHEMA!r} v{MANIFEST_VERSION}, "
                f"got {d.get('schema')!r} v{d.get('schema_version')!r}"
            )
        fields = {k: v for k, v in d.items() if k not in ("schema", "schema_version", "id")}
        fields["episodes"] = [EpisodeRef(**{**e, "span": tuple(e["span"]) if e.get("span") else None})
                              for e in d["episodes"]]
        try:
            fields["groups"] = [DatasetGroup.from_json(g) for g in d.get("groups", [])]
        except (TypeError, AttributeError) as exc:
            raise StoreError(f"{source}: groups: expected a list of {{name, sessions, weight, ...}} ({exc})") from None
        return cls(**fields)


def assign_splits(keys_and_hashes: list[tuple[str, str]], val_fraction: float) -> dict[str, str]:
    """Deterministic split: order episodes by a hash of (key, content), the first ceil(n * f) go to val.

    At least one validation episode whenever there are two or more episodes and f > 0.
    """
    n = len(keys_and_hashes)
    n_val = 0 if n < 2 or val_fraction <= 0 else min(n - 1, max(1, math.ceil(n * val_fraction)))
    order = sorted(keys_and_hashes, key=lambda kh: hashlib.sha256(f"{kh[0]}:{kh[1]}".encode()).hexdigest())
    val = {k for k, _ in order[:n_val]}
    return {k: ("val" if k in val else "train") for k, _ in keys_and_hashes}


def curate(
    episodes: list[tuple[str, str]],  # (session, episode dir name)
    annotations: dict[str, SessionAnnotations],  # by session
    *,
    keep_failed: bool = False,
    rollouts: dict[tuple[str, str], list[tuple[int, int]]] | None = None,  # rollout episodes: their takeover spans
    takeover_spans: bool = False,
) -> tuple[set[tuple[str, str]], dict[str, dict[str, str]]]:
    """Which episodes a dataset keeps, and the annotations that touched them (for its manifest): excluded ones are
    out, those labelled failure are out unless `keep_failed`; rollouts are out, unless `takeover_spans` and they
    have one (a rollout's label judges the policy, not the person's span: it does not decide); the rest are in."""
    kept, record = set(), {}
    rollouts = rollouts or {}
    for session, episode in episodes:
        log = annotations.get(session)
        now = log.of(episode) if log is not None else None
        rollout = (session, episode) in rollouts
        if rollout and not (takeover_spans and rollouts[(session, episode)]):
            continue
        if now is not None and now.to_json():
            record[f"{session}/{episode}"] = now.to_json()
        if now is not None and (now.excluded or (now.label == "failure" and not keep_failed and not rollout)):
            continue
        kept.add((session, episode))
    return kept, record


def rollout_spans(layout: StoreLayout, episodes: list[tuple[str, str, int]]) -> tuple[
        dict[tuple[str, str], list[tuple[int, int]]], list[str]]:
    """The rollout episodes among (session, episode dir name, num_steps) and their takeover spans, with a problem
    line for each episode whose spans are unreadable (it then has none: a rollout never passes for a
    demonstration). Every episode of a session whose finalized marker says rollout is one; only those are read."""
    spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
    problems: list[str] = []
    rollout_sessions = {s for s, _, _ in episodes if is_rollout(read_finalized_marker(layout.session_dir(s)))}
    for session, episode, steps in episodes:
        if session not in rollout_sessions:
            continue
        path = layout.session_dir(session) / episode
        try:
            raw = read_root_attrs(path).get("takeover_spans")
        except StoreError as exc:
            raw = f"unreadable ({exc})"
        ok = isinstance(raw, list) and all(
            isinstance(sp, list) and len(sp) == 2 and all(isinstance(v, int) for v in sp) and 0 <= sp[0] < sp[1] <= steps
            for sp in raw)
        spans[(session, episode)] = [(a, b) for a, b in raw] if ok else []
        if not ok:
            problems.append(f"{path}: takeover_spans: expected [[start, stop], ...] within 0..{steps}, "
                            f"got {raw!r:.200}; its steps are left out")
    return spans, problems


def span_partial_stats(path: Path, spans: list[tuple[int, int]]) -> list[dict[str, PartialStats]]:
    """Partial statistics of only these steps of an episode (a rollout's takeover spans)."""
    r = EpisodeReader(path)
    return [episode_partial_stats(r.qpos[a:b], r.action[a:b]) for a, b in spans]


def build_manifest(
    episodes: list[tuple[str, str, str, int]],  # (session, episode dir name, content hash, num_steps)
    *,
    val_fraction: float = 0.1,
    spans: dict[tuple[str, str], list[tuple[int, int]]] | None = None,  # only these steps of these episodes
    **meta: Any,
) -> DatasetManifest:
    ordered = sorted(episodes)
    # A co-trained dataset splits each group on its own, so every group keeps training samples.
    parts = [set(g.sessions) for g in meta.get("groups") or []] or [{s for s, *_ in ordered}]
    splits = {}
    for sessions in parts:
        splits |= assign_splits([(f"{s}/{e}", h) for s, e, h, *_ in ordered if s in sessions], val_fraction)
    refs = []
    for s, e, h, n in ordered:
        for span in (spans or {}).get((s, e), [None]):  # a rollout's spans share its split: no train/val leak
            steps = int(n) if span is None else span[1] - span[0]
            refs.append(EpisodeRef(s, e, h, steps, splits[f"{s}/{e}"], None if span is None else tuple(span)))
    return DatasetManifest(episodes=refs, val_fraction=val_fraction, **meta)


def read_episode_entry(session: str, path: Path) -> EpisodeEntry:
    """What a co-trained dataset needs of an episode, read from disk (the pipeline has it from validation)."""
    r = EpisodeReader(path)
    return EpisodeEntry(session, Path(path).name, episode_content_hash(path), len(r), r.info.robot,
                        float(r.info.fps), list(r.info.joint_names), list(r.info.action_names), list(r.camera_names),
                        episode_partial_stats(r.qpos, r.action))


def build_cotraining_dataset(
    entries: list[EpisodeEntry],
    groups: list[GroupSpec],
    *,
    robot: str | None = None,
    camera_names: list[str] | None = None,
    val_fraction: float = 0.1,
    annotations: dict[str, dict[str, str]] | None = None,
) -> tuple[DatasetManifest, dict[str, NormStats]]:
    """A co-trained dataset of the groups' episodes among `entries` (curated already): manifest + statistics."""
    target, planned = plan_groups(entries, groups, robot=robot, camera_names=camera_names)
    sessions = {s for g in planned for s in g.sessions}
    rows = [(e.session, e.episode, e.content_hash, e.num_steps) for e in entries if e.session in sessions]
    manifest = build_manifest(rows, val_fraction=val_fraction, robot=target.robot, fps=target.fps,
                              joint_names=target.joint_names, action_names=target.action_names,
                              camera_names=target.camera_names, annotations=annotations or {}, groups=planned)
    return manifest, cotraining_stats(entries, planned, target)


def write_dataset(layout: StoreLayout, manifest: DatasetManifest, stats: dict[str, NormStats]) -> Path:
    """datasets/<id>/{manifest.json, stats.json}; same id = same content, so rewriting is harmless. With an
    object-store `data_url` the dataset is also put there, manifest last: a dataset without its manifest is not one
    (`load_dataset` refuses it), so a crash midway leaves nothing a reader takes for a dataset."""
    out = layout.dataset_dir(manifest.id)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "stats.json", stats_to_json(stats))
    write_json_atomic(out / "manifest.json", manifest.to_json())
    if layout.data_url:
        write_json_atomic(out / EPISODES_AT, {"store_url": layout.data_url})
        remote = RemoteStore.at(layout.data_url)
        key = remote.dataset_key(manifest.id)
        for name in ("stats.json", "manifest.json"):
            remote.fs.pipe_file(f"{key}/{name}", (out / name).read_bytes())  # one PUT each: whole or absent
    return out


def dataset_episodes_url(dataset_dir: str | Path) -> str | None:
    """The object-store root a dataset's episodes are read from: the store of a dataset opened by its URL
    (<store URL>/datasets/<id>), or the one recorded beside a local dataset built from a bucket; None: its own store."""
    if is_remote_root(str(dataset_dir)):
        return str(dataset_dir).rstrip("/").rsplit("/", 2)[0]
    try:
        return json.loads((Path(dataset_dir) / EPISODES_AT).read_text())["store_url"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{Path(dataset_dir) / EPISODES_AT}: expected {{\"store_url\": URL}} ({exc})") from None


def load_dataset(path: str | Path) -> tuple[DatasetManifest, dict[str, NormStats]]:
    """Load a dataset directory (datasets/<id>) written by `write_dataset`, or its URL in an object store."""
    if is_remote_root(str(path)):
        remote = RemoteStore.at(str(path))
        read = lambda name: remote.fs.cat_file(remote.key(name)).decode()  # noqa: E731
        path = str(path).rstrip("/")
    else:
        path = Path(path)
        read = lambda name: (path / name).read_text()  # noqa: E731
    try:
        manifest = DatasetManifest.from_json(json.loads(read("manifest.json")), f"{path}/manifest.json")
        stats = stats_from_json(json.loads(read("stats.json")))
    except FileNotFoundError as exc:
        raise StoreError(f"{path}: expected a dataset directory with manifest.json and stats.json ({exc})") from None
    return manifest, stats
