"""What a user sees in the Dagster UI: every launchpad field described, descriptions that render, the MLflow links
at the configured UI address."""

from __future__ import annotations

import re

import numpy as np
import pytest
from dagster._config import ConfigTypeKind
from matplotlib.colors import to_hex

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


@pytest.mark.parametrize("n, colors, styles", [(6, 6, 1), (14, 7, 2), (16, 8, 2), (25, 9, 3)])
def test_every_joint_gets_its_own_colour_and_line_style(n, colors, styles):
    from pipeline.plots import joint_styles

    picked = joint_styles(n)
    assert len(set(picked)) == n  # no two joints alike
    assert len({c for c, _ in picked}) == colors and len({ls for _, ls in picked}) == styles
    if n == 14:  # bimanual: the left arm solid, the right dashed, the same joint of both arms one colour
        assert [ls for _, ls in picked] == ["-"] * 7 + ["--"] * 7 and picked[0][0] == picked[7][0]


def test_joint_plot_draws_each_joint_distinctly():
    from pipeline.plots import joint_trajectories, joint_trajectories_figure

    names = [f"{arm}_{j}" for arm in ("left", "right") for j in range(7)]
    qpos = np.linspace(0, 1, 30)[:, None] * np.arange(1, 15)
    fig = joint_trajectories_figure(qpos, qpos + 0.1, names, fps=50.0, title="s/episode_000000")
    assert 6.0 <= fig.get_figwidth() <= 12.0  # drawn for the UI's metadata column, not a poster
    for ax in fig.axes:
        drawn = {(to_hex(line.get_color()), line.get_linestyle()) for line in ax.get_lines()}
        assert len(drawn) == 14
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == names
    assert joint_trajectories(qpos, None, names, 50.0, "t").startswith("![t](data:image/png;base64,")


def test_failures_are_visible_in_the_success_plot():
    from hardware.rollout import RolloutEpisode, RolloutReport
    from pipeline.plots import FAILURE_COLOR, success_per_seed, success_per_seed_figure

    episodes = [RolloutEpisode(seed=1000 + i, success=i % 3 != 0, max_reward=4.0 if i % 3 else 0.0, steps=10,
                               seconds=1.0, late_steps=0) for i in range(9)]
    report = RolloutReport("sim_transfer_cube", episodes, max_reward=4.0)
    ax = success_per_seed_figure(report).axes[0]
    red = to_hex(FAILURE_COLOR)
    assert sum(to_hex(bar.get_facecolor()) == red for bar in ax.patches) == 3
    # a failure that never scored has no bar: an x at the axis and a red seed label mark it
    (marks,) = ax.collections
    assert sorted(marks.get_offsets()[:, 0].tolist()) == [0.0, 3.0, 6.0]
    assert [t.get_text() for t in ax.get_xticklabels() if to_hex(t.get_color()) == red] == ["1000", "1003", "1006"]
    assert "67%" in ax.get_title()
    assert success_per_seed(report).startswith("![success per seed](data:image/png;base64,")


class ManualClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_evaluation_logs_periodic_lines_with_the_step_rate():
    from hardware.rollout import RolloutEpisode
    from pipeline.rollout_progress import RolloutProgress

    lines: list[str] = []
    clock = ManualClock()
    progress = RolloutProgress(lines.append, episodes=2, steps_per_episode=400, every_s=10.0, clock=clock)
    for step in range(1, 201):  # 16 steps/s from the first step on
        clock.now = 100.0 + (step - 1) / 16
        progress.on_step(step)
    progress.on_episode(RolloutEpisode(seed=1000, success=True, max_reward=4.0, steps=200, seconds=12.5, late_steps=0))
    assert lines[:-1] == ["rollout 1/2: step 161/400, 16.0 steps/s"]  # one line per 10 s within an episode
    assert lines[-1] == "rollout 1/2 seed 1000: success=True max_reward=4.0, 200 steps in 12.5 s, 16.0 steps/s"


