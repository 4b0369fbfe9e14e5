"""Shared fixtures. Every test gets its own store under tmp_path; nothing touches the user's store."""

from __future__ import annotations

import os

# Offscreen MuJoCo rendering without a display (EGL, software); must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ["COLUMNS"] = "200"  # rich tables in CLI output are not truncated in assertions

import pytest

from assets_store import StoreLayout


@pytest.fixture
def layout(tmp_path, monkeypatch) -> StoreLayout:
    root = tmp_path / "store"
    monkeypatch.setenv("ALOHA_STORE", str(root))
    return StoreLayout(root)
