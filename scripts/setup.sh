#!/usr/bin/env bash
# One-time set-up of a fresh machine: Debian libraries, virtual environment, the project and its pins.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need=()
dpkg -s libusb-1.0-0 >/dev/null 2>&1 || need+=(libusb-1.0-0)    # pyrealsense2
dpkg -s libegl1 >/dev/null 2>&1 || need+=(libegl1)              # MuJoCo offscreen (EGL)
dpkg -s libosmesa6 >/dev/null 2>&1 || need+=(libosmesa6)        # MuJoCo offscreen (OSMesa fallback)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages first (as root): apt-get install ${need[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q -e ".[dev]" 2>&1 | grep -v -E "^WARNING: Location .* is ignored" || true
"$VENV/bin/python" -m pip install -q -e ".[dev]" --no-deps >/dev/null  # fail loudly if the first step did not
# Scene files of the ALOHA simulator; --no-deps keeps the current MuJoCo (see pyproject.toml).
"$VENV/bin/python" -m pip install -q --no-deps "gym-aloha==0.1.5" 2>&1 | grep -v -E "^WARNING: Location .* is ignored" || true
"$VENV/bin/python" - <<'PY'
import importlib, sys
for mod in ("torch", "torchvision", "dagster", "mlflow", "zarr", "imagecodecs", "pyrealsense2",
            "dynamixel_sdk", "mujoco", "h5py", "typer", "safetensors"):
    importlib.import_module(mod)
import importlib.util
if importlib.util.find_spec("gym_aloha") is None:
    sys.exit("setup: gym-aloha did not install")
print("setup: environment ready")
PY
