"""A node of the test process that spins in a background thread, for tests that talk to node processes."""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger


class SpinningTestNode:
    """``self.node`` spun by its own executor thread once :meth:`start_spinning` is called (subclasses create
    their subscriptions first); callbacks run in that thread, ``self.lock`` guards what they store."""

    def __init__(self, context, name: str) -> None:
        self.node = rclpy.create_node(name, context=context)
        self.lock = threading.RLock()
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def start_spinning(self) -> None:
        self.thread.start()

    def _spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, service: str, srv_type=Trigger, request=None, timeout: float = 30.0):
        """Call ``service`` and return its response; fails the test when it is absent or silent."""
        client = self.node.create_client(srv_type, service)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {service} not available"
            future = client.call_async(request if request is not None else srv_type.Request())
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert future.done(), f"no answer from {service} within {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.executor.shutdown()
        self.node.destroy_node()
