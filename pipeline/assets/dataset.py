"""dataset: every validated session merged into one manifest + normalization statistics; id = manifest hash.

Session annotations (`aloha episodes label|exclude`) decide what is in: excluded episodes are out, episodes labelled
failure are out unless the run keeps them; the manifest records the annotations that applied, so they change the id.
Rollout sessions (`aloha rollout --record`) are out unless `takeover_spans`: then the steps a person drove during
them come in as demonstrations (only those steps).

Statistics come from the per-episode partial sums cached by validation, so adding a session costs O(episodes)
arithmetic and never re-reads the episodes of earlier sessions.

With `groups` the dataset is co-trained (assets_store/cotraining.py): groups of sessions with sampling weights,
conformed to a target robot (`robot`, `cameras`); the metadata shows each group's weight, padding and cameras.
"""


import json
from typing import Optional

from dagster import AssetExecutionContext, AutomationCondition, Config, DataVersion, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets_store.annotations import read_annotations
from assets_store.cotraining import EpisodeEntry, GroupSpec
from assets_store.dataset import (
    build_cotraining_dataset, build_manifest, curate, rollout_spans, span_partial_stats, write_dataset,
)
from assets_store.errors import StoreError
from assets_store.stats import PartialStats, dataset_stats
from pipeline import metadata_format as fmt
from pipeline.assets.ingest import validated_episodes
from pipeline.partitions import SESSIONS
from pipeline.resources import StoreResource

DATASET_GROUP = "dataset"


# Rebuilt (with the default config) whenever a session finishes validating, once no ingest is still running, so the
# UI always shows a dataset covering every session. `eager()` minus its "all deps present" clause: a dynamic
# partition whose ingest failed must not block the datasets of later sessions, and a fresh instance with no session
# yet requests nothing. Needs the daemon (`aloha ui` / `dagster dev` run it).
DATASET_AUTOMATION = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("rebuild when a session validates")


class DatasetGroupConfig(Config):
    name: str = Field(description="The group's name (e.g. mobile, static).")
    sessions: list[str] = Field(description="Its sessions.")
    weight: float = Field(1.0, description="Sampling weight: the group's share of each batch is weight / sum.")
    cameras: dict[str, str] = Field({}, description=(
        "Cameras this group's rig names differently: {target camera: the group's camera}, e.g. {cam_high: top} for "
        "the simulator's static sessions. Empty: matched by name."))


class DatasetConfig(Config):
    """Which validated episodes the dataset holds, how they split into training and validation, and (co-training)
    which groups of sessions it samples at which weights."""

    val_fraction: float = Field(0.1, description="Share of the episodes held out for validation (at least one where there are two or more; 0: none).")
    robot: Optional[str] = Field(None, description=(
        "Without groups: keep only this robot's episodes (required when sessions mix robots; empty: the one robot "
        "recorded). With groups: the target robot (its actions, joints and cameras); empty: the first group's robot."))
    sessions: list[str] = Field([], description="Sessions to include. Empty: every session validated so far.")
    keep_failed_demos: bool = Field(False, description=(
        "Keep episodes labelled failure in the sessions' annotation logs (excluded episodes stay out)."))
    groups: list[DatasetGroupConfig] = Field([], description=(
        "Co-training: groups of sessions with sampling weights (Mobile ALOHA: mobile 0.5 / static 0.5). Empty: one "
        "dataset of the sessions, sampled uniformly."))
    cameras: list[str] = Field([], description="With groups: the target's cameras; empty: all of the target robot's.")
    takeover_spans: bool = Field(False, description=(
        "Bring in the steps a person drove during recorded rollouts (human takeover) as demonstrations; rollouts "
        "are otherwise never in a dataset."))


