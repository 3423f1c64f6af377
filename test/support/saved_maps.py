"""Checks of map folders written by Mapper.save (the node's output_dir, `semantic-recon map --out`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semantic_recon_ros.core.classes import ClassSet
from semantic_recon_ros.core.map import load_volume
from semantic_recon_ros.core.map_folder import CURRENT_LINK, LOCK_FILE, SAVES_DIR
from semantic_recon_ros.core.mapper import MESH_RGB_FILE, MESH_SEMANTIC_FILE, VOLUME_FILE, map_folder
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.ply import read_semantic_ply

SET = (VOLUME_FILE, MESH_RGB_FILE, MESH_SEMANTIC_FILE)
LAYOUT = sorted([CURRENT_LINK, SAVES_DIR, *SET])  # the top of a map folder


def assert_consistent(out: Path, classes: ClassSet) -> Path:
    """The current save of ``out`` is a complete set of one map state (its meshes are the observed mesh of its
    volume) and the names at the top lead to it; returns the save folder."""
    folder = map_folder(out).current()
    assert folder is not None and folder.parent.name == SAVES_DIR, f"{out}: no current save"
    volume = load_volume(folder / VOLUME_FILE, "cpu")
    expected = extract_mesh(volume, source="observed")
    rgb, names = read_semantic_ply(folder / MESH_RGB_FILE)
    semantic, _ = read_semantic_ply(folder / MESH_SEMANTIC_FILE)
    assert names == list(classes.names) and expected.num_triangles > 0
    for mesh in (rgb, semantic):
        np.testing.assert_array_equal(mesh.vertices, expected.vertices)
        # the same triangles; their order follows the regions of the mapper's mesh_region_size
        np.testing.assert_array_equal(np.unique(mesh.triangles, axis=0), np.unique(expected.triangles, axis=0))
        assert len(mesh.triangles) == len(expected.triangles)
        np.testing.assert_array_equal(mesh.labels, expected.labels)
    np.testing.assert_array_equal(rgb.colors, expected.colors)
    np.testing.assert_array_equal(semantic.colors, classes.colorize(expected.labels))
    for name in SET:
        assert (out / name).is_symlink() and (out / name).resolve() == (folder / name).resolve(), name
    return folder


def layout(out: Path) -> tuple[list[str], list[str]]:
    """(names at the top, names under maps/) of a map folder."""
    return sorted(p.name for p in out.iterdir()), sorted(p.name for p in (out / SAVES_DIR).iterdir())


def assert_clean(out: Path, *others: str) -> None:
    """Only the layout (and ``others``) at the top; the lock, the current save and at most the one before it."""
    top, saves = layout(out)
    assert top == sorted([*LAYOUT, *others])
    numbered = [name for name in saves if name != LOCK_FILE]
    assert LOCK_FILE in saves and numbered[-1] == map_folder(out).current().name and len(numbered) <= 2, saves
    assert all(name.isdigit() for name in numbered), saves


def stray(out: Path) -> list[str]:
    """What a clean layout lacks: temporaries of interrupted saves, saves never switched to, older saves."""
    top, saves = layout(out)
    current = map_folder(out).current()
    numbered = sorted((n for n in saves if n.isdigit()), key=int)
    kept = {current.name, *[n for n in numbered if int(n) < int(current.name)][-1:]}
    return sorted(set(top) - set(LAYOUT)) + [f"maps/{n}" for n in saves if n != LOCK_FILE and n not in kept]


def kind(leftover: str, out: Path) -> str:
    """What a :func:`stray` name of the map folder ``out`` is, for reports."""
    if leftover.startswith("maps/.new."):
        return "partial save folder"
    if leftover.startswith("maps/.old."):
        return "half-deleted save folder"
    if leftover.startswith("maps/"):
        newer = int(leftover.split("/")[1]) > int(map_folder(out).current().name)
        return "complete save not yet current" if newer else "older save not yet deleted"
    return "temporary link"
