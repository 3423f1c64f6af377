#!/usr/bin/env bash
# One-step setup of a Python venv for semantic_recon_ros on a machine without a ROS 2 install.
#
#   bash scripts/setup_venv.sh            # from anywhere; acts on this repository
#   VENV_DIR=/tmp/venv bash scripts/setup_venv.sh   # another venv (default: <repo>/.venv)
#   PYTHON=/path/to/python3.11 ...        # interpreter for a new venv (default: python3.11, then python3)
#
# Steps: create the venv if missing (an existing one is kept), upgrade pip, install requirements.txt,
# make open3d importable (Debian system libraries, as root only), build interfaces/tf2_msgs into the
# venv with CMake when `from tf2_msgs.msg import TFMessage` fails or its sources changed, then
# `pip install -e . --no-deps`. A stamp file records a hash of every input; when nothing changed,
# the script only checks the stamp and exits.
#
# torch: requirements.txt pins torch==2.13.0; the CPU build 2.13.0+cpu satisfies it (a looser pin would
# pull a multi-GB CUDA build).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv}"
VENV_PY="$VENV_DIR/bin/python"
STAMP="$VENV_DIR/.setup-stamp"
TF2_SRC="$REPO_ROOT/interfaces/tf2_msgs"
TF2_BUILD="$VENV_DIR/build/tf2_msgs"
TF2_STAMP="$VENV_DIR/build/tf2_msgs.stamp"
OPEN3D_DEBIAN_LIBS=(libusb-1.0-0 libgl1 libx11-6 libudev1 libgomp1)
START_SECONDS=$SECONDS

say() { echo "[setup_venv] $*"; }
die() { echo "[setup_venv] error: $*" >&2; exit 1; }

# Runs a command with its output appended to $LOG; shows the log's tail and stops if it fails.
logged() {
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        die "failed: $* (full log: $LOG)"
    fi
}

# Hash of the given files' paths and contents, in the order given (paths relative to the repo root).
hash_files() {
    (cd "$REPO_ROOT" && for f in "$@"; do printf '%s\n' "$f"; cat "$f"; done) | sha256sum | cut -d' ' -f1
}

cd "$REPO_ROOT"
mapfile -t TF2_FILES < <(find interfaces -type f | LC_ALL=C sort)
INPUT_HASH="$(hash_files scripts/setup_venv.sh requirements.txt "${TF2_FILES[@]}" setup.py setup.cfg package.xml \
    semantic_recon_ros/core/map/fusion_kernel/integrate.cpp \
    semantic_recon_ros/core/map/fusion_kernel/__init__.py)"
TF2_HASH="$(hash_files "${TF2_FILES[@]}")"

if [ -x "$VENV_PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$INPUT_HASH" ]; then
    say "$VENV_DIR is up to date (nothing changed since the last setup)"
    exit 0
fi

# --- venv ---------------------------------------------------------------------------------------
if [ -x "$VENV_PY" ]; then
    say "using existing venv $VENV_DIR"
else
    PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    [ -n "$PYTHON" ] || die "no python3.11 or python3 on PATH; set PYTHON=/path/to/python3.11"
    say "creating venv $VENV_DIR with $PYTHON"
    "$PYTHON" -m venv "$VENV_DIR"
fi
LOG="$VENV_DIR/setup.log"
: >"$LOG"
PY_VERSION="$("$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$PY_VERSION" = "3.11" ] || die "$VENV_PY is Python $PY_VERSION; the ROS 2 wheels need CPython 3.11"

# --- Python packages ----------------------------------------------------------------------------
say "upgrading pip"
logged "$VENV_PY" -m pip install --upgrade pip
say "installing pinned dependencies from requirements.txt"
logged "$VENV_PY" -m pip install -r requirements.txt

# --- system libraries (Debian, root only) -------------------------------------------------------
# Installs the given Debian packages that are not installed yet; runs apt-get update only when the
# first attempt cannot find them.
apt_install_missing() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt-get install ${missing[*]}"
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}")
    if ! "${install[@]}" >>"$LOG" 2>&1; then
        say "apt-get update"
        logged apt-get update
        logged "${install[@]}"
    fi
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; }

if ! "$VENV_PY" -c 'import open3d' 2>/dev/null; then
    if can_apt; then
        apt_install_missing "${OPEN3D_DEBIAN_LIBS[@]}"
    fi
    "$VENV_PY" -c 'import open3d' || die "open3d does not import; on Debian/Ubuntu install: ${OPEN3D_DEBIAN_LIBS[*]}"
fi

# --- tf2_msgs interface package -----------------------------------------------------------------
cmake_is_recent() {
    command -v cmake >/dev/null || return 1
    local version
    version="$(cmake --version | head -n1 | awk '{print $3}')"
    [ "$(printf '%s\n3.21\n' "$version" | sort -V | head -n1)" = "3.21" ]
}

tf2_build_needed() {
    if ! "$VENV_PY" -c 'from tf2_msgs.msg import TFMessage' 2>/dev/null; then
        return 0
    fi
    # Rebuild a tf2_msgs this script built earlier from different sources; never replace one it did not build.
    [ -f "$TF2_STAMP" ] && [ "$(cat "$TF2_STAMP")" != "$TF2_HASH" ]
}

if tf2_build_needed; then
    if ! cmake_is_recent || ! command -v c++ >/dev/null || ! command -v make >/dev/null; then
        can_apt || die "building tf2_msgs needs cmake >= 3.21, make and a C++ compiler"
        apt_install_missing cmake make g++
        cmake_is_recent || die "cmake >= 3.21 is required to build interfaces/tf2_msgs"
    fi
    say "building tf2_msgs from interfaces/tf2_msgs into $VENV_DIR (about 10-30 s)"
    rm -rf "$TF2_BUILD"
    mkdir -p "$TF2_BUILD"
    BUILD_ENV=(env AMENT_PREFIX_PATH="$VENV_DIR" CMAKE_PREFIX_PATH="$VENV_DIR" PATH="$VENV_DIR/bin:$PATH")
    logged "${BUILD_ENV[@]}" cmake -S "$TF2_SRC" -B "$TF2_BUILD" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$VENV_DIR" -DPython3_EXECUTABLE="$VENV_PY"
    logged "${BUILD_ENV[@]}" cmake --build "$TF2_BUILD" --parallel "$(nproc)"
    logged cmake --install "$TF2_BUILD"
    "$VENV_PY" -c 'from tf2_msgs.msg import TFMessage' || die "tf2_msgs was built but does not import; log: $LOG"
    echo "$TF2_HASH" >"$TF2_STAMP"
else
    say "tf2_msgs already importable"
fi

# --- this package -------------------------------------------------------------------------------
say "pip install -e . --no-deps"
logged "$VENV_PY" -m pip install -e "$REPO_ROOT" --no-deps
say "compiling the fused CPU integration kernel once (about 30-70 s; a failure only warns: torch path)"
"$VENV_PY" -c "from semantic_recon_ros.core.map.fusion_kernel import load; load()"

echo "$INPUT_HASH" >"$STAMP"
say "done in $((SECONDS - START_SECONDS)) s; use $VENV_PY"
