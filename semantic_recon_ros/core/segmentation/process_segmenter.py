"""A segmenter in its own process, so that a live mapper's Python threads never wait for it.

TFLite's ``Invoke`` and the numpy post-processing hold Python's global interpreter lock for up to a quarter
of a second per frame (measured: a spinning Python thread stalled 0.25 s at a time while the default model
segmented). In the ROS node that stalls the executor that receives images and TF, and frames are lost. A
:class:`ProcessSegmenter` runs :func:`~.model_segmenter.load_segmenter` in a child process (started with
``python -m semantic_recon_ros.core.segmentation.process_segmenter``, at a lower CPU priority) and talks to
it over pipes: the parent only waits on a pipe, which releases the lock.

Protocol (little-endian): the child first writes one JSON line ``{"class_names": [...], "description": str}``
(or ``{"error": str}``); then, per request, the parent writes ``height, width`` (two uint32) and the
(H, W, 3) uint8 color image, and the child answers with the (H, W, K) float16 probabilities.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading

import numpy as np

HEADER = struct.Struct("<II")


class ProcessSegmenter:
    """:func:`load_segmenter` ``(spec, class_names, num_threads=...)`` served by a child process.

    Raises ValueError (the child's message) when the segmenter cannot be loaded. ``predict`` raises
    RuntimeError when the child died. Call :meth:`close` when done (also closed at garbage collection).
    """

    def __init__(self, spec: str, class_names, num_threads: int = 1, niceness: int = 10):
        command = [sys.executable, "-m", __name__, json.dumps({"spec": str(spec), "class_names": list(class_names),
                                                              "num_threads": num_threads, "niceness": niceness})]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._lock = threading.Lock()
        hello = json.loads(self._process.stdout.readline() or b'{"error": "the segmenter process exited"}')
        if "error" in hello:
            self.close()
            raise ValueError(hello["error"])
        self.class_names = tuple(hello["class_names"])
        self.description = hello["description"]

    def __repr__(self) -> str:
        return f"{self.description} (own process)"

    def predict(self, color: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, K) float32 class probabilities of the project classes."""
        color = np.ascontiguousarray(color, dtype=np.uint8)
        height, width = color.shape[:2]
        size = height * width * len(self.class_names) * 2
        with self._lock:
            try:
                self._process.stdin.write(HEADER.pack(height, width) + color.tobytes())
                self._process.stdin.flush()
                payload = self._process.stdout.read(size)
            except (BrokenPipeError, OSError) as error:
                raise RuntimeError(f"the segmenter process failed: {error}") from None
        if len(payload) != size:
            raise RuntimeError(f"the segmenter process exited (code {self._process.poll()})")
        return np.frombuffer(payload, np.float16).reshape(height, width, -1).astype(np.float32)

    def close(self) -> None:
        """End the child process."""
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()


def _serve(options: dict) -> None:
    """Child: load the segmenter, then answer requests on stdin/stdout until stdin closes."""
    try:
        os.nice(options["niceness"])
    except OSError:
        pass
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")  # the protocol's channel; anything a library prints goes to stderr
    os.dup2(2, 1)
    try:
        from .model_segmenter import load_segmenter

        segmenter = load_segmenter(options["spec"], options["class_names"], num_threads=options["num_threads"])
        if segmenter is None:
            raise ValueError("no segmenter named")
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as error:
        stdout.write((json.dumps({"error": str(error)}) + "\n").encode())
        stdout.flush()
        return
    stdout.write((json.dumps({"class_names": list(segmenter.class_names), "description": repr(segmenter)}) + "\n")
                 .encode())
    stdout.flush()
    while header := stdin.read(HEADER.size):
        height, width = HEADER.unpack(header)
        color = np.frombuffer(stdin.read(height * width * 3), np.uint8).reshape(height, width, 3)
        stdout.write(segmenter.predict(color).astype(np.float16).tobytes())
        stdout.flush()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
