"""The fused C++ CPU kernel (``integrate.cpp``: integration, and the marching cubes of meshing), compiled on first
use.

:func:`load` builds the kernel with torch's JIT extension builder (g++ and ninja) into
``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), in a folder of its own for this source
and environment (:func:`build_directory`: a hash of integrate.cpp's content, the compile flags, the Python
and torch installation and the compiler). Checkouts with the same source and environment share one build,
and a different source never overwrites another's library: it gets another folder. Later calls and later
processes reuse the built library (about a second). Processes that start together build once: one holds
torch's lock file in the folder while compiling, the others wait for it. ``scripts/setup_venv.sh`` builds it
once, so maps and tests do not pay the compile. When compiling fails, :func:`load` warns once, naming a file
with the compiler's output, and returns None: :class:`~semantic_recon_ros.core.map.tsdf_volume.SemanticTSDFVolume`
then integrates with the torch back-end (:class:`~semantic_recon_ros.core.map.fusion_backends.TorchFusion`),
which is also the reference the kernel is tested against.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("integrate.cpp")
MODULE_NAME = "semantic_recon_fusion_kernel"
OPS_NAMESPACE = "semantic_recon_ros"  # TORCH_LIBRARY name in integrate.cpp
# No fused multiply-add: the kernel must round every float operation as the torch path does; no trapping
# math lets g++ vectorize the loops that compute every voxel and keep what applies (same results).
COMPILE_FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
_BUILD_LOCK = threading.Lock()  # one build per process even when volumes integrate in several threads
# torch's builder holds a lock file in the build folder while compiling and waits, without a timeout, while it
# exists; a build killed midway leaves it behind. A build takes 10-70 s, so an older lock file is stale.
STALE_LOCK_S = 180.0


def build_directory() -> Path:
    """Folder the kernel is compiled into: named after the Python and torch version (for people looking in the
    cache) and :func:`build_key` (so that only the same source built the same way shares it)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / f"{MODULE_NAME}-{python}-torch{torch.__version__}-{build_key()}"


def build_key() -> str:
    """16 hex digits of a SHA-256 over all the built library depends on: the content of integrate.cpp (not its
    path, so checkouts share a build), the compile flags, the Python executable and prefix, torch's version and
    installation folder (its headers are compiled in), and the C++ compiler's path and version."""
    from torch.utils.cpp_extension import get_cxx_compiler

    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (*COMPILE_FLAGS, sys.executable, sys.prefix, torch.__version__, str(Path(torch.__file__).parent),
                 *_compiler_identity(get_cxx_compiler())):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


@functools.cache
def _compiler_identity(compiler: str) -> tuple[str, str]:
    """(resolved path, first line of ``--version``) of the compiler torch's builder runs; what is known when it
    cannot be run (the build then fails and says why)."""
    path = shutil.which(compiler)
    if path is None:
        return compiler, "not found"
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        version = f"unusable: {type(err).__name__}"
    return os.path.realpath(path), (version.splitlines() or [""])[0]


def _place_source(folder: Path) -> Path:
    """integrate.cpp copied into its build folder, where the build compiles it from: the build command then names
    the same file whichever checkout loads the kernel, so ninja finds nothing to redo. Written only when missing
    (the folder's name holds the content's hash), atomically, so a process never compiles a partial copy and an
    existing copy keeps its time stamp."""
    target = folder / SOURCE.name
    source = SOURCE.read_bytes()
    if target.is_file() and target.read_bytes() == source:
        return target
    partial = folder / f".{SOURCE.name}.{os.getpid()}.{threading.get_ident()}"
    partial.write_bytes(source)
    os.replace(partial, target)
    return target


def _make_ninja_findable() -> None:
    """torch runs ``ninja`` from PATH; a venv that is not activated has the ninja wheel's binary off PATH."""
    if shutil.which("ninja") is not None:
        return
    try:
        import ninja
    except ImportError:
        return  # the build fails with torch's "Ninja is required" message, reported by load()
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _remove_stale_lock(folder: Path) -> None:
    lock = folder / "lock"
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink()
            warnings.warn(f"removed a stale kernel build lock {lock} (a build was interrupted)", RuntimeWarning,
                          stacklevel=4)
    except FileNotFoundError:
        pass


def load() -> Any | None:
    """The kernel's operators (``torch.ops.semantic_recon_ros``: ``band_block_keys``, ``lookup_slots``,
    ``fuse_voxels``, ``mesh_cubes``), or None if the kernel cannot be built (warned once). Cheap after the first call."""
    with _BUILD_LOCK:
        return _build()


@functools.cache
def _build() -> Any | None:
    from torch.utils import cpp_extension

    folder = None
    try:
        folder = build_directory()
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_lock(folder)
        _make_ninja_findable()
        # the lock file torch's builder holds while compiling makes other processes loading the same folder wait
        cpp_extension.load(name=MODULE_NAME, sources=[str(_place_source(folder))], extra_cflags=COMPILE_FLAGS,
                           build_directory=str(folder), is_python_module=False, verbose=False)
        return getattr(torch.ops, OPS_NAMESPACE)
    except Exception as err:  # compiler errors, missing ninja or g++, unwritable cache: all mean "no kernel"
        log = "(none: no build folder)"
        try:
            if folder is not None:
                (folder / "build-error.log").write_text(f"{type(err).__name__}: {err}\n")
                log = folder / "build-error.log"
        except OSError:
            log = "(unwritable)"
        warnings.warn(f"the fused CPU integration kernel could not be built ({type(err).__name__}; compiler "
                      f"output in {log}); integrating and meshing with the slower torch implementation",
                      RuntimeWarning, stacklevel=3)
        return None
