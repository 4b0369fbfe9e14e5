"""The embedded Dagster instance: SQLite storage under <store>/dagster_home, telemetry off, one training at a time.

With an object-store root only the data moves: the instance stays local, in $DAGSTER_HOME when the user set it
(Dagster's own setting), else under the store's local state root (`StoreLayout.of_root`)."""

from __future__ import annotations

import os
from pathlib import Path

from assets_store import StoreLayout
from assets_store.layout import LOCAL_STORE_ENV, STORE_ENV
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


def dagster_home(layout: StoreLayout, env: dict[str, str] | None = None) -> Path:
    """A local store: <store>/dagster_home, the store's own instance. An object-store root: $DAGSTER_HOME if set
    (in `env`, default os.environ), else <local state root>/dagster_home; never in the bucket."""
    env = os.environ if env is None else env
    if layout.data_url and env.get("DAGSTER_HOME"):
        return Path(env["DAGSTER_HOME"]).expanduser().resolve()
    return layout.dagster_home


def prepare_dagster_home(layout: StoreLayout, env: dict[str, str] | None = None) -> Path:
    """Create DAGSTER_HOME (see `dagster_home`) with our dagster.yaml (kept if the user edited or wrote one)."""
    home = dagster_home(layout, env)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def dagster_env(layout: StoreLayout, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a Dagster process: the instance, and the store its code location opens (the same absolute
    root; with an object-store root, the URL and the local state root, so MLflow's SQLite stays local too)."""
    env = dict(os.environ if base is None else base)
    env["DAGSTER_HOME"] = str(prepare_dagster_home(layout, env))
    env[STORE_ENV] = layout.data_url or str(layout.root)
    if layout.data_url:
        env[LOCAL_STORE_ENV] = str(layout.root)
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
