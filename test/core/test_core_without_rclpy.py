"""The ROS-free core imports and works in a Python where every ROS import fails.

Each check runs in a fresh interpreter whose first meta path finder refuses ``rclpy``, every
``*_msgs`` / ``*_srvs`` / ``*_interfaces`` package and the rest of the ROS client stack, and records
each attempt, so even ``try: import rclpy / except ImportError`` inside the core is caught.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from support.paths import REPO

CORE_DIR = REPO / "semantic_recon_ros" / "core"

# Installs the blocker, runs the snippet (which fills the dict `result`), prints `result` as JSON.
ROS_BLOCKER_PRELUDE = textwrap.dedent(
    """
    import importlib, importlib.abc, json, pkgutil, sys, traceback

    ROS_PACKAGES = {"rclpy", "rcl", "rmw", "tf2_ros", "tf2_py", "message_filters", "cv_bridge",
                    "launch", "launch_ros", "ament_index_python", "rpyutils", "sensor_msgs_py"}

    def is_ros(module_name):
        top = module_name.partition(".")[0]
        return (top in ROS_PACKAGES or top.endswith(("_msgs", "_srvs", "_interfaces"))
                or top.startswith(("rosidl", "rmw_", "rcl_")))

    class RosImportBlocker(importlib.abc.MetaPathFinder):
        attempts = []

        def find_spec(self, fullname, path=None, target=None):
            if is_ros(fullname):
                self.attempts.append(fullname)
                raise ImportError(f"ROS import blocked in the core test: {fullname}")
            return None

    sys.meta_path.insert(0, RosImportBlocker())
    result = {}
    """
)

ROS_BLOCKER_EPILOGUE = textwrap.dedent(
    """
    result["blocked_imports"] = RosImportBlocker.attempts
    result["ros_modules_loaded"] = sorted(name for name in sys.modules if is_ros(name))
    print(json.dumps(result))
    """
)

IMPORT_EVERY_MODULE = textwrap.dedent(
    """
    package_name = sys.argv[1]
    failures = {}
    package = importlib.import_module(package_name)
    imported = [package_name]

    def on_error(name):
        failures[name] = traceback.format_exc()

    for info in pkgutil.walk_packages(package.__path__, prefix=package_name + ".", onerror=on_error):
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except Exception:
            failures[info.name] = traceback.format_exc()
    result["imported"] = imported
    result["failures"] = failures
    """
)


def run_with_ros_blocked(snippet: str, *args: str, python_path: Path = REPO) -> dict:
    """Run ``snippet`` in a fresh interpreter with ROS imports blocked; return its ``result`` dict."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(python_path), os.environ.get("PYTHONPATH", "")]))
    code = ROS_BLOCKER_PRELUDE + snippet + ROS_BLOCKER_EPILOGUE
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=python_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def module_names_under(package_dir: Path, package_name: str) -> set[str]:
    """Dotted names of every package and .py module below ``package_dir`` (from the file tree)."""
    names = set()
    for path in package_dir.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join((package_name, *parts)))
    return names


def test_every_core_module_imports_without_ros():
    result = run_with_ros_blocked(IMPORT_EVERY_MODULE, "semantic_recon_ros.core")

    assert result["failures"] == {}, "core modules failing without ROS:\n" + "\n".join(result["failures"].values())
    assert result["blocked_imports"] == [], f"core modules tried to import ROS: {result['blocked_imports']}"
    assert result["ros_modules_loaded"] == []
    # walk_packages only descends into regular packages: every .py file must have been imported
    not_imported = sorted(module_names_under(CORE_DIR, "semantic_recon_ros.core") - set(result["imported"]))
    assert not_imported == [], f"not importable as part of the package (missing __init__.py?): {not_imported}"


def test_core_projects_points_and_loads_classes_without_ros():
    snippet = textwrap.dedent(
        """
        import torch
        from semantic_recon_ros.core.camera import PinholeCamera
        from semantic_recon_ros.core.classes import load_class_set

        camera = PinholeCamera(fx=525.0, fy=520.0, cx=31.5, cy=23.5, width=64, height=48)
        depth = torch.linspace(0.5, 4.0, 64 * 48, dtype=torch.float64).reshape(48, 64)
        uv, z = camera.project(camera.backproject(depth))
        v, u = torch.meshgrid(torch.arange(48.0, dtype=torch.float64), torch.arange(64.0, dtype=torch.float64),
                              indexing="ij")
        result["max_pixel_error"] = float((uv - torch.stack((u, v), dim=-1)).abs().max())
        result["max_depth_error"] = float((z - depth).abs().max())
        classes = load_class_set()
        result["class_names"] = list(classes.names)
        result["class_colors"] = classes.colors.tolist()
        """
    )
    result = run_with_ros_blocked(snippet)

    assert result["blocked_imports"] == []
    assert result["max_pixel_error"] < 1e-9
    assert result["max_depth_error"] < 1e-12
    classes_yaml = yaml.safe_load((REPO / "config" / "classes.yaml").read_text())
    assert result["class_names"] == [entry["name"] for entry in classes_yaml["classes"]]
    assert result["class_colors"] == [entry["color"] for entry in classes_yaml["classes"]]


def test_what_the_mapping_node_runs_leaves_open3d_and_the_generator_unloaded():
    """Open3D (with its ML datasets, scikit-learn, pandas, plotly) adds about 300 MB to a process: the modules the
    node maps with (mapper, networks and their checkpoints, engines) must not load it, nor the synthetic generator
    that needs it; tools that render or preview import them themselves."""
    snippet = textwrap.dedent(
        """
        from semantic_recon_ros.core import completion, mapper, rgb_only_completion
        from semantic_recon_ros.core.models import load_checkpoint, single_view
        result["loaded"] = sorted(name for name in ("open3d", "sklearn", "semantic_recon_ros.core.synthetic")
                                  if name in sys.modules)
        """
    )
    assert run_with_ros_blocked(snippet)["loaded"] == []


def test_blocker_reports_a_module_that_imports_ros(tmp_path):
    """The import check above can fail: a package importing ROS (even guarded) is reported."""
    package = tmp_path / "fake_core"
    (package / "nested").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "geometry.py").write_text("import math\n")
    (package / "nested" / "__init__.py").write_text("")
    (package / "nested" / "node.py").write_text("try:\n    import rclpy\nexcept ImportError:\n    rclpy = None\n")
    (package / "images.py").write_text("from sensor_msgs.msg import Image\n")

    result = run_with_ros_blocked(IMPORT_EVERY_MODULE, "fake_core", python_path=tmp_path)

    assert set(result["blocked_imports"]) == {"rclpy", "sensor_msgs"}
    assert set(result["failures"]) == {"fake_core.images"}
    assert "fake_core.nested.node" in result["imported"]
    assert "fake_core.geometry" in result["imported"]
