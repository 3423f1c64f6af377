"""`colcon build` of this repository (as in a ROS 2 workspace) installs a working package.

The build runs with the venv's colcon and ament wheels into a temporary workspace; the installed
executable is started the way `ros2 run` would find it, after sourcing ``install/setup.bash``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.launch_system import colcon_build
from support.paths import REPO

pytest.importorskip("colcon_core", reason="colcon is not installed (pip install colcon-common-extensions)")

PACKAGE = "semantic_recon_ros"
INSTALLED_DATA_FOLDERS = {"launch": None, "config": {".yaml", ".rviz"}, "models": None}  # folder -> suffixes


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A temp workspace holding build/, install/ and log/ of `colcon build --base-paths <repo>`."""
    ws = tmp_path_factory.mktemp("colcon_ws")
    colcon_build(ws)
    return ws


def run_in_sourced_workspace(ws: Path, command: str) -> subprocess.CompletedProcess:
    """Run a bash command after `. install/setup.bash` (the user's shell after a colcon build)."""
    return subprocess.run(
        ["bash", "-c", f". install/setup.bash && {command}"], cwd=ws, capture_output=True, text=True, timeout=120
    )


def test_only_this_package_is_built(workspace):
    """interfaces/COLCON_IGNORE keeps the venv-only tf2_msgs out of a real workspace."""
    built = sorted(p.name for p in (workspace / "install").iterdir() if p.is_dir())
    assert built == [PACKAGE]


def test_installed_executable_runs_from_lib_dir(workspace):
    executable = workspace / "install" / PACKAGE / "lib" / PACKAGE / "semantic-recon"
    assert executable.is_file()
    proc = run_in_sourced_workspace(workspace, f"{executable} --help")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage: semantic-recon" in proc.stdout


def test_sourced_workspace_imports_the_installed_copy(workspace):
    proc = run_in_sourced_workspace(workspace, f"{sys.executable} -c 'import {PACKAGE}; print({PACKAGE}.__file__)'")
    assert proc.returncode == 0, proc.stderr
    site_packages = workspace / "install" / PACKAGE / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert Path(proc.stdout.strip()).is_relative_to(site_packages)


def test_share_directory_holds_package_xml_data_and_ament_index_marker(workspace):
    prefix = workspace / "install" / PACKAGE
    share = prefix / "share" / PACKAGE
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    assert (share / "config" / "classes.yaml").read_bytes() == (REPO / "config" / "classes.yaml").read_bytes()
    for folder, suffixes in INSTALLED_DATA_FOLDERS.items():
        for source in (REPO / folder).rglob("*"):
            if source.is_file() and "__pycache__" not in source.parts and (suffixes is None or source.suffix in suffixes):
                relative = source.relative_to(REPO)
                assert (share / relative).is_file(), f"{relative} is not installed into share/{PACKAGE}"


def test_installed_package_finds_its_share_files(workspace):
    """share_file() of the installed copy resolves config/classes.yaml inside the install prefix."""
    code = (
        f"from {PACKAGE}.core.resources import share_file; "
        "print(share_file('config/classes.yaml'))"
    )
    proc = run_in_sourced_workspace(workspace, f"{sys.executable} -c \"{code}\"")
    assert proc.returncode == 0, proc.stderr
    expected = workspace / "install" / PACKAGE / "share" / PACKAGE / "config" / "classes.yaml"
    assert Path(proc.stdout.strip()) == expected
