"""`semantic-recon launch`: the package's launch files run on ros2launch.api where `ros2` is missing (a venv).

Here the package is in no ament index (no colcon workspace is sourced): the command registers this install in a
temporary ament prefix for the run. test/packaging/test_launch_process.py runs it in a sourced colcon workspace, as
`ros2 launch` runs there, with the full check of parameters, topics and the map saved on SIGINT. Also: the
repository's own launch/ folder never stands in for the launch package.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from support.dds_processes import discovered_or_restarted, stop_process
from support.launch_system import node_subscriptions, require_launch_system
from support.paths import REPO
from semantic_recon_ros.cli import build_parser, main as cli_main

CLI = [sys.executable, "-m", "semantic_recon_ros.cli"]


def venv_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without an ament index: as in a venv where no ROS 2 setup was sourced."""
    return {k: v for k, v in (env or os.environ).items() if k != "AMENT_PREFIX_PATH"}


def test_launch_is_a_subcommand_taking_name_value_arguments():
    args = build_parser().parse_args(["launch", "rviz.launch.py", "use_sim_time:=true", "rviz_config:=/a.rviz"])
    assert args.launch_file == "rviz.launch.py"
    assert args.launch_arguments == ["use_sim_time:=true", "rviz_config:=/a.rviz"]
    args = build_parser().parse_args(["launch"])
    assert (args.launch_file, args.launch_arguments) == ("mapping.launch.py", [])


@pytest.mark.parametrize("argument", ["camera_namespace=/camera", ":=/camera", "checkpoint:="])
def test_a_malformed_launch_argument_is_an_error_before_anything_starts(capsys, argument):
    assert cli_main(["launch", "mapping.launch.py", argument]) == 2
    assert f"malformed launch argument '{argument}'" in capsys.readouterr().err


def test_show_args_from_a_venv_uses_this_install_in_a_temporary_ament_prefix(tmp_path):
    require_launch_system()
    proc = subprocess.run([*CLI, "launch", "--show-args"], env=venv_environment(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    defaults = dict(re.findall(r"'(\w+)':\n\s+.*\n\s+\(default: '([^']*)'\)", proc.stdout))
    params_file = Path(defaults["params_file"])
    assert params_file.parts[-4:] == ("share", "semantic_recon_ros", "config", "mapping.yaml")
    assert params_file.parents[3].name == "ament_prefix" and not params_file.parents[4].exists()  # removed at exit
    assert {"camera_namespace", "camera_params_file", "rviz", "rviz_config", "checkpoint"} <= set(defaults)

    proc = subprocess.run([*CLI, "launch", "rviz.launch.py", "--show-args"], env=venv_environment(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.findall(r"^    '(\w+)':$", proc.stdout, re.MULTILINE) == ["rviz_config", "use_sim_time"]


def test_launch_from_a_venv_starts_the_node_and_stops_on_sigint(dds, tmp_path):
    """Launch arguments alone (no file name: mapping.launch.py); the node runs from the temporary prefix's lib
    folder with the shipped params file, subscribes below camera_namespace, and exits cleanly on Ctrl-C."""
    require_launch_system()
    from support.mapping_node_process import MapListener

    env, context = dds
    user_file = tmp_path / "quick.yaml"
    user_file.write_text(yaml.safe_dump({"/**/mapping_node": {"ros__parameters": {
        "segmenter": "", "status_period": 0.5, "output_dir": str(tmp_path / "maps")}}}))
    command = [*CLI, "launch", "camera_namespace:=/venv_camera", f"camera_params_file:={user_file}", "rviz:=false",
               "checkpoint:=''"]
    log = tmp_path / "launch.log"
    started = []

    def start() -> subprocess.Popen:
        with open(log, "a") as out:
            started.append(subprocess.Popen(command, env=venv_environment(env), cwd=tmp_path, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        return started[-1]

    listener = MapListener(context, "venv_launch_listener")
    launch = start()
    try:
        launch = discovered_or_restarted(launch, start, listener.has_status, "the mapping node launched from a venv")
        (node,) = [child for child in psutil.Process(launch.pid).children()
                   if "semantic_recon_ros.ros.mapping_node" in child.cmdline()]
        node_command = node.cmdline()
        params_file = Path(node_command[node_command.index("--params-file") + 1])
        assert params_file.parts[-5:] == ("ament_prefix", "share", "semantic_recon_ros", "config", "mapping.yaml")
        assert params_file.resolve() == (REPO / "config" / "mapping.yaml").resolve()  # this (editable) install's
        node_subscriptions(listener, ["/venv_camera/color/image_raw", "/venv_camera/depth/image_raw",
                                      "/venv_camera/color/camera_info"])
        launch.send_signal(signal.SIGINT)
        assert launch.wait(timeout=60) == 0, log.read_text()
        assert not node.is_running()
    except BaseException:
        print(f"launch output:\n{log.read_text()}")
        raise
    finally:
        listener.close()
        stop_process(launch)
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    text = log.read_text()
    assert "process has finished cleanly" in text and "Traceback" not in text, text
    assert not params_file.parents[3].exists()  # the temporary prefix is removed


def test_the_repository_launch_folder_never_stands_in_for_the_launch_package():
    """From the repository root (on sys.path under pytest and `python -m`), `import launch` gets the installed
    launch system: an installed package always wins over a namespace package (a folder without __init__.py)."""
    require_launch_system()
    import launch

    assert str(REPO) in [os.path.abspath(p) for p in sys.path]  # setup.cfg: pythonpath = . test
    assert launch.__file__ is not None and Path(launch.__file__).name == "__init__.py"  # a regular package
    assert Path(launch.__file__).parent != REPO / "launch" and hasattr(launch, "LaunchDescription")
    proc = subprocess.run([sys.executable, "-c", "import launch; print(launch.__file__)"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == Path(launch.__file__)


def test_without_the_launch_system_the_error_says_how_to_install_it():
    """Where launch is not installed, the repository's launch/ folder imports as an empty namespace package from
    the repository root; the command drops it and says what to install, exit code 2. (-S: no site-packages, so no
    launch system; the command module itself needs only the standard library.)"""
    code = """
import argparse, sys
import launch
assert launch.__file__ is None, launch  # the repository's launch/ folder, as a namespace package
from semantic_recon_ros.commands import launch as command
parser = argparse.ArgumentParser()
command.add_arguments(parser)
status = command.run(parser.parse_args(["mapping.launch.py", "rviz:=false"]))
print("launch" in sys.modules)
sys.exit(status)
"""
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, env=venv_environment(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "False"  # the namespace package is gone
    assert "the ROS 2 launch system is not installed (missing: launch, launch_ros, ros2launch)" in proc.stderr
    assert "scripts/setup_venv.sh" in proc.stderr
