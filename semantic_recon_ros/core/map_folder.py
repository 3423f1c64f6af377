"""A saved map as one consistent set of files: numbered save folders and a ``current`` link switched atomically.

Layout of a map folder (the node's ``output_dir``, the ``--out`` of ``semantic-recon map``)::

    current -> maps/000012              the newest complete save (a relative symlink)
    maps/000012/                        volume.pt, mesh_rgb.ply, mesh_semantic.ply [, mesh_additions.ply]
    maps/000011/                        the save before it, kept for readers that resolved current just before
    volume.pt -> current/volume.pt      the usual names, as links through current
    mesh_rgb.ply -> current/mesh_rgb.ply
    mesh_semantic.ply -> current/mesh_semantic.ply

:meth:`MapFolder.save` writes every file into a new hidden folder under ``maps/``, fsyncs the files and the
folder, renames it to the next number and then switches ``current`` by renaming a new symlink over it (rename
is atomic): whenever the process stops, kill -9 included, ``current`` names either the old complete set or the
new one, never a mix. Each top-level name always opens a complete file of the newest save; a reader that needs
several files of one map state resolves ``current`` once (:meth:`MapFolder.current`, :meth:`MapFolder.file`)
and reads them there: that folder stays until the second save after it.

Saves into one folder are serialized by an ``flock`` on ``maps/.lock`` (threads and processes alike); each save
first removes what interrupted saves left behind (hidden temporary folders and links, save folders that never
became ``current``, older saves), as does :meth:`MapFolder.remove_leftovers` (e.g. at a node's start). A folder
in the layout of older versions (regular files at the top) becomes this layout at its first save.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

SAVES_DIR, CURRENT_LINK, LOCK_FILE = "maps", "current", ".lock"
_SAVE_NAME = re.compile(r"\d{6,}")  # maps/000012
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.\d+\.tmp")  # .current.<pid>.tmp, .volume.pt.<pid>.tmp (older versions too)

T = TypeVar("T")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class MapFolder:
    """The map folder ``directory`` holding the files ``names`` (see the module docstring)."""

    def __init__(self, directory: str | Path, names: Sequence[str]):
        self.directory = Path(directory).expanduser()
        self.names = tuple(names)

    # ------------------------------------------------------------------ reading
    def current(self) -> Path | None:
        """The folder of the newest complete save (``current`` resolved once), or None when there is none."""
        try:
            target = os.readlink(self.directory / CURRENT_LINK)
        except OSError:  # no link (never saved, or a folder in the layout of older versions)
            return None
        return self.directory / target

    def file(self, name: str) -> Path:
        """The file ``name`` of the newest complete save (in the top folder when there is no ``current``)."""
        return (self.current() or self.directory) / name

    # ------------------------------------------------------------------ writing
    def save(self, write: Callable[[Path], T]) -> tuple[Path, T]:
        """``write(folder)`` writes the files into an empty folder; they become the newest save at once.

        Returns (the new save folder, what ``write`` returned). When ``write`` raises (or the process stops), the
        previous save stays current and the partial folder is removed (at the next save or cleanup).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        saves = self.directory / SAVES_DIR
        with self._lock():
            self._remove_leftovers()
            new = saves / f".new.{os.getpid()}.{secrets.token_hex(4)}"
            new.mkdir()
            try:
                result = write(new)
                for path in new.iterdir():
                    _fsync(path)
                _fsync(new)
                number = max((int(p.name) for p in saves.iterdir() if _SAVE_NAME.fullmatch(p.name)), default=0) + 1
                folder = saves / f"{number:06d}"
                os.rename(new, folder)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
            _fsync(saves)
            self._link(CURRENT_LINK, f"{SAVES_DIR}/{folder.name}")  # the switch
            for name in self.names:  # the usual names (created once; older versions' regular files replaced)
                top = self.directory / name
                if (folder / name).is_file():
                    if not top.is_symlink() or os.readlink(top) != f"{CURRENT_LINK}/{name}":
                        self._link(name, f"{CURRENT_LINK}/{name}")
                elif top.is_symlink() or top.is_file():  # not part of this save (e.g. no completed mesh)
                    top.unlink()
            _fsync(self.directory)
            self._remove_leftovers()  # now the save before this one is the older kept one
        return folder, result

    def remove_leftovers(self, wait: bool = True) -> list[str]:
        """Remove what interrupted saves left (see the module docstring); returns the removed names (relative to
        the folder). Without ``wait``, does nothing while another thread or process saves into the folder."""
        if not (self.directory / SAVES_DIR).is_dir():  # never saved in this layout: only older versions' temporaries
            return self._remove_temporaries() if self.directory.is_dir() else []
        with self._lock(wait) as locked:
            return self._remove_leftovers() if locked else []

    @contextmanager
    def _lock(self, wait: bool = True) -> Iterator[bool]:
        saves = self.directory / SAVES_DIR
        saves.mkdir(exist_ok=True)
        fd = os.open(saves / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def _link(self, name: str, target: str) -> None:
        """Point ``name`` at ``target`` atomically (a new symlink renamed over the old name)."""
        temporary = self.directory / f".{name}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        os.symlink(target, temporary)
        os.replace(temporary, self.directory / name)

    def _remove_leftovers(self) -> list[str]:
        """Keep ``current`` and the newest save before it; remove every other save folder (partial, never switched
        to, or older), hidden temporaries under ``maps/`` and temporary links and files at the top (hold the lock)."""
        saves = self.directory / SAVES_DIR
        current = self.current()
        current_name = current.name if current is not None and current.parent == saves else None
        numbers = [p.name for p in saves.iterdir() if _SAVE_NAME.fullmatch(p.name)]
        keep = set()
        if current_name in numbers:
            keep.add(current_name)
            older = [name for name in numbers if int(name) < int(current_name)]
            keep.update(sorted(older, key=int)[-1:])
        removed = []
        for path in sorted(saves.iterdir()):  # hidden temporaries sort first
            name = path.name
            if name == LOCK_FILE or name in keep or not (name.startswith(".") or _SAVE_NAME.fullmatch(name)):
                continue
            if not name.startswith("."):  # hidden first: a crash while deleting leaves only a hidden name
                path = path.rename(saves / f".old.{os.getpid()}.{name}")
            _remove(path)
            removed.append(f"{SAVES_DIR}/{name}")
        return removed + self._remove_temporaries()

    def _remove_temporaries(self) -> list[str]:
        """Remove the temporary links and files (``.<name>.<pid>.tmp``) of the folder's own names at the top."""
        owned, removed = {CURRENT_LINK, *self.names}, []
        for path in sorted(self.directory.iterdir()):
            match = _TEMPORARY.fullmatch(path.name)
            if match and match["name"] in owned:
                _remove(path)
                removed.append(path.name)
        return removed
