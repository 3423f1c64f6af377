"""Benchmark: the running mapping node on a 7-Scenes bag played at 30 Hz over real DDS.

Writes a bag of real 640x480 7-Scenes frames (cached in bench/results/node_bag_<frames>), starts the
node as its own process (config/mapping.yaml + use_sim_time, the given voxel size, input QoS and mesh
rate), plays the bag from another process with /clock, and watches from this process:

* the node's ~/status (frames received, integrated, dropped by reason, queue length);
* the mesh topic (raw CDR, only the header stamp is read): latency = mesh arrival - arrival of the color
  image with the stamp the mesh carries (both measured here, so clocks agree);
* the node process's CPU (percent of one core) and resident memory (psutil), every 0.5 s.

Prints a markdown table. Target at 4 cm on the 2-core machine: >= 15 frames/s integrated, memory
bounded, no growing backlog (the queue does not stay full).

    .venv/bin/python bench/bench_node.py [--frames 600] [--voxel-size 0.04] [--qos sensor_data] [--mesh-rate 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
RESULTS = REPO / "bench" / "results"
CONFIG = REPO / "config" / "mapping.yaml"
SEC = 1_000_000_000
CAMERA_REMAPS = {"color/image_raw": "/camera/color/image_raw", "depth/image_raw": "/camera/depth/image_raw",
                 "color/camera_info": "/camera/color/camera_info"}
PLAYER = [sys.executable, "-m", "semantic_recon_ros.cli", "play-bag"]


def ensure_bag(frames: int) -> Path:
    """A bag of the first ``frames`` 7-Scenes frames stamped at 30 Hz (written once, then reused)."""
    from semantic_recon_ros.core.datasets import open_sequence
    from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig

    bag = RESULTS / f"node_bag_{frames}"
    if (bag / "metadata.yaml").is_file():
        return bag
    shutil.rmtree(bag, ignore_errors=True)
    sequence = open_sequence(SEVEN_SCENES).subset(max_frames=frames)
    with RosbagWriter(bag, RosbagWriterConfig(depth_encoding="16UC1")) as writer:
        for frame in sequence:
            writer.write(frame)
    return bag


def cdr_stamp_ns(raw: bytes, offset: int) -> int:
    """A builtin_interfaces/Time at ``offset`` of a CDR payload (after the 4-byte encapsulation header)."""
    sec, nanosec = struct.unpack_from("<iI", raw, 4 + offset)
    return sec * SEC + nanosec


class Monitor:
    """Receives the node's status and mesh and the camera's color images (raw) in this process."""

    def __init__(self, context) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        from semantic_recon_ros.ros.mapping_node import MESH_QOS

        self.node = rclpy.create_node("bench_monitor", context=context)
        self.lock = threading.Lock()
        self.image_arrival: dict[int, float] = {}
        self.latencies: list[float] = []
        self.statuses: list[tuple[float, dict]] = []
        self.node.create_subscription(Image, CAMERA_REMAPS["color/image_raw"], self._on_image, 100, raw=True)
        self.node.create_subscription(MarkerArray, "/mesh", self._on_mesh, MESH_QOS, raw=True)
        self.node.create_subscription(String, "/mapping_node/status", self._on_status, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_image(self, raw: bytes) -> None:
        with self.lock:
            self.image_arrival[cdr_stamp_ns(raw, 0)] = time.monotonic()

    def _on_mesh(self, raw: bytes) -> None:
        now = time.monotonic()
        (count,) = struct.unpack_from("<I", raw, 4)
        if count == 0:
            return
        stamp = cdr_stamp_ns(raw, 4)  # header of the first marker
        with self.lock:
            if stamp in self.image_arrival:
                self.latencies.append(now - self.image_arrival[stamp])

    def _on_status(self, msg) -> None:
        with self.lock:
            self.statuses.append((time.monotonic(), json.loads(msg.data)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.executor.shutdown()
        self.node.destroy_node()


def run(args: argparse.Namespace) -> dict:
    import rclpy

    bag = ensure_bag(args.frames)
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    env.update(ROS_DOMAIN_ID=str(args.domain_id), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", PYTHONUNBUFFERED="1")
    os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA")
    overrides = {"use_sim_time": "true", "volume.voxel_size": str(args.voxel_size), "input_qos": args.qos,
                 "mesh_rate": str(args.mesh_rate), "status_period": "0.5", "torch_threads": str(args.torch_threads),
                 "checkpoint": args.checkpoint or "''",  # '' (quoted) is the empty string on the command line
                 "segmenter": args.segmenter or "''", "segmentation_rate": str(args.segmentation_rate)}
    command = [sys.executable, "-m", "semantic_recon_ros.ros.mapping_node", "--ros-args", "--params-file", str(CONFIG)]
    for name, value in overrides.items():
        command += ["-p", f"{name}:={value}"]
    for topic, remapped in CAMERA_REMAPS.items():
        command += ["-r", f"{topic}:={remapped}"]
    node = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(node.pid)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    monitor = Monitor(context)
    samples: list[tuple[float, float, float]] = []  # (time, cpu %, rss MB)
    try:
        deadline = time.monotonic() + 60
        while not monitor.statuses:
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError(f"the node did not start: {node.stderr.read() if node.poll() is not None else ''}")
            time.sleep(0.1)
        player = subprocess.Popen([*PLAYER, str(bag), "--clock", "--rate", str(args.rate),
                                   "--wait-for-subscribers", "90"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        process.cpu_percent()
        start, end = None, None  # first image seen, player finished
        while end is None or time.monotonic() < end + args.settle:
            time.sleep(0.5)
            samples.append((time.monotonic(), process.cpu_percent(), process.memory_info().rss / 1e6))
            with monitor.lock:
                if start is None and monitor.image_arrival:
                    start = min(monitor.image_arrival.values())
            if end is None and player.poll() is not None:
                end = time.monotonic()
        with monitor.lock:
            statuses = list(monitor.statuses)
            latencies = list(monitor.latencies)
            received_images = len(monitor.image_arrival)
    finally:
        monitor.close()
        rclpy.try_shutdown(context=context)
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
    return summarize(args, statuses, latencies, samples, start, end, received_images)


def summarize(args, statuses, latencies, samples, start, end, received_images) -> dict:
    """Numbers of the run, over the playback window [first image, player exit]."""
    playing = [(t, s) for t, s in statuses if start is not None and start <= t <= end]
    final = statuses[-1][1]
    per_period = [s["completion"]["network_ms"] for _, s in statuses if (s.get("completion") or {}).get("network_ms")]
    network_ms = float(np.mean(per_period)) if per_period else float("nan")  # each status: runs since the last one
    first_integrated = next((t for t, s in statuses if s["integrated"] > 0), start)
    last_change = max((t for (t, s), (_, p) in zip(statuses[1:], statuses) if s["integrated"] != p["integrated"]),
                      default=end)
    queue = [s["queue"] for _, s in playing]
    cpu = [c for t, c, _ in samples if start is not None and start <= t <= end]
    rss = [m for _, _, m in samples]
    third = max(1, len(rss) // 3)
    return {
        "frames in bag": args.frames,
        "color images received (monitor)": received_images,
        "frame sets received by the node": final["frames_in"],
        "integrated": final["integrated"],
        "dropped": json.dumps(final["dropped"]),
        "integrated / s (first to last integration)": round(final["integrated"] / max(last_change - first_integrated, 1e-9), 1),
        "input frames / s": round(args.rate * 30, 1),
        "queue length: mean / max during playback": f"{np.mean(queue):.1f} / {max(queue)} of {final['queue_size']}",
        "latency image -> mesh publish: median / p90 (s)": (f"{np.median(latencies):.2f} / {np.percentile(latencies, 90):.2f}"
                                                             if latencies else "-"),
        "node CPU during playback: mean (% of one core)": round(float(np.mean(cpu)), 0) if cpu else "-",
        "node RSS: first third / last third / max (MB)": (f"{np.mean(rss[:third]):.0f} / {np.mean(rss[-third:]):.0f} / "
                                                          f"{max(rss):.0f}"),
        "map: blocks / volume MB": f"{final['blocks']} / {final['volume_mb']}",
        "completion: runs / chunks run / mean network ms per run": (
            f"{completion['runs']} / {completion['chunks_run']} / {network_ms:.0f}"
            if (completion := final.get("completion", {})).get("active") else "off"),
        "segmentation: keyframes segmented / per s / skipped": (
            f"{segmentation['runs']} / {segmentation['runs'] / max(last_change - first_integrated, 1e-9):.2f} / "
            f"{segmentation['skipped']}" if (segmentation := final.get("segmentation", {})).get("active") else "off"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="7-Scenes frames in the bag (30 Hz stamps)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback rate (1 = 30 Hz)")
    parser.add_argument("--voxel-size", type=float, default=0.04)
    parser.add_argument("--qos", default="sensor_data", choices=["sensor_data", "reliable", "system_default"])
    parser.add_argument("--mesh-rate", type=float, default=1.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--checkpoint", default="default",
                        help="completion network: 'default' (the node's default), a file, or '' (fusion only)")
    parser.add_argument("--segmenter", default="default",
                        help="live keyframe segmenter: 'default' (the node's default), a model, or '' (none)")
    parser.add_argument("--segmentation-rate", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to keep watching after playback")
    parser.add_argument("--domain-id", type=int, default=int(np.random.default_rng().integers(100, 200)))
    args = parser.parse_args()
    result = run(args)
    print(f"\nmapping node, 7-Scenes 640x480 at {args.rate * 30:g} Hz, {args.voxel_size * 100:g} cm, "
          f"input QoS {args.qos}, mesh_rate {args.mesh_rate}, torch_threads {args.torch_threads}\n")
    print("| measure | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
