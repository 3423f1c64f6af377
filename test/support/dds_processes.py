"""Real DDS between processes for the tests: an isolated ROS domain and the bag player as a child process.

Every test that talks DDS gets its own free ``ROS_DOMAIN_ID`` (100-199; isolating by domain, not by
LOCALHOST discovery, which would cancel LARGE_DATA) and ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``
(images do not fit the default shared-memory segment).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from support.paths import REPO
from semantic_recon_ros.commands.play_bag import EXIT_NO_SUBSCRIBERS


# Discovery takes ~0.5 s on a quiet machine and ~2 s under load; a loaded CI machine once needed > 30 s.
DISCOVERY_TIMEOUT_S = 90.0
# A node process gets this long per attempt to be discovered, start-up (torch import, kernel load) included.
NODE_DISCOVERY_S = 45.0


def free_domain_id() -> int:
    """A ROS domain id in [100, 200) on which no other participant shows up for 0.5 s."""
    rclpy = pytest.importorskip("rclpy")
    for domain_id in np.random.default_rng().permutation(np.arange(100, 200))[:10]:
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=int(domain_id))
        try:
            node = rclpy.create_node("domain_probe", context=context)
            time.sleep(0.5)
            if node.get_node_names() == ["domain_probe"]:
                return int(domain_id)
        finally:
            rclpy.try_shutdown(context=context)
    pytest.fail("no free ROS domain id in 100-199")


def dds_environment(domain_id: int) -> dict[str, str]:
    """The environment of child processes on ``domain_id`` (this repo importable, unbuffered output)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    env.update(ROS_DOMAIN_ID=str(domain_id), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def player_command(bag: Path, *options: str) -> list[str]:
    """`semantic-recon play-bag <bag> <options>` run by this interpreter (faulthandler on, for hangs)."""
    return [sys.executable, "-X", "faulthandler", "-m", "semantic_recon_ros.cli", "play-bag", str(bag), *options]


def play_to_subscribers(bag: Path, env: dict, rate: float = 1.0, attempts: int = 3, timeout: float = 180.0) -> str:
    """Play ``bag`` with /clock from another process once every topic has a subscriber; returns its stdout.

    A player that discovers no subscriber within DISCOVERY_TIMEOUT_S / attempts publishes nothing and exits
    (--require-subscribers); a new player process, a new DDS participant, then tries again. Fails the test
    when every attempt missed subscribers, or the player errors or hangs (its stack is printed).
    """
    wait = DISCOVERY_TIMEOUT_S / attempts
    for attempt in range(1, attempts + 1):
        player = subprocess.Popen(player_command(bag, "--clock", "--rate", str(rate), "--wait-for-subscribers",
                                                 str(wait), "--require-subscribers"),
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = player.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            player.send_signal(signal.SIGABRT)  # faulthandler prints where it hangs
            stdout, stderr = player.communicate()
            pytest.fail(f"the bag player hung:\n{stdout}\n{stderr}")
        if player.returncode != EXIT_NO_SUBSCRIBERS:
            break
        print(f"\n{bag.name}: player attempt {attempt} of {attempts} found no subscribers in {wait:g} s")
    assert player.returncode == 0, stderr
    discovery = [line for line in stderr.splitlines() if "every topic has a subscriber" in line]
    print(f"\n{bag.name}: {discovery[0].split(']: ')[-1] if discovery else 'no discovery line'}")
    return stdout


def stop_process(process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Ctrl-C, then kill what does not exit within ``timeout`` (a killed node may leave a kernel build half done)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def discovered_or_restarted(process: subprocess.Popen, restart: Callable[[], subprocess.Popen],
                            discovered: Callable[[], bool], what: str, attempts: int = 3) -> subprocess.Popen:
    """``process`` once ``discovered()`` holds, else a restarted one; returns the process that was discovered.

    Fast DDS LARGE_DATA now and then never completes endpoint discovery between two participants (seen in
    about one of six CI runs, for one of several node processes started together); a new process starts a new
    participant and discovery afresh. Fails the test when the process exits or every attempt misses.
    """
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            process = restart()
        deadline = time.monotonic() + NODE_DISCOVERY_S
        while time.monotonic() < deadline and process.poll() is None:
            if discovered():
                return process
            time.sleep(0.1)
        if process.poll() is not None:
            pytest.fail(f"{what} exited with status {process.returncode} before it was discovered")
        print(f"\n{what}: not discovered in {NODE_DISCOVERY_S:g} s, attempt {attempt} of {attempts}")
        stop_process(process)
    pytest.fail(f"{what} was not discovered in {attempts} attempts of {NODE_DISCOVERY_S:g} s")
