"""SIGINT / SIGTERM received on their own thread, and the mapping node's shutdown when its executor never returns.

Each case runs in a child process whose main thread is blocked in C code that signals do not interrupt (standing
in for an executor stuck inside ``spin_once``), with a thread older than the handlers that the kernel may pick to
deliver the signal to, while this process sends it real signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("rclpy")

BLOCKED_MAIN_THREAD = """
import ctypes, os, sys, threading
libc = ctypes.CDLL(None)
threading.Thread(target=libc.sleep, args=(60,), daemon=True).start()  # a thread older than the handlers
from semantic_recon_ros.ros.shutdown_signals import ShutdownSignals

signals = ShutdownSignals("test_node", doing="saving the map").install()

def stuck():  # the main thread in C code that no signal interrupts, as inside an executor that never returns
    mutex = ctypes.create_string_buffer(64)  # all zero: an unlocked default pthread mutex
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # relocking a default mutex waits for good
"""


def run_child(script: str, signals: list[signal.Signals], pause: float = 0.3) -> subprocess.CompletedProcess:
    """Start ``script``, wait for its "ready" line, send ``signals`` ``pause`` seconds apart, return the result."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(BLOCKED_MAIN_THREAD) + textwrap.dedent(script)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    for signum in signals:
        child.send_signal(signum)
        time.sleep(pause)
    try:
        stdout, stderr = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = child.communicate()
        pytest.fail(f"the child did not exit after {signals}: {stdout} {stderr}")
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def test_signals_reach_their_thread_while_the_main_thread_is_stuck_and_later_ones_are_ignored():
    result = run_child("""
        def report():
            signals.wait(5)  # the second and third signal are on their way
            import time; time.sleep(1.0)
            print(f"received {signals.received}, ignored {signals.ignored}", flush=True)
            os._exit(0)
        signals.on_first(lambda: threading.Thread(target=report).start())
        print("ready", flush=True)
        stuck()
    """, [signal.SIGTERM, signal.SIGINT, signal.SIGINT])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "received SIGTERM, ignored 2"
    assert result.stderr.count("ignored: saving the map first") == 1, result.stderr  # reported once
    assert "KeyboardInterrupt" not in result.stderr


def test_on_first_after_the_signal_runs_at_once():
    result = run_child("""
        print("ready", flush=True)
        signals.wait()
        signals.on_first(lambda: print(f"late callback after {signals.received}", flush=True))
    """, [signal.SIGINT])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "late callback after SIGINT"


def test_a_node_whose_executor_never_returns_is_shut_down_by_the_watchdog(tmp_path):
    saved = tmp_path / "saved"
    result = run_child(f"""
        from types import SimpleNamespace
        from rclpy.logging import get_logger
        from semantic_recon_ros.ros.mapping_node import NodeShutdown

        class Node:  # what NodeShutdown uses of MappingNode; shutdown() saves, taking a while
            config = SimpleNamespace(save_on_shutdown=True, output_dir="out")
            def get_logger(self):
                return get_logger("test_node")
            def shutdown(self):
                import time; time.sleep(0.5)
                open({str(saved)!r}, "w").write("saved")

        shutdown = NodeShutdown(Node(), signals)
        threading.Thread(target=shutdown.unless_spinning_ends, kwargs={{"timeout": 1.0}}, daemon=True).start()
        print("ready", flush=True)
        stuck()
    """, [signal.SIGINT, signal.SIGINT])
    assert result.returncode == 0, result.stderr
    assert saved.read_text() == "saved"
    log = result.stdout + result.stderr
    assert "the executor did not return within 1 s of SIGINT: shutting down without it" in log, log
    assert "SIGINT: shutting down, saving the map into out first" in log, log
    assert "SIGINT ignored: saving the map first" in log, log
