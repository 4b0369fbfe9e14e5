"""`aloha rollout --record SESSION`: the options' checks and the parts that store rollouts (labels, takeover)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from assets_store import StoreLayout, finalize_session
from assets_store.episode_reader import read_root_attrs
from assets_store.errors import StoreError
from assets_store.bundle import bundle_identity
from assets_store.rollouts import ROLLOUT_KIND, is_rollout
from assets_store.sessions import episode_dirs
from hardware.cli.common import console, fail, session_to_record
from hardware.registry import leader_arm_robots


def check_record_options(lay: StoreLayout, robot: str, record: Optional[str], label: Optional[str],
                         takeover: Optional[bool], simulated: bool, asynchronous: bool = False) -> None:
    """User errors before anything loads or connects."""
    from hardware.rollout_recording import LABELS

    if record is None:
        if label is not None or takeover:
            fail("--label and --takeover store rollouts: give --record SESSION", 2)
        return
    if label is not None and label not in LABELS:
        fail(f"--label {label!r}: expected one of {list(LABELS)}", 2)
    if label is not None and simulated:
        fail(f"--label: robot {robot!r} is a simulator; its rollouts are labelled by the task's own success", 2)
    if takeover and robot not in leader_arm_robots():
        fail(f"--takeover needs leader arms: --robot {' or '.join(leader_arm_robots())}, not {robot!r}", 2)
    if takeover and asynchronous:  # the leaders take over between synchronous policy steps
        fail("--takeover needs synchronous inference: leave out --async", 2)
    session_to_record(lay, record)
    if (attrs := _resumed(lay, record)) is not None and not is_rollout(attrs):  # never mixed with demonstrations
        fail(f"--record: session {record!r} holds demonstrations; record rollouts into a new session")


def finalize_left_open(lay: StoreLayout, record: Optional[str], bundle: Path) -> None:
    """`--episodes 0 --record SESSION`: finalize a rollout session an interrupted run left open, with no robot
    motion (the pipeline's sensor then counts it). Its rollouts must be of the --policy bundle."""
    if record is None:
        fail("--episodes 0 finalizes a rollout session left open: give --record SESSION", 2)
    attrs = _resumed(lay, record)
    if attrs is None:
        fail(f"--record: session {record!r} holds no rollout: nothing to finalize")
    rollout = attrs.get("rollout") if isinstance(attrs.get("rollout"), dict) else {}
    try:
        sha = bundle_identity(bundle)
        if rollout.get("bundle_manifest_sha256") != sha:
            fail(f"--record: session {record!r} holds rollouts of another bundle ({rollout.get('bundle_dir')}), "
                 f"not of --policy {bundle}")
        marker = finalize_session(lay, record, {
            "kind": ROLLOUT_KIND, "bundle_manifest_sha256": sha, "bundle_dir": rollout.get("bundle_dir"),
            "robot": rollout.get("robot"), "task": rollout.get("task"), "recorded_this_run": 0,
            "discarded_this_run": 0})
    except StoreError as exc:
        fail(f"--record: {exc}")
    console.print(f"[green]rollout session finalized[/]: {marker}")


def _resumed(lay: StoreLayout, session: str) -> Optional[dict]:
    """The first episode's attributes of an unfinalized session being resumed; None for a new session."""
    for _, path in episode_dirs(lay.session_dir(session))[:1]:
        try:
            return read_root_attrs(path)
        except StoreError as exc:
            fail(f"--record: {exc}")
    return None


def what_served(pol: Any, manifest: dict, champion_record: Optional[Path], bundle: Optional[Path] = None
                ) -> dict[str, str]:
    """Where the policy that ran came from, beyond its bundle directory: the policy server's address and what it
    ran, the bundle's MLflow run, and for `--policy champion` the promoted version (the champion path moves on the
    next promotion; the promotion record beside it says which version is there now, when it names `bundle`'s
    manifest: a record of another bundle, from a promotion landing meanwhile, is not recorded as this one's)."""
    out = {}
    if getattr(pol, "served_by", None):
        out["policy_server"] = str(pol.served_by)
    if manifest.get("mlflow_run_id"):
        out["mlflow_run_id"] = str(manifest["mlflow_run_id"])
    if champion_record is not None:
        try:
            record = json.loads(champion_record.read_text())
            version, named = record.get("version"), record.get("bundle_manifest_sha256")
        except (OSError, ValueError, AttributeError) as exc:
            console.print(f"[yellow]warning:[/] {champion_record}: no promoted version recorded with the rollouts "
                          f"(unreadable promotion record: {exc})")
        else:
            if named and bundle is not None and named != bundle_identity(bundle):
                console.print(f"[yellow]warning:[/] {champion_record}: describes another bundle than the one loaded "
                              "(a promotion landed meanwhile?); no promoted version recorded with the rollouts")
            elif version is not None:
                out["promoted_version"] = str(version)
    return out


def start_recording(bot: Any, lay: StoreLayout, record: str, *, bundle: Path, manifest: dict, robot: str,
                    task: Optional[str], k: Optional[float], query_every: int, asynchronous: bool, backend: str,
                    label: Optional[str], takeover: Optional[bool], keys: Any,
                    served: Optional[dict[str, str]] = None) -> tuple[Any, Any]:
    """The `RolloutRecorder` of this run and the human takeover (the leader arms) or None. `served`: what_served;
    with a policy server, `backend` is the server's (recorded in `policy_server`), not this command's."""
    from hardware.rollout_recording import OperatorKeys, RolloutRecorder, RolloutSettings, fixed_label, simulator_label

    settings = RolloutSettings(
        bundle_manifest_sha256=bundle_identity(bundle), bundle_dir=str(bundle),
        dataset_id=manifest.get("dataset_id") or None, task=task, temporal_ensemble_k=k, query_every=query_every,
        inference="async" if asynchronous else "sync",
        backend="policy_server" if (served or {}).get("policy_server") else backend, served=dict(served or {}),
    )
    resumed = (_resumed(lay, record) or {}).get("rollout") or {}
    if resumed and resumed.get("bundle_manifest_sha256") != settings.bundle_manifest_sha256:
        fail(f"--record: session {record!r} holds rollouts of another bundle ({resumed.get('bundle_dir')}); one "
             "session is one bundle: record into a new session")
    if bot.simulated:
        labeler = simulator_label
    elif label is not None:
        labeler = fixed_label(label)
    elif keys.enabled:
        labeler = OperatorKeys(keys.read, console.print)
    else:
        console.print("[yellow]warning:[/] stdin is not a terminal and no --label: rollouts are stored unlabelled "
                      "(label them with `aloha episodes label SESSION/N success|failure`)")
        labeler = fixed_label(None)
    human = None
    if takeover is not False and robot in leader_arm_robots() and not asynchronous:  # --async: refused if asked
        from hardware.aloha.takeover import LeaderTakeover

        human = LeaderTakeover(bot.rig)
        hold = human.config.hold_s
        console.print(f"  takeover: squeeze both leader grippers shut for {hold:g} s"
                      + (" or press [bold]t[/]" if keys.enabled else "") + " (the same again hands back)")
    return RolloutRecorder(bot, lay, record, settings, labeler), human