def test_rollouts_report_every_step_to_the_evaluation_log():
    from hardware.rollout import run_rollouts
    from hardware.sim import ScriptedDemonstrator, make_sim_robot
    from pipeline.rollout_progress import RolloutProgress

    lines: list[str] = []
    steps: list[int] = []
    progress = RolloutProgress(lines.append, episodes=2, steps_per_episode=12, every_s=0.0)

    def on_step(done: int) -> None:
        steps.append(done)
        progress.on_step(done)

    run_rollouts(make_sim_robot("transfer_cube", cameras=[]), ScriptedDemonstrator(), [0, 1], num_steps=12,
                 on_step=on_step, on_episode=progress.on_episode)
    assert steps == list(range(1, 13)) * 2
    assert sum("steps/s" in line for line in lines) == 26  # 24 step lines, 2 episode lines
    assert lines[12].startswith("rollout 1/2 seed 0: success=False max_reward=")
    assert lines[-2].startswith("rollout 2/2: step 12/12, ") and lines[-1].startswith("rollout 2/2 seed 1: ")


def test_aloha_rollout_shows_a_bar_over_the_episode_steps():
    from hardware.cli.rollout import StepBar

    clock = ManualClock()
    bar = StepBar(episodes=2, steps=400, clock=clock)
    task = bar.progress.tasks[0]
    with bar:
        for step in range(1, 101):
            clock.now = 100.0 + (step - 1) / 64
            bar.step(step)
        assert (task.completed, task.total, task.description) == (100, 400, "episode 1/2")
        assert task.fields["rate"] == 64.0
        bar.next_episode()
        assert (task.completed, task.description) == (0, "episode 2/2")
        bar.next_episode()  # after the last episode: it stays at the last one
        assert task.description == "episode 2/2"


def test_evaluation_logs_loop_timing_only_when_the_loop_ran_in_real_time(tmp_path):
    from bundle_kit import POLICY_HW, tiny_sim_bundle
    from pipeline.assets.evaluation import EvaluationConfig, closed_loop_evaluation, loop_metrics

    bundle = tiny_sim_bundle(tmp_path / "b", ["top"], robot="sim-transfer-cube")
    base = dict(episodes=1, episode_len=6, videos=0)
    virtual = closed_loop_evaluation(bundle, "sim-transfer-cube", EvaluationConfig(**base), POLICY_HW)
    metadata, metrics = loop_metrics(virtual)
    # On the virtual clock every period is the nominal 20 ms: nothing measured is claimed, in Dagster or MLflow.
    assert not virtual.realtime and "virtual clock" in metadata["loop_clock"]
    assert "loop_period_ms_p99" not in metadata and "late_steps" not in metadata and metrics == {}

    report = closed_loop_evaluation(bundle, "sim-transfer-cube",
                                    EvaluationConfig(**base, asynchronous=True, backend="onnx"), POLICY_HW)
    metadata, metrics = loop_metrics(report)
    assert report.realtime and report.inference == "async"  # asynchronous implies real time
    assert metadata["loop_clock"] == "real time (async inference)"
    assert set(metrics) == {"eval/loop_period_ms_p50", "eval/loop_period_ms_p99", "eval/late_steps",
                            "eval/chunk_age_steps_p50", "eval/chunk_age_steps_p99", "eval/fallback_steps"}
    assert metrics["eval/loop_period_ms_p50"] > 0 and metadata["fallback_steps"] == report.fallback_steps

    timed = closed_loop_evaluation(bundle, "sim-transfer-cube", EvaluationConfig(**base, realtime=True), POLICY_HW)
    assert timed.realtime and set(loop_metrics(timed)[1]) == {
        "eval/loop_period_ms_p50", "eval/loop_period_ms_p99", "eval/late_steps"}
    with pytest.raises(ValueError, match="query_every"):
        closed_loop_evaluation(bundle, "sim-transfer-cube", EvaluationConfig(**base, asynchronous=True, query_every=2))
