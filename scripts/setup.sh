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
# Optional: PostgreSQL server binaries for the production-profile test (tests/test_production_profile.py starts a
# private server in a temporary directory, and skips without them).
want=()
dpkg -s postgresql >/dev/null 2>&1 || want+=(postgresql)
if [ ${#need[@]} -gt 0 ] || [ ${#want[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${need[*]} ${want[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" "${want[@]}" >/dev/null
  elif [ ${#need[@]} -gt 0 ]; then
    echo "setup: please install these Debian packages first (as root): apt-get install ${need[*]} ${want[*]}" >&2
    exit 1
  else
    echo "setup: note: without the Debian package postgresql the production-profile test is skipped" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
log="$VENV/setup-pip.log"
pip_install() {  # quiet unless it fails: then the end of pip's log says why
  if ! "$VENV/bin/python" -m pip install "$@" >>"$log" 2>&1; then
    grep -v -E "^WARNING: Location .* is ignored" "$log" | tail -40 >&2
    echo "setup: pip install $* failed (full log: $log)" >&2
    exit 1
  fi
}
: >"$log"
echo "setup: installing the project and its pinned dependencies into $VENV (first time: a few minutes)"
pip_install -e ".[dev]"
# Scene files of the ALOHA simulator; --no-deps keeps the current MuJoCo (see pyproject.toml).
pip_install --no-deps "gym-aloha==0.1.5"
"$VENV/bin/python" - <<'PY'
import importlib, sys
for mod in ("torch", "torchvision", "dagster", "dagster_postgres", "mlflow", "zarr", "imagecodecs", "pyrealsense2",
            "dynamixel_sdk", "mujoco", "h5py", "typer", "safetensors"):
    importlib.import_module(mod)
import importlib.util
if importlib.util.find_spec("gym_aloha") is None:
    sys.exit("setup: gym-aloha did not install")
print("setup: environment ready")
PY
