"""Shared fixtures: real 7-Scenes frames from ../shared (never copied into the package), an isolated DDS domain,
one torch thread for modules of many small tensor ops."""

from __future__ import annotations

import pytest
import torch

from semantic_recon_ros.core.datasets import open_sequence

from support.dds_processes import dds_environment, free_domain_id
from support.paths import SEGMENTER, SEVEN_SCENES


@pytest.fixture(scope="session")
def shared_data():
    """The shared data beside the checkout (``support.paths``); a test that needs it FAILS when it is missing
    (CI has it), it never skips."""
    missing = [str(path) for path in (SEVEN_SCENES, SEGMENTER) if not path.is_dir()]
    if missing:
        pytest.fail(f"shared data missing: {missing} (CI places ../shared beside the repository)")


@pytest.fixture(scope="session")
def seven_scenes(shared_data):
    return open_sequence(SEVEN_SCENES)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): its tests
    run many small tensor ops, which two threads make 5-10x slower on this 2-core machine when other processes keep
    the cores busy. Restored afterwards for the rest of the suite."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dds():
    """(environment for child processes, rclpy context of this process) on a free ROS domain.

    This process gets the same DDS environment as its children: a default-transport participant and a
    LARGE_DATA one do not reliably exchange endpoint discovery.
    """
    rclpy = pytest.importorskip("rclpy")
    domain_id = free_domain_id()
    env = dds_environment(domain_id)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY"):
            patch.delenv(name, raising=False)
        for name in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS"):
            patch.setenv(name, env[name])
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        try:
            yield env, context
        finally:
            rclpy.try_shutdown(context=context)
