#!/usr/bin/env bash
# One-step setup of a Python venv for semantic_recon_ros on a machine without a ROS 2 install.
#
#   bash scripts/setup_venv.sh            # from anywhere; acts on this repository
#   VENV_DIR=/tmp/venv bash scripts/setup_venv.sh   # another venv (default: <repo>/.venv)
#   PYTHON=/path/to/python3.11 ...        # interpreter for a new venv (default: python3.11, then python3)
#
# Steps: create the venv if missing (an existing one is kept), upgrade pip, install requirements.txt,
# make open3d importable (Debian system libraries, as root only), build interfaces/tf2_msgs into the
# venv with CMake when `from tf2_msgs.msg import TFMessage` fails or its sources changed, install the
# ROS 2 launch system from ../shared/vendor/ros2-launch when no ROS 2 install provides it (see below),
# then `pip install -e . --no-deps`. A stamp file records a hash of every input; when nothing changed,
# the script only checks the stamp and exits.
#
# The launch system (`ros2 launch`'s launch, launch_ros, ros2launch; `semantic-recon launch` and the launch
# tests run on it) is on no package registry. Where ../shared is present, its vendored upstream sources are
# installed: the three pure-Python packages with pip (--no-deps: ros2launch's ros2cli is not needed by
# ros2launch.api), osrf-pycommon from PyPI, and composition_interfaces built with CMake like tf2_msgs. A
# launch system that this script did not install (a sourced ROS 2 install's) is never replaced.
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
LAUNCH_VENDOR="$REPO_ROOT/../shared/vendor/ros2-launch"
LAUNCH_PACKAGES=(launch launch_ros ros2launch)  # pure Python, installed with pip from LAUNCH_VENDOR
LAUNCH_BUILD="$VENV_DIR/build/ros2-launch"
LAUNCH_STAMP="$VENV_DIR/build/ros2-launch.stamp"
OSRF_PYCOMMON="osrf-pycommon==2.0.2"  # launch's process utilities (PyPI)
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
# The vendored launch sources count as an input while ../shared is there (its appearing or going counts too).
if [ -d "$LAUNCH_VENDOR" ]; then
    LAUNCH_HASH="$(cd "$LAUNCH_VENDOR" && find . -type f -not -name '*.pyc' -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
else
    LAUNCH_HASH="no vendored launch system"
fi
INPUT_HASH="$(printf '%s\n%s\n' "$INPUT_HASH" "$LAUNCH_HASH" | sha256sum | cut -d' ' -f1)"

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

# --- interface packages (tf2_msgs; composition_interfaces for the launch system) ------------------
cmake_is_recent() {
    command -v cmake >/dev/null || return 1
    local version
    version="$(cmake --version | head -n1 | awk '{print $3}')"
    [ "$(printf '%s\n3.21\n' "$version" | sort -V | head -n1)" = "3.21" ]
}

