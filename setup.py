"""ament_python packaging: works with `colcon build` in a ROS 2 workspace and `pip install -e .` in a venv."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_NAME = "semantic_recon_ros"
VERSION = "0.1.0"  # equal to package.xml and semantic_recon_ros.__version__ (test/test_package_metadata.py)
SHARE_DIR = f"share/{PACKAGE_NAME}"


def share_data_files(folder: str, suffixes: tuple[str, ...] | None = None) -> list[tuple[str, list[str]]]:
    """(install dir, files) pairs installing every file under ``folder`` into the share dir, subfolders kept.

    ``suffixes`` (e.g. ``(".yaml", ".rviz")``) restricts the files; None takes all. A missing folder gives [].
    """
    by_dir: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if suffixes is not None and path.suffix not in suffixes:
            continue
        by_dir.setdefault(f"{SHARE_DIR}/{path.parent.as_posix()}", []).append(path.as_posix())
    return sorted(by_dir.items())


setup(
    name=PACKAGE_NAME,
    version=VERSION,
    packages=find_packages(include=["semantic_recon_ros", "semantic_recon_ros.*"]),
    # the fused CPU kernel is compiled from its source on first use (core/fusion_kernel)
    package_data={"semantic_recon_ros.core.map.fusion_kernel": ["integrate.cpp"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (SHARE_DIR, ["package.xml"]),
        *share_data_files("launch"),
        *share_data_files("config", (".yaml", ".rviz")),
        *share_data_files("models"),
    ],
    # Runtime dependencies come from rosdep (package.xml) in a ROS 2 workspace and from requirements.txt
    # in a venv; listing them here would make pip replace apt-installed packages.
    install_requires=[],
    zip_safe=False,
    maintainer="semantic_recon_ros maintainers",
    maintainer_email="maintainers@users.noreply.b-seed-4c06807e.example",
    description="Live semantic 3D reconstruction for ROS 2 (sparse TSDF + color + semantics).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "semantic-recon = semantic_recon_ros.cli:main",
            "mapping_node = semantic_recon_ros.ros.mapping_node:main",
        ],
    },
)
