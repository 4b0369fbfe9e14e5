"""Which upstream materialization a step works on: the one its own run made, else the latest one, said aloud.

File-writing assets hand their results downstream as materialization metadata (paths, run ids). Reading the
*latest* materialization would let an evaluation judge a policy that another, overlapping run trained; so a step
first takes what its own run materialized, and only when its run did not materialize that upstream (an
evaluation-only run, say) the latest one, naming the run it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagster import AssetExecutionContext, AssetKey, DagsterEventType, EventLogEntry, Failure


@dataclass(frozen=True)
class Upstream:
    """Plain metadata values of one materialization of `key`, and the run that made it."""

    key: str
    run_id: str
    same_run: bool
    metadata: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.metadata[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.metadata.get(name, default)


def _plain(entry: EventLogEntry) -> dict[str, Any]:
    mat = entry.asset_materialization
    return {k: v.value for k, v in mat.metadata.items()} if mat is not None else {}


def upstream(context: AssetExecutionContext, key: str) -> Upstream:
    """The materialization of `key` made by this run if there is one, else the latest (logged as such)."""
    asset_key = AssetKey(key)
    run_id = context.run.run_id
    own = [
        e for e in context.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_materialization is not None and e.asset_materialization.asset_key == asset_key
    ]
    if own:
        return Upstream(key, run_id, True, _plain(own[-1]))
    latest = context.instance.get_latest_materialization_event(asset_key)
    if latest is None or latest.asset_materialization is None:
        raise Failure(f"asset {key!r} has not been materialized yet: materialize it first (or select it in this run)")
    context.log.info(f"{key!r} was not materialized in this run: using its latest materialization, from run {latest.run_id}")
    return Upstream(key, latest.run_id, False, _plain(latest))
