"""The C-level exit deadline ends a process whose GIL is held by a C call that never returns (as rclpy's
``destroy_node`` did at shutdown: no Python-level timeout can act then); cancelled, it does nothing. Each case runs
in a child process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

HELD_GIL = """
import ctypes
from semantic_recon_ros.ros.exit_deadline import exit_after
cancel = exit_after({deadline}, {code})
{before}
print("ready", flush=True)
ctypes.PyDLL(None).sleep({hold})  # PyDLL keeps the GIL during the call
print("returned", flush=True)
"""


def run_child(deadline: float, code: int, hold: int, before: str = "") -> tuple[subprocess.CompletedProcess, float]:
    script = textwrap.dedent(HELD_GIL).format(deadline=deadline, code=code, hold=hold, before=before)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - start


@pytest.mark.parametrize("code", [0, 3])
def test_the_deadline_ends_a_process_held_in_c_with_its_exit_code(code):
    result, elapsed = run_child(deadline=0.5, code=code, hold=30)
    assert result.returncode == code, result.stderr
    assert result.stdout.split() == ["ready"], result.stdout
    assert elapsed < 20, elapsed  # the held call would take 30 s


def test_a_cancelled_deadline_lets_the_process_run_on():
    result, elapsed = run_child(deadline=0.3, code=3, hold=1, before="cancel()")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ready", "returned"], result.stdout
    assert elapsed >= 1
