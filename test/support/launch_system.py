"""The ROS 2 launch system in the tests: whether it is installed, a colcon workspace of this repository, and what a
launched node subscribes to.

The launch system (launch, launch_ros, ros2launch) comes from a ROS 2 install or, in a venv, from
``../shared/vendor/ros2-launch`` through scripts/setup_venv.sh (which CI runs). Where those sources are present its
tests must run: a missing launch system fails them, with the way to install it; only where neither exists do they skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.paths import REPO
from semantic_recon_ros.commands.launch import LaunchSystemMissing, import_launch_api

VENDORED_LAUNCH = REPO.parent / "shared" / "vendor" / "ros2-launch"
PACKAGE = "semantic_recon_ros"


def require_launch_system() -> None:
    """Skip the test where the launch system is neither installed nor installable; fail it where it could be."""
    try:
        import_launch_api()
    except LaunchSystemMissing as error:
        if VENDORED_LAUNCH.is_dir():
            pytest.fail(f"{error} ({VENDORED_LAUNCH} is present: run `bash scripts/setup_venv.sh`)")
        pytest.skip(str(error))


def colcon_build(workspace: Path) -> Path:
    """`colcon build` of the repository into ``workspace`` (build/, install/, log/), with the venv's colcon;
    returns the install folder."""
    pytest.importorskip("colcon_core", reason="colcon is not installed (pip install colcon-common-extensions)")
    env = dict(os.environ, COLCON_HOME=str(workspace / "colcon_home"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    colcon = [sys.executable, "-c", "import sys; from colcon_core.command import main; sys.exit(main())"]
    proc = subprocess.run(
        [*colcon, "--log-base", str(workspace / "log"), "build", "--base-paths", str(REPO),
         "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install")],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout}\n{proc.stderr}"
    return workspace / "install"


def sourced_environment(install: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` after `. install/setup.bash` (a user's shell after `colcon build`)."""
    proc = subprocess.run(["bash", "-c", f". {install / 'setup.bash'} && env -0"], env=env, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return dict(entry.split("=", 1) for entry in proc.stdout.decode().split("\0") if "=" in entry)


def node_subscriptions(listener, expected: list[str], timeout: float = 30.0) -> set[str]:
    """The topics mapping_node subscribes to, as the graph of ``listener`` (a SpinningTestNode) shows them once they
    include ``expected`` (the node's endpoints may be discovered after the status publisher it was found by)."""
    deadline = time.monotonic() + timeout
    while True:
        subscribed = {name for name, _ in listener.node.get_subscriber_names_and_types_by_node("mapping_node", "/")}
        if set(expected) <= subscribed:
            return subscribed
        assert time.monotonic() < deadline, f"mapping_node subscribes to {sorted(subscribed)}, not to {expected}"
        time.sleep(0.1)
