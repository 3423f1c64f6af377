"""Processes that save a map and die by SIGKILL, for the crash tests of map saves (:class:`SaveCrasher`).

A server process (this module run as ``python -m support.crashing_saves``) imports torch and the package once;
for each trial it forks a process that loads a base map, then integrates one more frame and saves, again and
again, and that the test kills with SIGKILL at a moment of its choice (or that kills itself just before its
k-th filesystem call: ``kill_before_call``). Forking is safe: the server runs no torch op (so no thread pool
exists) and the forked process runs torch with one thread. Protocol: one JSON object per line, commands on
stdin, answers on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from support.paths import REPO

# the calls that change the file system (pathlib and shutil go through these)
FILESYSTEM_CALLS = ("mkdir", "rename", "replace", "symlink", "unlink", "rmdir", "fsync")


class SaveCrasher:
    """The test's handle on the server process (a context manager)."""

    def __init__(self, frames_file: Path, voxel_size: float) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "test"), str(REPO)]), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "support.crashing_saves", str(frames_file),
                                         str(voxel_size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=env, cwd=REPO)
        assert self._read()["ready"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the save crasher ended (exit code {self.process.wait()})")
        return json.loads(line)

    def start(self, out: Path, base: Path, saves: int | None = None, kill_before_call: int | None = None) -> int:
        """Fork a process that loads ``base`` and saves into ``out`` ``saves`` times (None: until killed); its pid
        once it finished loading."""
        command = {"out": str(out), "base": str(base), "saves": saves, "kill_before_call": kill_before_call}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        message = self._read()
        if "pid" not in message:
            raise RuntimeError(f"the save process failed before saving (its traceback is on stderr): {message}")
        return message["pid"]

    def wait(self) -> dict:
        """The end of the forked process: {"status": waitpid status, "saves": completed saves, "calls": file
        system calls it made}."""
        while True:
            message = self._read()
            if "status" in message:
                return message

    def __enter__(self) -> "SaveCrasher":
        return self

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


# ------------------------------------------------------------------ the server process
class FilesystemCalls:
    """Wraps the os functions that change files: while :attr:`active`, counts their calls and SIGKILLs this
    process just before call number ``kill_before`` (0-based)."""

    def __init__(self, kill_before: int | None) -> None:
        self.kill_before, self.count, self.active = kill_before, 0, False
        for name in FILESYSTEM_CALLS:
            setattr(os, name, self._counted(getattr(os, name)))

    def _counted(self, function):
        def call(*args, **kwargs):
            if self.active:
                if self.count == self.kill_before:
                    os.kill(os.getpid(), signal.SIGKILL)
                self.count += 1
            return function(*args, **kwargs)
        return call


def _save_until_killed(command: dict, frames, voxel_size: float, report) -> None:
    import torch

    from semantic_recon_ros.core.classes import load_class_set
    from semantic_recon_ros.core.config import VolumeConfig
    from semantic_recon_ros.core.mapper import MapFrame, Mapper

    torch.set_num_threads(1)
    mapper = Mapper(VolumeConfig(voxel_size=voxel_size), load_class_set())
    mapper.load(command["base"])
    calls = FilesystemCalls(command["kill_before_call"])
    report({"pid": os.getpid()})
    saves = 0
    while command["saves"] is None or saves < command["saves"]:
        camera, T_world_cam, color, depth, labels = frames[saves % len(frames)]
        mapper.integrate(MapFrame(camera, T_world_cam, color, depth, labels))
        calls.active = True  # only the save's own calls
        mapper.save(command["out"])
        calls.active = False
        saves += 1
        report({"saved": saves})
    report({"done": saves, "calls": calls.count})


def serve(frames_file: str, voxel_size: float) -> None:
    import pickle

    import torch  # imported, no op run: forking stays safe

    import semantic_recon_ros.core.mapper  # noqa: F401 -- imported once for every trial

    torch.set_num_threads(1)
    frames = pickle.loads(Path(frames_file).read_bytes())
    out = sys.stdout

    def report(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    report({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        read_end, write_end = os.pipe()  # the child's progress, relayed with its exit status
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            child_out = os.fdopen(write_end, "w")

            def child_report(message: dict) -> None:
                child_out.write(json.dumps(message) + "\n")
                child_out.flush()
            code = 1
            try:
                _save_until_killed(command, frames, voxel_size, child_report)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_end)
        last = {"saves": 0, "calls": None}
        with os.fdopen(read_end) as progress:
            for message_line in progress:
                message = json.loads(message_line)
                if "pid" in message:
                    report(message)
                elif "saved" in message:
                    last["saves"] = message["saved"]
                elif "done" in message:
                    last["calls"] = message["calls"]
        _, status = os.waitpid(pid, 0)
        report({"status": status, **last})


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]))
