"""Rollouts stored as episodes: the attributes that mark one, and (below) the readers that count what they scored.

A rollout session is an ordinary session: the finalized marker says `"kind": "rollout"` and which bundle ran
(`bundle_manifest_sha256`, the sha256 of the bundle's manifest.json); each episode's root attributes carry the same
kind, the rollout settings, the operator's or simulator's label and the steps a human drove (takeover spans).
"""

from __future__ import annotations

from typing import Any, Mapping

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
) -> dict[str, Any]:
    """The root attributes of one rollout episode (`EpisodeWriter.close(extra_attrs=...)`), as the contract fixes."""
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
        },
        "label": label,
        "label_source": label_source,
        "takeover_spans": [[int(a), int(b)] for a, b in (takeover_spans or [])],
    }


def is_rollout(attrs: Mapping[str, Any] | None) -> bool:
    """An episode's (or a finalized marker's) attributes say it is a rollout, not a demonstration."""
    return bool(attrs) and attrs.get("kind") == ROLLOUT_KIND