# True when the `check` import fails, or when this script built the package earlier (stamp) from other sources;
# never replaces a package it did not build. -P: the current directory is not on sys.path.
interface_build_needed() {
    local check="$1" stamp="$2" hash="$3"
    "$VENV_PY" -P -c "$check" 2>/dev/null || return 0
    [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$hash" ]
}

# Builds the ament_cmake interface package in `src` with the venv's rosidl toolchain and installs it into the venv.
build_interface() {
    local name="$1" src="$2" check="$3"
    local build="$VENV_DIR/build/$name"
    if ! cmake_is_recent || ! command -v c++ >/dev/null || ! command -v make >/dev/null; then
        can_apt || die "building $name needs cmake >= 3.21, make and a C++ compiler"
        apt_install_missing cmake make g++
        cmake_is_recent || die "cmake >= 3.21 is required to build $name"
    fi
    say "building $name into $VENV_DIR (about 10-30 s)"
    rm -rf "$build"
    mkdir -p "$build"
    local build_env=(env AMENT_PREFIX_PATH="$VENV_DIR" CMAKE_PREFIX_PATH="$VENV_DIR" PATH="$VENV_DIR/bin:$PATH")
    logged "${build_env[@]}" cmake -S "$src" -B "$build" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$VENV_DIR" -DPython3_EXECUTABLE="$VENV_PY"
    logged "${build_env[@]}" cmake --build "$build" --parallel "$(nproc)"
    logged cmake --install "$build"
    "$VENV_PY" -P -c "$check" || die "$name was built but does not import; log: $LOG"
}

TF2_CHECK='from tf2_msgs.msg import TFMessage'
if interface_build_needed "$TF2_CHECK" "$TF2_STAMP" "$TF2_HASH"; then
    build_interface tf2_msgs "$TF2_SRC" "$TF2_CHECK"
    echo "$TF2_HASH" >"$TF2_STAMP"
else
    say "tf2_msgs already importable"
fi

# --- the ROS 2 launch system (vendored sources; only where no ROS 2 install provides it) -------------
COMPOSITION_CHECK='from composition_interfaces.srv import LoadNode'
# Prints "venv" when the launch system imports from this venv, the folder it imports from when from elsewhere
# (a sourced ROS 2 install), nothing when it does not import. -P: never the repository's own launch/ folder.
launch_origin() {
    "$VENV_PY" -P -c '
import os, sys
import launch, launch_ros.actions, ros2launch.api
where = os.path.dirname(os.path.dirname(launch.__file__))  # None for a namespace package: fails
print("venv" if os.path.realpath(where).startswith(os.path.realpath(sys.prefix) + os.sep) else where)
' 2>/dev/null || true
}

if [ ! -d "$LAUNCH_VENDOR" ]; then
    say "no ../shared/vendor/ros2-launch: not installing the launch system from it (semantic-recon launch and its tests need one)"
else
    origin="$(launch_origin)"
    stale=false  # installed by this script from other vendored sources
    if [ -f "$LAUNCH_STAMP" ] && [ "$(cat "$LAUNCH_STAMP")" != "$LAUNCH_HASH" ]; then
        stale=true
    fi
    if [ -n "$origin" ] && { [ "$origin" != venv ] || [ ! -f "$LAUNCH_STAMP" ]; }; then
        say "launch system already importable${origin:+ from $origin} (not replaced)"
    elif [ -z "$origin" ] || $stale; then
        if $stale || ! "$VENV_PY" -P -c "$COMPOSITION_CHECK" 2>/dev/null; then
            build_interface composition_interfaces "$LAUNCH_VENDOR/composition_interfaces" "$COMPOSITION_CHECK"
        fi
        say "installing the launch system (${LAUNCH_PACKAGES[*]}) from ../shared/vendor/ros2-launch, and $OSRF_PYCOMMON"
        # pip builds a local folder in place: build copies, never writing into ../shared
        rm -rf "$LAUNCH_BUILD"
        mkdir -p "$LAUNCH_BUILD"
        sources=()
        for package in "${LAUNCH_PACKAGES[@]}"; do
            cp -r "$LAUNCH_VENDOR/$package" "$LAUNCH_BUILD/$package"
            sources+=("$LAUNCH_BUILD/$package")
        done
        chmod -R u+w "$LAUNCH_BUILD"  # ../shared may be read-only; the copies are built in place
        logged "$VENV_PY" -m pip install --no-deps --no-build-isolation "$OSRF_PYCOMMON" "${sources[@]}"
        rm -rf "$LAUNCH_BUILD"
        [ "$(launch_origin)" = venv ] || die "the launch system was installed but does not import from $VENV_DIR; log: $LOG"
        echo "$LAUNCH_HASH" >"$LAUNCH_STAMP"
    else
        say "launch system already installed from ../shared/vendor/ros2-launch"
    fi
fi

# --- this package -------------------------------------------------------------------------------
say "pip install -e . --no-deps"
logged "$VENV_PY" -m pip install -e "$REPO_ROOT" --no-deps
say "compiling the fused CPU integration kernel once (about 30-70 s; a failure only warns: torch path)"
"$VENV_PY" -c "from semantic_recon_ros.core.map.fusion_kernel import load; load()"

echo "$INPUT_HASH" >"$STAMP"
say "done in $((SECONDS - START_SECONDS)) s; use $VENV_PY"
