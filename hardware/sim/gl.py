"""Pick MuJoCo's offscreen OpenGL backend: EGL when libEGL loads, else OSMesa (both are software renderers here)."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Mapping


def _loads(library: str) -> bool:
    try:
        ctypes.CDLL(library)
        return True
    except OSError:
        return False


def gl_backend(env: Mapping[str, str] | None = None) -> str:
    """The backend for a process with environment `env` (default: this one): its MUJOCO_GL if set, else EGL when
    libEGL loads, else OSMesa. `pipeline.instance` passes a child process's environment here."""
    env = os.environ if env is None else env
    return env.get("MUJOCO_GL") or ("egl" if _loads("libEGL.so.1") else "osmesa")


def select_gl_backend() -> str:
    """Set MUJOCO_GL unless the user did; must run before `mujoco` is imported to take effect."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if "mujoco" in sys.modules:  # too late to choose; mujoco already picked its default
        return ""
    backend = os.environ["MUJOCO_GL"] = gl_backend()
    return backend


def preload_llvm_users() -> None:
    """Import triton (pulled in by torchvision / torch.compile) before the first GL context exists.

    Mesa's software renderers load their own LLVM into the process; triton, imported AFTER that, loads its bundled
    LLVM and the process segfaults (seen with both EGL and OSMesa). Imported first, both coexist. Rendering and a
    policy share a process in `aloha rollout`, `aloha demo` and the pipeline's evaluation, so the sim does this
    itself rather than asking every caller to mind the import order.
    """
    import importlib.util

    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
