"""Run one of the package's launch files as `ros2 launch semantic_recon_ros FILE` does, where `ros2` is missing.

    semantic-recon launch                                              # mapping.launch.py, default arguments
    semantic-recon launch mapping.launch.py camera_namespace:=/camera "checkpoint:=''"
    semantic-recon launch mapping.launch.py --show-args                # every argument, described
    semantic-recon launch rviz.launch.py use_sim_time:=true

Launch arguments are given as `name:=value`, as to `ros2 launch` (for duplicates the last one wins). The file is
found in the package's share folder and run with ros2launch.api (get_share_file_path_from_package,
launch_a_launch_file), the code `ros2 launch` runs; Ctrl-C (SIGINT) stops the launched processes and the launch.

Needs the ROS 2 launch system (launch, launch_ros, ros2launch): a ROS 2 install, or a venv made by
scripts/setup_venv.sh with ../shared beside the repository (it installs the vendored launch system). Where this
package is in no ament index (a venv rather than a sourced colcon workspace), this install is registered in a
temporary ament prefix for the run: share/semantic_recon_ros linking the package's launch, config and model files,
lib/semantic_recon_ros holding its executables.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from ..core.resources import PACKAGE_NAME, share_file

DEFAULT_LAUNCH_FILE = "mapping.launch.py"
LAUNCH_PACKAGES = ("launch", "launch_ros", "ros2launch")
# the executables of setup.py's console_scripts that launch files start (launch_ros looks in <prefix>/lib/<package>)
EXECUTABLES = {"mapping_node": "semantic_recon_ros.ros.mapping_node", "semantic-recon": "semantic_recon_ros.cli"}
SHARED_ITEMS = ("package.xml", "config", "models")  # linked into the temporary share folder (launch/: file by file)
EXIT_NO_LAUNCH_SYSTEM = 2


class LaunchSystemMissing(RuntimeError):
    """The ROS 2 launch system is not importable (or only as somebody's launch/ folder)."""


def is_regular_package(name: str) -> bool:
    """True when ``name`` imports as a module or a package with an ``__init__``, not as a namespace package.

    A folder named like the package on sys.path without an ``__init__.py`` (this repository's launch/ folder,
    with the repository root on sys.path as under pytest or `python -m` from there) makes ``import launch``
    succeed as an empty namespace package when the real launch is not installed; an installed one always wins.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and spec.has_location


def import_launch_api():
    """The module ros2launch.api of the real launch system; raises LaunchSystemMissing when it is not installed.

    A ``launch`` already imported as a namespace package (a launch/ folder on sys.path) is dropped first so that it
    can never stand in for the real one.
    """
    shadow = sys.modules.get("launch")
    if shadow is not None and getattr(shadow, "__file__", None) is None:
        del sys.modules["launch"]
    missing = [name for name in LAUNCH_PACKAGES if not is_regular_package(name)]
    hint = ("source a ROS 2 install, or run scripts/setup_venv.sh with ../shared beside the repository "
            "(it installs the vendored launch system into the venv)")
    if missing:
        raise LaunchSystemMissing(f"the ROS 2 launch system is not installed (missing: {', '.join(missing)}); {hint}")
    try:
        import launch_ros.actions  # noqa: F401  (imports composition_interfaces, a built interface package)
        import ros2launch.api
    except ImportError as error:
        raise LaunchSystemMissing(f"the ROS 2 launch system does not import ({error}); {hint}") from error
    return ros2launch.api


def package_share_directory() -> Path | None:
    """The share folder of this package in the ament index (AMENT_PREFIX_PATH), or None when it is in none."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return Path(get_package_share_directory(PACKAGE_NAME))
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return None


def write_ament_prefix(prefix: Path) -> Path:
    """Registers this install of the package in the ament prefix ``prefix`` (created) as colcon would install it:
    the index marker, share/semantic_recon_ros (links to launch files, config, models, package.xml) and
    lib/semantic_recon_ros/<executable> for each of EXECUTABLES (running this interpreter). Returns ``prefix``."""
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / PACKAGE_NAME).touch()
    share = prefix / "share" / PACKAGE_NAME
    (share / "launch").mkdir(parents=True)  # a real folder: ros2launch.api searches it without following links
    for launch_file in sorted(share_file("launch").glob("*.py")):
        (share / "launch" / launch_file.name).symlink_to(launch_file.resolve())
    for item in SHARED_ITEMS:
        (share / item).symlink_to(share_file(item).resolve())
    lib = prefix / "lib" / PACKAGE_NAME
    lib.mkdir(parents=True)
    for executable, module in EXECUTABLES.items():
        script = lib / executable
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {module} "$@"\n')
        script.chmod(0o755)
    return prefix


