"""The embedded Dagster instance: SQLite storage under <store>/dagster_home, telemetry off, one training at a time."""

from __future__ import annotations

import os
from pathlib import Path

from assets_store import StoreLayout
from hardware.sim.gl import gl_backend

REPO_ROOT = Path(__file__).resolve().parents[1]

DAGSTER_YAML = """\
# Written by the aloha pipeline (pipeline/instance.py). SQLite storage lives next to this file by default.
telemetry:
  enabled: false
concurrency:
  pools:
    # Only the training asset has a pool ("training"): at most one training step runs at a time.
    default_limit: 1
"""


def prepare_dagster_home(layout: StoreLayout) -> Path:
    """Create DAGSTER_HOME with our dagster.yaml (kept if the user edited it)."""
    home = layout.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def dagster_env(layout: StoreLayout, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a Dagster process: instance, store and MLflow all under the same absolute store root."""
    env = dict(os.environ if base is None else base)
    env["DAGSTER_HOME"] = str(prepare_dagster_home(layout))
    env["ALOHA_STORE"] = str(layout.root)
    env["DAGSTER_DISABLE_TELEMETRY"] = "1"
    env["MUJOCO_GL"] = gl_backend(env)  # the simulator's own choice, so every process renders alike
    return env


def workspace_file(layout: StoreLayout) -> Path:
    """The repository's workspace.yaml; an installed (non-editable) package gets an equivalent one in DAGSTER_HOME."""
    repo = REPO_ROOT / "workspace.yaml"
    if repo.is_file():
        return repo
    generated = prepare_dagster_home(layout) / "workspace.yaml"
    generated.write_text(
        "load_from:\n  - python_module:\n      module_name: pipeline.definitions\n      attribute: defs\n"
    )
    return generated


def local_instance(layout: StoreLayout):
    """The persistent instance `aloha ui` shows, opened in this process (for in-process runs such as the demo)."""
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(prepare_dagster_home(layout)))
