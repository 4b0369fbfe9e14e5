"""One store root for everything on disk; every other path derives from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from assets_store.names import validate_name

STORE_ENV = "ALOHA_STORE"
DEFAULT_STORE_DIRNAME = ".aloha_store"


def resolve_store_root(explicit: str | os.PathLike | None = None) -> Path:
    """`--store` wins, then $ALOHA_STORE, then ./.aloha_store; always absolute so subprocesses agree."""
    if explicit:
        root = Path(explicit)
    elif os.environ.get(STORE_ENV):
        root = Path(os.environ[STORE_ENV])
    else:
        root = Path.cwd() / DEFAULT_STORE_DIRNAME
    return root.expanduser().resolve()


def episode_dirname(index: int) -> str:
    return f"episode_{index:06d}.zarr"


@dataclass(frozen=True)
class StoreLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @classmethod
    def at(cls, explicit: str | os.PathLike | None = None) -> "StoreLayout":
        return cls(resolve_store_root(explicit))

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    def session_dir(self, session: str) -> Path:
        return self.raw_dir / validate_name(session, "session name")

    def episode_path(self, session: str, index: int) -> Path:
        return self.session_dir(session) / episode_dirname(index)

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def deploy_dir(self) -> Path:
        return self.root / "deploy"

    @property
    def runs_dir(self) -> Path:
        """Training outputs (checkpoints, logs) per run."""
        return self.root / "runs"

    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()