def prepend_ament_prefix(prefix: Path) -> None:
    """Puts ``prefix`` first on AMENT_PREFIX_PATH (for this process and the processes it launches), followed by the
    existing entries and, when it is an ament prefix too (a venv of the ROS 2 wheels), this interpreter's prefix."""
    entries = [str(prefix), *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    if (Path(sys.prefix) / "share" / "ament_index").is_dir() and sys.prefix not in entries:
        entries.append(sys.prefix)
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(entries)


def stdin_is_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("launch_file", nargs="?", default=DEFAULT_LAUNCH_FILE,
                        help="launch file of the package (mapping.launch.py, rviz.launch.py) or the path of one "
                             "(default %(default)s)")
    parser.add_argument("launch_arguments", nargs="*", metavar="name:=value",
                        help="arguments of the launch file (for duplicates, the last one wins)")
    parser.add_argument("-s", "--show-args", "--show-arguments", action="store_true",
                        help="show the arguments the launch file takes, and launch nothing")
    parser.add_argument("-p", "--print", "--print-description", dest="print_description", action="store_true",
                        help="print the launch description, and launch nothing")
    parser.add_argument("-n", "--noninteractive", action="store_true", default=not stdin_is_a_terminal(),
                        help="run the launch system non-interactively, with no terminal associated (the default "
                             "without a terminal on stdin)")
    parser.add_argument("-d", "--debug", action="store_true", help="debug output of the launch system")


def run(args: argparse.Namespace) -> int:
    launch_arguments = list(args.launch_arguments)
    if ":=" in args.launch_file:  # `semantic-recon launch name:=value ...`: the default launch file
        launch_arguments.insert(0, args.launch_file)
        args.launch_file = DEFAULT_LAUNCH_FILE
    for argument in launch_arguments:  # the rule of ros2launch.api, checked before anything starts
        count = argument.count(":=")
        if count == 0 or argument.startswith(":=") or (count == 1 and argument.endswith(":=")):
            raise ValueError(f"malformed launch argument {argument!r}, expected format '<name>:=<value>' "
                             "(an empty value is written name:=\"''\")")
    try:
        api = import_launch_api()
    except LaunchSystemMissing as error:
        print(f"semantic-recon launch: error: {error}", file=sys.stderr)
        return EXIT_NO_LAUNCH_SYSTEM
    # A process started in the background of a non-interactive shell inherits SIGINT ignored; launch (and the
    # processes it starts, which inherit ignored signals) would then never see Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="semantic_recon_launch_") as scratch:
        if package_share_directory() is None:
            prepend_ament_prefix(write_ament_prefix(Path(scratch) / "ament_prefix"))
        if os.path.isfile(args.launch_file):
            path = args.launch_file
        else:
            path = api.get_share_file_path_from_package(package_name=PACKAGE_NAME, file_name=args.launch_file)
        if args.show_args:
            api.print_arguments_of_launch_file(launch_file_path=path)
            return 0
        if args.print_description:
            api.print_a_launch_file(launch_file_path=path)
            return 0
        return api.launch_a_launch_file(launch_file_path=path, launch_file_arguments=launch_arguments,
                                        noninteractive=args.noninteractive, debug=args.debug)
