"""Lineage: a step reads the upstream materialization its own run made, not whatever run finished last."""

from __future__ import annotations

from dagster import AssetMaterialization, DagsterInstance, MaterializeResult, asset, materialize

from pipeline.lineage import upstream


def test_a_step_reads_its_own_runs_upstream_even_when_another_run_materialized_it_later(tmp_path):
    seen = {}

    @asset
    def trained(context) -> MaterializeResult:
        return MaterializeResult(metadata={"policy": f"policy-of-{context.run.run_id}"})

    @asset(deps=[trained])
    def evaluated(context) -> MaterializeResult:
        # An overlapping run finishes its training between this run's training and its evaluation.
        context.instance.report_runless_asset_event(AssetMaterialization("trained", metadata={"policy": "other-run"}))
        up = upstream(context, "trained")
        seen.update(policy=up["policy"], same_run=up.same_run, run_id=up.run_id, own=context.run.run_id)
        return MaterializeResult()

    with DagsterInstance.ephemeral() as instance:
        result = materialize([trained, evaluated], instance=instance)
        assert result.success
        assert seen["policy"] == f"policy-of-{seen['own']}"
        assert seen["same_run"] and seen["run_id"] == seen["own"]

        # A run that does not materialize the upstream takes the latest one, and says which run made it.
        result = materialize([evaluated], instance=instance, selection=[evaluated.key])
        assert result.success
        assert seen["policy"] == "other-run" and not seen["same_run"]


def test_a_missing_upstream_is_a_clear_failure():
    @asset
    def never(context) -> MaterializeResult:
        return MaterializeResult()

    @asset(deps=[never])
    def reader(context) -> MaterializeResult:
        upstream(context, "never")
        return MaterializeResult()

    with DagsterInstance.ephemeral() as instance:
        result = materialize([never, reader], instance=instance, selection=[reader.key], raise_on_error=False)
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.error
        assert "has not been materialized yet" in failure.message
