"""Locating the package's installed data files (config/, launch/, models) in any install layout."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_NAME = "semantic_recon_ros"


def share_file(relative: str) -> Path:
    """Path of ``relative`` (e.g. ``config/classes.yaml``) in the package's share directory.

    Looks in the source tree (editable installs, tests), then ``<prefix>/share/semantic_recon_ros``
    for pip and colcon installs. Raises FileNotFoundError listing every place tried.
    """
    package_dir = Path(__file__).resolve().parents[1]
    candidates = [package_dir.parent / relative, Path(sys.prefix) / "share" / PACKAGE_NAME / relative]
    if len(package_dir.parents) > 3:
        # colcon: <install>/<pkg>/lib/pythonX.Y/site-packages/<pkg> -> <install>/<pkg>/share/<pkg>
        candidates.append(package_dir.parents[3] / "share" / PACKAGE_NAME / relative)
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"{relative} not found; looked in: {tried}")


def resolve_setting(value: str | Path | None, default_file: str, what: str, installed: str,
                    folder_ok: bool = False) -> Path | None:
    """The file (or, with ``folder_ok``, folder) a setting that may say ``"default"`` names.

    ``""`` or None: nothing (None). ``"default"``: ``default_file`` among the installed share files (see
    :func:`share_file`). Anything else: a path (``~`` expanded). Raises FileNotFoundError when it does not exist:
    ``"<what> not found: <path>"``, or for ``"default"`` ``"<what> 'default': the <installed> is not installed
    (<every place looked in>)"``.
    """
    if value is None or str(value) == "":
        return None
    if str(value) == "default":
        try:
            return share_file(default_file)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{what} 'default': the {installed} is not installed ({error})") from None
    path = Path(value).expanduser()
    if not (path.exists() if folder_ok else path.is_file()):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path
