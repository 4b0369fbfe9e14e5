"""Pick MuJoCo's offscreen OpenGL backend: EGL when libEGL loads, else OSMesa (both are software renderers here)."""

from __future__ import annotations

import ctypes
import os
import sys


def _loads(library: str) -> bool:
    try:
        ctypes.CDLL(library)
        return True
    except OSError:
        return False


def select_gl_backend() -> str:
    """Set MUJOCO_GL unless the user did; must run before `mujoco` is imported to take effect."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if "mujoco" in sys.modules:  # too late to choose; mujoco already picked its default
        return ""
    backend = "egl" if _loads("libEGL.so.1") else "osmesa"
    os.environ["MUJOCO_GL"] = backend
    return backend
