"""Crash recovery: find what a crashed writer left behind and either recover it (complete) or remove it (partial).

`aloha episodes doctor` runs it over the whole store; every new `EpisodeWriter` runs it over its session first.
A finalized session is never changed: its leftovers are reported and kept (recovering one would add an episode
its marker does not list, after the pipeline may have ingested the session).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from assets_store.layout import (
    COMPLETE_MARKER, TMP_PREFIX, StoreLayout, TempName, host_tag, parse_episode_dirname, parse_temp_dirname,
)
from assets_store.sessions import is_session_finalized, list_sessions


@dataclass
class SweepAction:
    path: Path
    action: str  # "recovered" | "removed" | "skipped (live writer)" | "kept (final name taken)" | "kept (session finalized)"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action}: {self.path}" + (f" ({self.detail})" if self.detail else "")


def _owner_alive(temp: TempName | None) -> bool:
    if temp is None:
        return False
    if temp.host != host_tag():
        return True  # another machine's writer on shared storage: never touch it
    try:
        pid_i = int(temp.pid)
    except ValueError:
        return False
    if pid_i == os.getpid():
        return True
    try:
        os.kill(pid_i, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_session(session_dir: Path) -> list[SweepAction]:
    actions: list[SweepAction] = []
    if not Path(session_dir).is_dir():
        return actions
    finalized = is_session_finalized(session_dir)
    for entry in sorted(os.scandir(session_dir), key=lambda e: e.name):
        if not entry.name.startswith(TMP_PREFIX) or not entry.is_dir():
            continue
        path = Path(entry.path)
        temp = parse_temp_dirname(entry.name)
        if temp is None or parse_episode_dirname(temp.final_name) is None:
            # Only what a writer of ours names so is ever touched: a user's ".tmp-..." folder is theirs.
            actions.append(SweepAction(path, "kept (not a writer's temporary directory)",
                                       "its name is not one the episode writer gives; nothing was changed"))
            continue
        if _owner_alive(temp):
            actions.append(SweepAction(path, "skipped (live writer)"))
            continue
        if finalized:
            actions.append(SweepAction(
                path, "kept (session finalized)",
                "left by a crashed writer before the session was finalized; the finalized session is not changed",
            ))
            continue
        final = path.parent / temp.final_name
        if (path / COMPLETE_MARKER).is_file() and (path / "zarr.json").is_file():
            if final.exists():
                actions.append(SweepAction(path, "kept (final name taken)", f"{final.name} exists"))
                continue
            os.rename(path, final)
            actions.append(SweepAction(final, "recovered", "writer finished but crashed before the rename"))
        else:
            shutil.rmtree(path, ignore_errors=True)
            actions.append(SweepAction(path, "removed", "partial episode of a crashed writer"))
    return actions


def sweep_store(layout: StoreLayout) -> list[SweepAction]:
    out = []
    for session in list_sessions(layout):
        out.extend(sweep_session(layout.session_dir(session)))
    return out