@asset(
    group_name=DATASET_GROUP,
    deps=[validated_episodes],
    description="Manifest (episodes, content hashes, train/val split) and merged statistics of all validated sessions.",
    kinds={"json"},
    automation_condition=DATASET_AUTOMATION,
)
def dataset(context: AssetExecutionContext, config: DatasetConfig, store: StoreResource) -> MaterializeResult:
    layout = store.layout
    known = context.instance.get_dynamic_partitions(SESSIONS)
    if config.groups:  # a co-trained dataset: its sessions are its groups'
        if config.sessions:
            raise Failure("set either sessions or groups: a co-trained dataset takes its sessions from its groups")
        sessions = [s for g in config.groups for s in g.sessions]
        unknown = [s for s in sessions if not layout.session_summary_path(s).is_file()]
        if unknown:
            raise Failure(f"groups: sessions {unknown} have not been validated (run the ingest job first)")
    else:
        if config.cameras:
            raise Failure("cameras: chooses a co-trained dataset's target cameras; set groups too")
        sessions = [s for s in (config.sessions or known) if layout.session_summary_path(s).is_file()]
    if not sessions:
        raise Failure("no validated session yet: record a session, finalize it and run the ingest job")

    summaries = {s: json.loads(layout.session_summary_path(s).read_text()) for s in sorted(sessions)}
    logs, log_problems = {}, []
    for session in summaries:
        try:
            logs[session] = read_annotations(layout, session)
        except StoreError as exc:  # an unreadable log: that session's annotations cannot be honoured
            raise Failure(str(exc)) from None
        log_problems += logs[session].problems
    for problem in log_problems:  # one bad line is named; the rest of its log still applies
        context.log.warning(f"annotation log: {problem}")
    candidates = [(s, ep) for s, summary in summaries.items() for ep in summary["episodes"]
                  if config.groups or not config.robot or ep["robot"] == config.robot]
    try:  # rollouts are never mixed with demonstrations unless asked
        rollouts, rollout_problems = rollout_spans(
            layout, [(s, ep["episode"], ep["num_steps"]) for s, ep in candidates])
    except StoreError as exc:  # an unreadable finalized marker
        raise Failure(str(exc)) from None
    for problem in rollout_problems:
        context.log.warning(f"rollout: {problem}")
    kept, curation = curate([(s, ep["episode"]) for s, ep in candidates], logs, keep_failed=config.keep_failed_demos,
                            rollouts=rollouts, takeover_spans=config.takeover_spans)
    spans = {key: rollouts[key] for key in kept if key in rollouts}

    rows, partials, per_session = [], [], {s: 0 for s in summaries}
    meta_of: dict[str, dict] = {}
    for session, ep in candidates:
        if (session, ep["episode"]) in kept:
            rows.append((session, ep["episode"], ep["content_hash"], ep["num_steps"]))
            key = (session, ep["episode"])
            if key in spans:  # a rollout: the statistics of its takeover steps only
                partials += span_partial_stats(layout.session_dir(session) / ep["episode"], spans[key])
            else:
                partials.append({k: PartialStats.from_dict(v) for k, v in ep["partial_stats"].items()})
            meta_of.setdefault(
                json.dumps([ep["robot"], ep["joint_names"], ep["action_names"], ep["camera_names"], ep["fps"]]),
                ep,
            )
            per_session[session] += 1
    if not rows:
        raise Failure(f"no episodes match robot={config.robot!r} in sessions {sessions}"
                      + (f" once annotations apply ({len(curation)} annotated)" if curation else ""))
    if config.groups:
        if spans:  # a span is a slice of an episode; the co-training planner conforms whole episodes
            raise Failure("dataset config: takeover_spans cannot be combined with groups yet; build the takeover "
                          "dataset without groups")
        entries = [EpisodeEntry.from_summary(s, ep) for s, ep in candidates if (s, ep["episode"]) in kept]
        try:
            manifest, stats = build_cotraining_dataset(
                entries, [GroupSpec(g.name, list(g.sessions), g.weight, dict(g.cameras)) for g in config.groups],
                robot=config.robot, camera_names=list(config.cameras) or None, val_fraction=config.val_fraction, annotations=curation)
        except StoreError as exc:  # a group that cannot be conformed to the target: named, nothing written
            raise Failure(str(exc)) from None
    elif len(meta_of) > 1:
        kinds = sorted({(m["robot"], tuple(m["camera_names"])) for m in meta_of.values()})
        raise Failure(
            f"sessions disagree on robot/joints/cameras/fps {kinds}; pick one with the dataset config `robot`"
        )
    else:
        ref = next(iter(meta_of.values()))
        manifest = build_manifest(
            rows,
            val_fraction=config.val_fraction,
            robot=ref["robot"],
            fps=float(ref["fps"]),
            joint_names=list(ref["joint_names"]),
            action_names=list(ref["action_names"]),
            camera_names=list(ref["camera_names"]),
            annotations=curation,
            spans=spans,
            takeover_spans=bool(spans),  # the id changes only when a takeover span came in
        )
        stats = dataset_stats(partials)
    out = write_dataset(layout, manifest, stats)
    context.log.info(f"dataset {manifest.id}: {len(rows)} episodes from {len(sessions)} sessions -> {out}")
    qpos = stats["qpos"]
    stats_md = "| joint | mean | std | min | max |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {n} | " + " | ".join(fmt.number(v[i]) for v in (qpos.mean, qpos.std, qpos.min, qpos.max)) + " |"
        for i, n in enumerate(manifest.joint_names)
    )
    return MaterializeResult(
        metadata={
            "dataset_id": manifest.id,
            "dataset_dir": MetadataValue.path(str(out)),
            "robot": manifest.robot,
            "episodes": len(manifest.episodes),
            "episodes_train": len(manifest.train),
            "episodes_val": len(manifest.val),
            "steps": manifest.num_steps,
            "recorded_time": fmt.duration(manifest.num_steps / manifest.fps),
            "sessions": MetadataValue.json(per_session),
            "cameras": ", ".join(manifest.camera_names),
            "qpos_stats": MetadataValue.md(stats_md),
            "episodes_left_out": len(candidates) - len(rows),
            "takeover_steps": sum(b - a for spans_of in spans.values() for a, b in spans_of),
            "annotations": MetadataValue.json(curation),
            "annotation_problems": MetadataValue.json(log_problems),
            **({"groups": MetadataValue.json([g.to_json() for g in manifest.groups]),
                "sampling": ", ".join(f"{g.name} {g.weight:g}" for g in manifest.groups),
                "padded_actions": MetadataValue.json({g.name: g.padded_actions for g in manifest.groups})}
               if manifest.groups else {}),
        },
        data_version=DataVersion(manifest.id),
    )
