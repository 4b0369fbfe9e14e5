"""The pipeline's side of the per-episode checks (`assets_store.checks`, run by `assets_store.episode_report`):
reports cached next to the store, keyed by the episode's content hash and the check settings (an unchanged episode is
never read twice), and the quarantine record of every episode that fails.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from assets_store.checks import CheckSettings
from assets_store.dataset import episode_content_hash
from assets_store.episode_report import EpisodeReport, check_entry
from assets_store.hashing import write_json_atomic
from assets_store.layout import StoreLayout
from assets_store.sessions import SessionEntry


def validate_cached(
    session: str, entry: SessionEntry, settings: CheckSettings, cache_file: Path
) -> tuple[EpisodeReport, bool]:
    """(report, reused): reuse the cached report when the content hash and settings are unchanged.

    The report is always written to `cache_file`, also for an entry that is not a readable episode: `validated_episodes`
    reads every entry's report from there.
    """
    content_hash = None
    if not entry.problem:
        try:
            content_hash = episode_content_hash(entry.path)
        except OSError:
            pass  # check_entry reports the unreadable file
    if content_hash and cache_file.is_file():
        try:
            cached = EpisodeReport.from_json(json.loads(cache_file.read_text()))
            if cached.content_hash == content_hash and cached.settings_key == settings.key():
                return cached, True
        except (ValueError, TypeError, KeyError):
            pass  # a stale or foreign file: recompute
    report = check_entry(session, entry, settings, content_hash)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cache_file, report.to_json())
    return report, False


def write_quarantine_records(layout: StoreLayout, session: str, reports: list[EpisodeReport], run_id: str) -> None:
    """A record per failed episode (a record, not a move: the episode stays where the recorder put it, so nothing is
    ever lost); the record of an episode that passes now (e.g. looser settings) is removed."""
    for report in reports:
        record = layout.quarantine_record_path(session, report.episode)
        if report.passed:
            record.unlink(missing_ok=True)
            continue
        record.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            record,
            {
                "session": session,
                "episode": report.episode,
                "path": report.path,
                "content_hash": report.content_hash,
                "reasons": report.reasons,
                "checks": report.checks,
                "quarantined_at": time.time(),
                "dagster_run_id": run_id,
            },
        )
