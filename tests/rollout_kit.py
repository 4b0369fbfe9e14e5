"""Rollout sessions written the way `aloha rollout --record` stores them (the contract in assets_store.rollouts), so
the evaluation tests never depend on the recorder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assets_store import CameraSpec, EpisodeInfo, EpisodeWriter, StoreLayout, finalize_session
from assets_store.rollouts import ROLLOUT_KIND, rollout_attrs
from pipeline_kit import H, JOINTS, START, W

# Real success counts rollouts on robots only (not simulators): the emulated ALOHA stands in for the real one here.
REAL_ROBOT = "emulated"


def write_rollout(layout: StoreLayout, session: str, sha: str, label: str | None, steps: int = 6,
                  takeover_spans=None, robot: str = REAL_ROBOT, label_source: str = "operator") -> Path:
    info = EpisodeInfo(robot=robot, joint_names=JOINTS, fps=50.0, cameras=[CameraSpec("top", H, W)],
                       task="transfer_cube", operator="test")
    with EpisodeWriter(layout, session, info, workers=1) as w:
        for t in range(steps):
            img = np.full((H, W, 3), (t * 31) % 255, np.uint8)
            w.add_step(START, START, 100.0 + t * 0.02, images={"top": img}, frame_info={"top": (float(t), 100.0 + t * 0.02)})
        attrs = rollout_attrs(sha, f"/bundles/{sha[:8]}", robot=robot, task="transfer_cube", temporal_ensemble_k=0.01,
                              label=label, label_source=None if label is None else label_source,
                              takeover_spans=takeover_spans)
        path = w.close(extra_attrs=attrs)
    return path


def make_rollout_session(layout: StoreLayout, session: str, sha: str, labels: list[str | None],
                         finalize: bool = True, **rollout) -> list[Path]:
    """One episode per label (success / failure / None for unlabelled), finalized as a rollout session of `sha`;
    `rollout`: write_rollout's options (robot, label_source, takeover_spans) for every episode."""
    paths = [write_rollout(layout, session, sha, label, **rollout) for label in labels]
    if finalize:
        finalize_session(layout, session, {"kind": ROLLOUT_KIND, "bundle_manifest_sha256": sha})
    return paths
