"""Package metadata agrees across package.xml, setup.py and the Python package, and entry points resolve."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import PathDistribution

import pytest
from catkin_pkg.package import parse_package

import semantic_recon_ros

from support.paths import REPO


@pytest.fixture(scope="module")
def setup_py_metadata(tmp_path_factory) -> PathDistribution:
    """Metadata that the current setup.py declares (egg_info written to a temp dir, not the repo)."""
    egg_base = tmp_path_factory.mktemp("egg_info")
    proc = subprocess.run(
        [sys.executable, "setup.py", "--quiet", "egg_info", "--egg-base", str(egg_base)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (egg_info,) = egg_base.glob("*.egg-info")
    return PathDistribution(egg_info)


@pytest.fixture(scope="module")
def package_xml():
    """package.xml parsed and validated by catkin_pkg (the parser colcon and rosdep use)."""
    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    return package


def test_versions_agree(setup_py_metadata, package_xml):
    assert package_xml.version == setup_py_metadata.version == semantic_recon_ros.__version__


def test_package_xml_is_an_ament_python_package_named_like_setup_py(setup_py_metadata, package_xml):
    assert package_xml.package_format == 3
    assert package_xml.get_build_type() == "ament_python"
    assert package_xml.name == setup_py_metadata.metadata["Name"] == "semantic_recon_ros"
    ament_marker = REPO / "resource" / package_xml.name
    assert ament_marker.is_file()


def test_every_console_script_resolves_to_a_callable(setup_py_metadata):
    scripts = [ep for ep in setup_py_metadata.entry_points if ep.group == "console_scripts"]
    assert "semantic-recon" in {ep.name for ep in scripts}
    for entry_point in scripts:
        module = importlib.import_module(entry_point.module)
        target = module
        for attribute in entry_point.attr.split("."):
            target = getattr(target, attribute)
        assert callable(target), f"{entry_point.name} -> {entry_point.value} is not callable"
