"""Where the gym-aloha scene files live. The package is a dependency for its MJCF files only: never imported
(its __init__ needs gymnasium), never copied."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path


class SceneFileError(RuntimeError):
    pass


@lru_cache(maxsize=1)
def assets_dir() -> Path:
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise SceneFileError(
            "the ALOHA scene files come from the gym-aloha package, which is not installed: "
            "pip install --no-deps gym-aloha==0.1.5"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "assets"
    if not path.is_dir():
        raise SceneFileError(f"{path}: gym-aloha is installed but has no assets directory")
    return path


def scene_path(filename: str) -> Path:
    path = assets_dir() / filename
    if not path.is_file():
        raise SceneFileError(f"{path}: scene file missing from the installed gym-aloha")
    return path
