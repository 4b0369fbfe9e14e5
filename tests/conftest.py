"""Shared fixtures. Every test gets its own store under tmp_path; nothing touches the user's store."""

from __future__ import annotations

import os

# Offscreen MuJoCo rendering without a display (EGL, software); must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ["COLUMNS"] = "200"  # rich tables in CLI output are not truncated in assertions

import signal

import pytest

from assets_store import StoreLayout


@pytest.fixture(autouse=True)
def _sigterm_disposition_restored():
    """Dagster's in-process execution maps SIGTERM to SIGINT's handler and leaves it so. In a test run started in
    the background (`make test &`: SIGINT ignored) that is SIG_IGN, which every child started afterwards inherits:
    a server or robot process the test then stops with SIGTERM would never exit. Each test starts and ends with the
    disposition the run began with."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    if signal.getsignal(signal.SIGTERM) is not before and before is not None:
        signal.signal(signal.SIGTERM, before)


@pytest.fixture
def layout(tmp_path, monkeypatch) -> StoreLayout:
    root = tmp_path / "store"
    monkeypatch.setenv("ALOHA_STORE", str(root))
    return StoreLayout(root)
