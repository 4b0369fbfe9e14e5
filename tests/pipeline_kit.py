"""Helpers for the pipeline tests: tiny synthetic episodes, a pre-migrated MLflow database, tiny run config."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from assets_store import CameraSpec, EpisodeInfo, EpisodeWriter, StoreLayout, finalize_session
from assets_store.checks import CheckSettings
from assets_store.episode_report import check_entry
from assets_store.sessions import session_entries
from pipeline.jobs import INGEST_JOB
from pipeline.partitions import SESSIONS

ROBOT = "sim-transfer-cube"
JOINTS = [f"{side}_{j}" for side in ("left", "right") for j in (
    "waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]
START = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.5, 0, -0.96, 1.16, 0, -0.3, 0, 0.5], dtype=np.float32)
H, W = 48, 64


def write_episode(layout: StoreLayout, session: str, seed: int, steps: int = 24) -> Path:
    rng = np.random.default_rng(seed)
    info = EpisodeInfo(robot=ROBOT, joint_names=JOINTS, fps=50.0, cameras=[CameraSpec("top", H, W)],
                       task="transfer_cube", operator="test")
    with EpisodeWriter(layout, session, info, workers=1) as w:
        q = START.copy()
        for t in range(steps):
            target = q + rng.normal(0, 0.01, size=14).astype(np.float32)
            target[[6, 13]] = np.clip(target[[6, 13]], 0, 1)
            img = np.full((H, W, 3), (t * 7) % 255, np.uint8)
            img[: H // 2, : W // 2] = rng.integers(0, 255, 3, dtype=np.uint8)
            w.add_step(q, target, 100.0 + t * 0.02, images={"top": img}, frame_info={"top": (float(t), 100.0 + t * 0.02)})
            q = target
    return w.final_path


def make_session(layout: StoreLayout, session: str, n: int, first_seed: int = 0, finalize: bool = True) -> list[Path]:
    paths = [write_episode(layout, session, first_seed + i) for i in range(n)]
    if finalize:
        finalize_session(layout, session)
    return paths


def corrupt_frame(episode: Path, step: int = 3) -> None:
    chunk = episode / "observations" / "images" / "top" / "c" / str(step) / "0" / "0" / "0"
    chunk.write_bytes(b"\xff\xd8 not a jpeg")


def install_mlflow_db(template: Path, layout: StoreLayout) -> None:
    layout.mlflow_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, layout.mlflow_dir / "mlflow.db")


TINY_TRAINING = {
    "preset": "small",
    "steps": 2,
    "time_budget_s": None,
    "batch_size": 2,
    "val_every": 2,
    "val_batches": 1,
    "checkpoint_every": 2,
    "log_every": 1,
    "num_workers": 0,
    "image_height": H,
    "image_width": W,
    "bf16": False,
    "hidden_dim": 32,
    "dim_feedforward": 64,
    "nheads": 2,
    "enc_layers": 1,
    "vae_enc_layers": 1,
    "chunk_size": 8,
    "latent_dim": 4,
    "pretrained_backbone": False,
}


def tiny_run_config(eval_episodes: int = 1, episode_len: int = 6, success_floor: float = -1.0, **training) -> dict:
    """A few training steps and a short evaluation. Such a policy never succeeds, so the success floor is off
    unless a test asks for it."""
    return {
        "ops": {
            "act_policy": {"config": {**TINY_TRAINING, **training}},
            "policy_evaluation": {"config": {"episodes": eval_episodes, "episode_len": episode_len}},
            "deployed_policy": {"config": {"success_floor": success_floor}},
        }
    }


def migrated_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite file that has been through its migrations once per test session (they cost 5-6 s)."""
    base = tmp_path_factory.getbasetemp() / "mlflow-template"
    db = base / "mlflow.db"
    if not db.exists():
        from mlflow.tracking import MlflowClient

        base.mkdir(parents=True, exist_ok=True)
        tmp = base / "building.db"
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()
        tmp.rename(db)
    return db


# ---------------------------------------------------------------------------------------------- running ingest
def ingest(defs, instance, session):
    if session not in instance.get_dynamic_partitions(SESSIONS):
        instance.add_dynamic_partitions(SESSIONS, [session])
    return defs.resolve_job_def(INGEST_JOB).execute_in_process(
        partition_key=session, instance=instance, raise_on_error=False
    )


def metadata(result, key):
    for ev in result.get_asset_materialization_events():
        if ev.materialization.asset_key.to_user_string() == key:
            return {k: v.value for k, v in ev.materialization.metadata.items()}
    return None


def check_results(result):
    return {e.event_specific_data.check_name: e.event_specific_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def check_one(layout, session, path):
    """Every check on one episode of a session, as raw_episodes runs them (without the cache)."""
    entry = next(e for e in session_entries(layout, session) if e.path == path)
    return check_entry(session, entry, CheckSettings())
