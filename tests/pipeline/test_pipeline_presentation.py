"""What a user sees in the Dagster UI: every launchpad field described, descriptions that render, the MLflow links
at the configured UI address."""

from __future__ import annotations

import re

import pytest
from dagster._config import ConfigTypeKind

from pipeline.definitions import build_definitions, defs
from pipeline.resources import DEFAULT_MLFLOW_UI, MlflowResource, StoreResource

SHAPES = (ConfigTypeKind.STRICT_SHAPE, ConfigTypeKind.PERMISSIVE_SHAPE, ConfigTypeKind.SELECTOR)
WRAPPERS = (ConfigTypeKind.ARRAY, ConfigTypeKind.NONEABLE, ConfigTypeKind.MAP)


def config_fields(config_type, path: tuple[str, ...] = ()):
    """(path, description) of every field below a resolved Dagster config type; an `Any` slot is what Dagster puts
    where an asset declares no config, so there is nothing to fill in and nothing to describe."""
    if config_type.kind in SHAPES:
        for name, field in config_type.fields.items():
            if field.config_type.kind is ConfigTypeKind.ANY:
                continue
            yield path + (name,), field.description
            yield from config_fields(field.config_type, path + (name,))
    elif config_type.kind in WRAPPERS:
        yield from config_fields(config_type.inner_type, path)


def launchpad_fields():
    """Every field the launchpad offers for our assets and resources, per job (Dagster's own execution, logger and
    io_manager settings are not ours to describe)."""
    ours = set(defs.resources)
    for job in defs.get_repository_def().get_all_jobs():
        top = job.run_config_schema.config_type.fields
        for asset_name, node in top["ops"].config_type.fields.items():
            for path, text in config_fields(node.config_type, ("ops", asset_name)):
                yield job.name, path, text
        for name, resource in top["resources"].config_type.fields.items():
            if name in ours:
                for path, text in config_fields(resource.config_type, ("resources", name)):
                    yield job.name, path, text


def test_every_launchpad_field_has_a_description():
    fields = list(launchpad_fields())
    paths = {".".join(path) for _, path, _ in fields}
    # the walk reaches what it must judge: generated training fields, the other assets' configs, the resources
    assert {"ops.act_policy.config.batch_size", "ops.act_policy.config.hidden_dim",
            "ops.policy_evaluation.config.episodes", "ops.dataset.config.val_fraction",
            "ops.raw_episodes.config.rate_tolerance", "ops.deployed_policy.config.force",
            "resources.mlflow.config.ui_url", "resources.store.config.root"} <= paths, sorted(paths)
    missing = sorted({f"{job}: {'.'.join(path)}" for job, path, text in fields if not (text or "").strip()})
    assert missing == [], "fields without a description:\n" + "\n".join(missing)


RAW_TAG = re.compile(r"<[A-Za-z/!]")


def rendered_text_outside_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text)  # markdown shows code spans literally


def ui_descriptions():
    """Every description the UI renders as markdown: assets, checks, jobs, sensors, resources, config fields."""
    repo = defs.get_repository_def()
    for key, assets_def in repo.assets_defs_by_key.items():
        yield f"asset {key.to_user_string()}", assets_def.descriptions_by_key.get(key)
        for spec in assets_def.check_specs:
            yield f"check {spec.name}", spec.description
    for job in repo.get_all_jobs():
        yield f"job {job.name}", job.description
    for sensor in repo.sensor_defs:
        yield f"sensor {sensor.name}", sensor.description
    for name, resource in defs.resources.items():
        yield f"resource {name}", resource.get_resource_definition().description
    for job, path, text in launchpad_fields():
        yield f"{job}: {'.'.join(path)}", text


def test_descriptions_render_without_raw_html_tags():
    raw = [f"{what}: {text!r}" for what, text in ui_descriptions() if text and RAW_TAG.search(rendered_text_outside_code(text))]
    assert raw == [], "a <word> in markdown is swallowed as an HTML tag:\n" + "\n".join(raw)
    descriptions = dict(ui_descriptions())
    assert descriptions["asset deployed_policy"]  # the one that said <store>/deploy/


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"ui_url": "https://mlflow.example.com/"}, "https://mlflow.example.com"),
        ({"tracking_uri": "http://mlflow.aloha.svc:5005"}, "http://mlflow.aloha.svc:5005"),
        ({"tracking_uri": "http://mlflow.aloha.svc:5005", "ui_url": "https://ui.example.com"}, "https://ui.example.com"),
        ({}, DEFAULT_MLFLOW_UI),
    ],
)
def test_mlflow_links_follow_the_configured_ui_address(tmp_path, config, expected):
    mlflow = MlflowResource(store=StoreResource(root=str(tmp_path)), **config)
    assert mlflow.run_url("3", "abc") == f"{expected}/#/experiments/3/runs/abc"
    assert mlflow.model_version_url("aloha_act", 2) == f"{expected}/#/models/aloha_act/versions/2"


def test_build_definitions_passes_the_ui_address_on(tmp_path):
    built = build_definitions(str(tmp_path), mlflow_ui_url="http://mlflow.lab:8080")
    assert built.resources["mlflow"].run_url("1", "r") == "http://mlflow.lab:8080/#/experiments/1/runs/r"


def test_metadata_values_are_formatted_for_people():
    from pipeline import metadata_format as fmt

    assert [fmt.duration(s) for s in (0.35, 4.21, 125.4, 3725.0, None, float("nan"))] == [
        "350 ms", "4.2 s", "2 min 05 s", "1 h 02 min", "n/a", "n/a"]
    assert [fmt.percent(r) for r in (0.94, 1 / 3, 1.0, 0.0, None)] == ["94%", "33.33%", "100%", "0%", "n/a"]
    assert fmt.share(47, 50) == "47 of 50 (94%)" and fmt.share(0, 0) == "0 of 0 (n/a)"
    assert fmt.significant(0.0123456789) == 0.01235 and fmt.significant(123456.7) == 123500.0
    assert isinstance(fmt.significant(2), float) and fmt.significant(float("inf")) == float("inf")
    assert fmt.number(0.000123456) == "0.0001235" and fmt.number(None) == "n/a"
