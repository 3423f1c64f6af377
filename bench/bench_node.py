"""Benchmark: the running mapping node on a bag played at 30 Hz over real DDS (7-Scenes, or a synthetic building floor).

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

``--dataset building`` (issue 14) plays the camera tour of a synthetic 30 m x 20 m floor instead (rooms along a
corridor, ``semantic_recon_ros.core.synthetic.generate_floor``; rendered once into a bag cached in
bench/results/building_bag_*), with ``volume.max_blocks`` and ``volume.clearing_radius`` set, and also reports the
run over map size: for each range of map blocks the node's mean mesh time, the latency p50 / p90 from image to
mesh, integration time and rate, drops and RSS. The time series goes to bench/results/<plot name>.json and a plot
(mesh time and latency against blocks, frames and blocks over time, RSS over time) to docs/building-benchmark.png
(``--plot``). Goals: 30 frames/s integrated with the default model, no backlog, mesh update time flat (within 2x)
from the first room to the whole floor.

    nice -n 5 .venv/bin/python bench/bench_node.py --dataset building [--max-blocks 8000] [--clearing-radius 12]

``--rgb-only`` (issue 15) runs the node in RGB-only mode (config/modes/rgb_only.yaml layered over the base) on the
same 7-Scenes frames written without depth: with ``--rgb-only-geometry stereo`` (the default; camera_info carries
the color camera's focal length, bench/results/node_bag_<frames>_rgb_only_fx525) each admitted frame's depth comes
from plane-sweep stereo; with ``atlas`` (bench/results/node_bag_<frames>_rgb_only) the Atlas checkpoint
(``--checkpoint default``: the installed models/atlas_default.pt; DeepLab features from ``--segmenter``)
back-projects at most ``--feature-rate`` frames per second and reconstructs the map on the completion thread. Goal:
>= 10 frames/s, no backlog.

    nice -n 5 .venv/bin/python bench/bench_node.py --rgb-only [--rgb-only-geometry stereo|atlas] [--feature-rate 10]
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

from semantic_recon_ros.core.datasets.seven_scenes import COLOR_FOCAL_LENGTH

REPO = Path(__file__).resolve().parents[1]
SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
RESULTS = REPO / "bench" / "results"
CONFIG = REPO / "config" / "mapping.yaml"
SEC = 1_000_000_000
CAMERA_REMAPS = {"color/image_raw": "/camera/color/image_raw", "depth/image_raw": "/camera/depth/image_raw",
                 "color/camera_info": "/camera/color/camera_info"}
PLAYER = [sys.executable, "-m", "semantic_recon_ros.cli", "play-bag"]


def ensure_bag(frames: int, rgb_only: bool = False, color_focal: float | None = None) -> Path:
    """A bag of the first ``frames`` 7-Scenes frames stamped at 30 Hz (written once, then reused); ``rgb_only``:
    without depth images; ``color_focal``: camera_info with the color camera's focal length (pixels) instead of the
    sequence's (the depth camera's)."""
    import dataclasses

    from semantic_recon_ros.core.datasets import open_sequence
    from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig

    bag = RESULTS / (f"node_bag_{frames}" + ("_rgb_only" if rgb_only else "")
                     + ("" if color_focal is None else f"_fx{color_focal:g}"))
    if (bag / "metadata.yaml").is_file():
        return bag
    shutil.rmtree(bag, ignore_errors=True)
    sequence = open_sequence(SEVEN_SCENES).subset(max_frames=frames)
    with RosbagWriter(bag, RosbagWriterConfig(depth_encoding="16UC1")) as writer:
        for frame in sequence:
            if color_focal is not None:
                frame = dataclasses.replace(frame, camera=frame.camera.with_focal_length(color_focal))
            writer.write(dataclasses.replace(frame, depth=None) if rgb_only else frame)
    return bag


def ensure_building_bag(seed: int, max_frames: int | None) -> tuple[Path, dict]:
    """A bag of the camera tour of synthetic floor ``seed`` (640x480, 30 Hz stamps), rendered once.

    The frames go straight from the renderer into the bag (no image files in between); the bag's folder is named
    by a hash of the floor's boxes and poses, so a changed generator renders a new one. Returns the bag and a
    description of the floor (also in ``floor.json`` beside the bag).
    """
    import dataclasses
    import hashlib

    from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig
    from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, SceneRenderer, floor_camera_path, generate_floor

    floor = generate_floor(seed)
    poses = floor_camera_path(floor)
    if max_frames is not None:
        poses = poses[:max_frames]
    digest = hashlib.sha256(json.dumps(floor.scene.to_dict()).encode() + poses.tobytes()).hexdigest()[:10]
    bag = RESULTS / f"building_bag_seed{seed}_{len(poses)}_{digest}"
    info_file = bag.with_name(bag.name + ".json")
    if (bag / "metadata.yaml").is_file() and info_file.is_file():
        return bag, json.loads(info_file.read_text())
    shutil.rmtree(bag, ignore_errors=True)
    start = time.monotonic()
    renderer = SceneRenderer(floor.scene)
    config = RosbagWriterConfig(depth_encoding="16UC1")
    with RosbagWriter(bag, config) as writer:
        for index, pose in enumerate(poses):
            frame = renderer.render(DEFAULT_CAMERA, pose, index)
            writer.write(dataclasses.replace(frame, labels=None))  # the node segments color itself
            if index % 500 == 0:
                print(f"rendered {index}/{len(poses)} frames ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    info = {"seed": seed, "floor_m": floor.scene.room_size.round(2).tolist(), "rooms": len(floor.rooms),
            "boxes": len(floor.scene.boxes), "frames": len(poses), "seconds_at_30hz": round(len(poses) / 30, 1),
            "render_and_write_s": round(time.monotonic() - start, 1)}
    info_file.write_text(json.dumps(info, indent=1))
    return bag, info


def cdr_stamp_ns(raw: bytes, offset: int) -> int:
    """A builtin_interfaces/Time at ``offset`` of a CDR payload (after the 4-byte encapsulation header)."""
    sec, nanosec = struct.unpack_from("<iI", raw, 4 + offset)
    return sec * SEC + nanosec


class Monitor:
    """Receives the node's status and mesh and the camera's color images (raw) in this process."""

    def __init__(self, context, rgb_only: bool = False) -> None:
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
        self.mesh_events: list[tuple[float, float]] = []  # (arrival, latency) of meshes whose image was seen
        self.statuses: list[tuple[float, dict]] = []
        self.node.create_subscription(Image, CAMERA_REMAPS["color/image_raw"], self._on_image, 100, raw=True)
        self.node.create_subscription(MarkerArray, "/mesh", self._on_mesh, MESH_QOS, raw=True)
        self.node.create_subscription(String, "/mapping_node/status", self._on_status, 10)
        if rgb_only:  # the bag's depth topic has no message, but the player waits for a subscriber on every topic
            self.node.create_subscription(Image, CAMERA_REMAPS["depth/image_raw"], lambda raw: None, 1, raw=True)
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
                self.mesh_events.append((now, now - self.image_arrival[stamp]))

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

    if args.dataset == "building":
        bag, args.floor_info = ensure_building_bag(args.floor_seed, args.frames)
        args.frames = args.floor_info["frames"]
    else:
        stereo = args.rgb_only and args.rgb_only_geometry == "stereo"
        bag = ensure_bag(args.frames, args.rgb_only, COLOR_FOCAL_LENGTH if stereo else None)
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    env.update(ROS_DOMAIN_ID=str(args.domain_id), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", PYTHONUNBUFFERED="1")
    os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA")
    overrides = {"use_sim_time": "true", "volume.voxel_size": str(args.voxel_size), "input_qos": args.qos,
                 "mesh_rate": str(args.mesh_rate), "status_period": "0.5", "torch_threads": str(args.torch_threads),
                 "checkpoint": args.checkpoint or "''",  # '' (quoted) is the empty string on the command line
                 "segmenter": args.segmenter or "''", "segmentation_rate": str(args.segmentation_rate)}
    if args.rgb_only:
        overrides.update(rgb_only="true", rgb_only_geometry=args.rgb_only_geometry)
        if args.feature_rate is not None:
            overrides["rgb_only_feature_rate"] = str(args.feature_rate)
    if args.max_blocks is not None:
        overrides["volume.max_blocks"] = str(args.max_blocks)
    if args.clearing_radius is not None:
        overrides["volume.clearing_radius"] = str(args.clearing_radius)
    if args.mesh_region_size is not None:
        overrides["mesh_region_size"] = str(args.mesh_region_size)
    if args.queue_size is not None:
        overrides["queue_size"] = str(args.queue_size)
    config = CONFIG
    if args.node_source is not None:  # the node (only) runs this source tree's package, e.g. a `git archive` of HEAD
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(args.node_source), env.get("PYTHONPATH"))))
        config = args.node_source / "config" / "mapping.yaml"
    command = [sys.executable, "-m", "semantic_recon_ros.ros.mapping_node", "--ros-args", "--params-file", str(config)]
    if args.rgb_only:  # as a user runs it: the mode's parameter file over the base
        command += ["--params-file", str(config.parent / "modes" / "rgb_only.yaml")]
    for name, value in overrides.items():
        command += ["-p", f"{name}:={value}"]
    for topic, remapped in CAMERA_REMAPS.items():
        command += ["-r", f"{topic}:={remapped}"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    node_log = open(RESULTS / f"node_{args.dataset}.log", "w")  # a pipe nobody reads would block the node's logging
    node = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=node_log, text=True,
                            cwd=args.node_source)  # python -m puts the working directory first on sys.path
    process = psutil.Process(node.pid)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    monitor = Monitor(context, args.rgb_only)
    samples: list[tuple[float, float, float]] = []  # (time, cpu %, rss MB)
    loads: list[tuple[float, float]] = []  # (time, the machine's 1-minute load average)
    try:
        deadline = time.monotonic() + 60
        while not monitor.statuses:
            if time.monotonic() > deadline or node.poll() is not None:
                node_log.flush()
                log = (RESULTS / f"node_{args.dataset}.log").read_text()
                raise RuntimeError(f"the node did not start: {log[-3000:]}")
            time.sleep(0.1)
        player = subprocess.Popen([*PLAYER, str(bag), "--clock", "--rate", str(args.rate),
                                   "--wait-for-subscribers", "90"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        process.cpu_percent()
        start, end = None, None  # first image seen, player finished
        while end is None or time.monotonic() < end + args.settle:
            time.sleep(0.5)
            samples.append((time.monotonic(), process.cpu_percent(), process.memory_info().rss / 1e6))
            loads.append((time.monotonic(), os.getloadavg()[0]))
            with monitor.lock:
                if start is None and monitor.image_arrival:
                    start = min(monitor.image_arrival.values())
            if end is None and player.poll() is not None:
                end = time.monotonic()
        with monitor.lock:
            statuses = list(monitor.statuses)
            latencies = list(monitor.latencies)
            mesh_events = list(monitor.mesh_events)
            received_images = len(monitor.image_arrival)
    finally:
        monitor.close()
        rclpy.try_shutdown(context=context)
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        node_log.close()
    result = summarize(args, statuses, latencies, samples, start, end, received_images)
    playing_loads = [load for t, load in loads if start is not None and start <= t <= end]
    result["machine load average (1 min) during playback: mean / max (2 cores)"] = (
        f"{np.mean(playing_loads):.1f} / {max(playing_loads):.1f}" if playing_loads else "-")
    if args.dataset == "building":
        result["over map size"] = building_report(args, statuses, mesh_events, samples, loads, start, end)
    return result


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
        "frame sets received by the node": final["frames_in"] + final.get("skipped_frames", 0),
        **({"skipped over rgb_only_feature_rate": final["skipped_frames"]} if args.rgb_only else {}),
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


def building_report(args, statuses, mesh_events, samples, loads, start, end) -> list[dict]:
    """The run over map size (rows per range of blocks), with the time series saved and plotted."""
    t0 = start if start is not None else statuses[0][0]
    statuses = [(t, s) for t, s in statuses if t >= t0 - 0.5]  # from the status before the first image on
    times = np.array([t for t, _ in statuses])
    blocks = np.array([s["blocks"] for _, s in statuses])
    integrated = np.array([s["integrated"] for _, s in statuses])
    dropped = np.array([sum(s["dropped"].values()) for _, s in statuses])

    def blocks_at(t: float) -> int:
        index = int(np.searchsorted(times, t, side="right")) - 1
        return int(blocks[max(index, 0)])

    events = [(t, latency, blocks_at(t)) for t, latency in mesh_events]
    edges = np.linspace(0, max(int(blocks.max()), 1), 7)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        last = high == edges[-1]
        periods = [i for i in range(len(statuses) - 1)
                   if low <= blocks[i] < high or (last and blocks[i] == high)]
        in_bucket = [latency for _, latency, b in events if low <= b < high or (last and b == high)]
        mesh_ms = [statuses[i + 1][1]["mesh_ms"] for i in periods if statuses[i + 1][1]["mesh_ms"] is not None]
        integrate_ms = [statuses[i + 1][1]["integrate_ms"] for i in periods
                        if statuses[i + 1][1]["integrate_ms"] is not None]
        seconds = sum(times[i + 1] - times[i] for i in periods)
        rows.append({
            "blocks": f"{low:.0f}-{high:.0f}",
            "seconds": round(float(seconds), 1),
            "integrated / s": round(sum(integrated[i + 1] - integrated[i] for i in periods) / seconds, 1)
            if seconds else "-",
            "dropped": int(sum(dropped[i + 1] - dropped[i] for i in periods)),
            "queue mean": round(float(np.mean([statuses[i + 1][1]["queue"] for i in periods])), 1) if periods else "-",
            "integrate ms (median)": round(float(np.median(integrate_ms)), 1) if integrate_ms else "-",
            "meshes": len(in_bucket),
            "mesh ms (median / max)": (f"{np.median(mesh_ms):.0f} / {max(mesh_ms):.0f}" if mesh_ms else "-"),
            "latency p50 / p90 (s)": (f"{np.percentile(in_bucket, 50):.2f} / {np.percentile(in_bucket, 90):.2f}"
                                      if in_bucket else "-"),
            "node RSS max (MB)": round(max(statuses[i + 1][1]["rss_mb"] for i in periods), 0) if periods else "-",
        })
    series = {
        "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, dict, type(None)))},
        "start": t0, "end": end,
        "statuses": [{"t": round(t - t0, 3), **s} for t, s in statuses],
        "mesh_events": [{"t": round(t - t0, 3), "latency": latency, "blocks": b} for t, latency, b in events],
        "samples": [{"t": round(t - t0, 3), "cpu": cpu, "rss_mb": rss, "load": load}
                    for (t, cpu, rss), (_, load) in zip(samples, loads)],
        "buckets": rows,
    }
    (RESULTS / f"{args.plot.stem}.json").write_text(json.dumps(series, indent=0))
    plot_building(series, args.plot, args)
    return rows


def plot_building(series: dict, path: Path, args) -> None:
    """Mesh time and latency against map blocks, frames and blocks over time, RSS over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    statuses = [s for s in series["statuses"]]
    t = np.array([s["t"] for s in statuses])
    blocks = np.array([s["blocks"] for s in statuses])
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    # a status's mesh_ms is the mean over the meshes since the previous status: placed at that status's map size
    meshed = [(previous["blocks"], s["mesh_ms"]) for previous, s in zip(statuses, statuses[1:])
              if s["mesh_ms"] is not None]
    if meshed:
        ax.scatter(*zip(*meshed), s=8, color="tab:blue", label="mesh update (mean per 0.5 s status period)")
        edges = np.linspace(0, max(blocks.max(), 1), 7)
        centres, medians = [], []
        for low, high in zip(edges[:-1], edges[1:]):
            values = [ms for b, ms in meshed if low <= b < high or (high == edges[-1] and b == high)]
            if values:
                centres.append((low + high) / 2)
                medians.append(np.median(values))
        ax.plot(centres, medians, "o-", color="tab:orange", label="median per range of blocks")
        if medians:
            ax.axhline(2 * medians[0], color="gray", ls="--", lw=0.8, label="goal: within 2x of the first range")
    ax.set_xlabel("map size (blocks of 8^3 voxels)")
    ax.set_ylabel("mesh update time (ms)")
    ax.set_title("mesh update time vs map size")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[0, 1]
    events = series["mesh_events"]
    if events:
        ax.scatter([e["blocks"] for e in events], [e["latency"] for e in events], s=8, color="tab:gray",
                   alpha=0.6, label="each mesh")
        edges = np.linspace(0, max(blocks.max(), 1), 7)
        centres, p50, p90 = [], [], []
        for low, high in zip(edges[:-1], edges[1:]):
            values = [e["latency"] for e in events if low <= e["blocks"] <= high]
            if values:
                centres.append((low + high) / 2)
                p50.append(np.percentile(values, 50))
                p90.append(np.percentile(values, 90))
        ax.plot(centres, p50, "o-", color="tab:green", label="p50")
        ax.plot(centres, p90, "s-", color="tab:red", label="p90")
    ax.set_xlabel("map size (blocks)")
    ax.set_ylabel("latency image -> mesh (s)")
    ax.set_title("mesh latency vs map size")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1, 0]
    ax.plot(t, [s["integrated"] for s in statuses], color="tab:blue", label="frames integrated")
    ax.plot(t, [sum(s["dropped"].values()) for s in statuses], color="tab:red", label="frames dropped")
    ax.plot(t, np.clip(t * 30 * args.rate, 0, args.frames), ":", color="black",
            label=f"frames played ({30 * args.rate:g} Hz)")
    if series["end"] is not None:
        ax.axvline(series["end"] - series["start"], color="gray", lw=0.8)
    ax.set_xlabel("time since the first image (s)")
    ax.set_ylabel("frames")
    twin = ax.twinx()
    twin.plot(t, blocks, color="tab:orange", label="map blocks")
    twin.set_ylabel("map blocks")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    ax.set_title("frames and map size over time")
    ax = axes[1, 1]
    samples = series["samples"]
    ax.plot([x["t"] for x in samples], [x["rss_mb"] for x in samples], color="tab:purple", label="node RSS")
    ax.plot(t, [s["volume_mb"] for s in statuses], color="tab:olive", label="volume (status volume_mb)")
    ax.set_xlabel("time since the first image (s)")
    ax.set_ylabel("MB")
    ax.set_title("memory over time")
    twin = ax.twinx()
    twin.plot([x["t"] for x in samples], [x["load"] for x in samples], color="lightgray", lw=0.8,
              label="machine load average (1 min)")
    twin.set_ylabel("load average (2 cores)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    info = getattr(args, "floor_info", {})
    fig.suptitle(f"mapping node on a synthetic {info.get('floor_m', ['?', '?'])[0]:g} x "
                 f"{info.get('floor_m', ['?', '?'])[1]:g} m floor ({info.get('rooms')} rooms, {args.frames} frames "
                 f"640x480 at {30 * args.rate:g} Hz), {args.voxel_size * 100:g} cm, "
                 f"checkpoint {args.checkpoint or 'none'}, "
                 f"max_blocks {args.max_blocks}, clearing_radius {args.clearing_radius} m"
                 + (f"\n{args.label}" if getattr(args, "label", "") else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="7scenes", choices=["7scenes", "building"],
                        help="7scenes (real frames) or building (the tour of a synthetic 30 m x 20 m floor)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames in the bag, 30 Hz stamps (default: 600 7-Scenes frames; the whole building tour)")
    parser.add_argument("--floor-seed", type=int, default=0, help="building: seed of the synthetic floor")
    parser.add_argument("--max-blocks", type=int, default=None,
                        help="volume.max_blocks (default: config/mapping.yaml's; building: 8000)")
    parser.add_argument("--clearing-radius", type=float, default=None,
                        help="volume.clearing_radius in metres (default: config/mapping.yaml's; building: 12)")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "building-benchmark.png",
                        help="building: the plot to write (the time series goes to bench/results/<its stem>.json)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback rate (1 = 30 Hz)")
    parser.add_argument("--voxel-size", type=float, default=0.04)
    parser.add_argument("--qos", default="sensor_data", choices=["sensor_data", "reliable", "system_default"])
    parser.add_argument("--mesh-rate", type=float, default=1.0)
    parser.add_argument("--mesh-region-size", type=float, default=None,
                        help="mesh_region_size in metres (default: config/mapping.yaml's)")
    parser.add_argument("--queue-size", type=int, default=None,
                        help="queue_size, frames waiting for integration (default: config/mapping.yaml's)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--checkpoint", default="default",
                        help="completion network: 'default' (the node's default), a file, or '' (fusion only); with "
                             "--rgb-only-geometry atlas the Atlas network ('default': models/atlas_default.pt)")
    parser.add_argument("--rgb-only", action="store_true",
                        help="7scenes: the node's RGB-only mode (config/modes/rgb_only.yaml) on the frames without depth")
    parser.add_argument("--rgb-only-geometry", default="stereo", choices=["stereo", "atlas"],
                        help="--rgb-only: the node's rgb_only_geometry (stereo: camera_info carries the color "
                             f"camera's focal length, {COLOR_FOCAL_LENGTH:g} px)")
    parser.add_argument("--feature-rate", type=float, default=None,
                        help="--rgb-only: the node's rgb_only_feature_rate (frames mapped per second at most; default: "
                             "the mode file's)")
    parser.add_argument("--segmenter", default="default",
                        help="live keyframe segmenter: 'default' (the node's default), a model, or '' (none)")
    parser.add_argument("--segmentation-rate", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to keep watching after playback")
    parser.add_argument("--domain-id", type=int, default=int(np.random.default_rng().integers(100, 200)))
    parser.add_argument("--node-source", type=Path, default=None,
                        help="run the node from this source tree (its package and config/), e.g. an extracted "
                             "`git archive HEAD` to measure the committed code while the working tree changes")
    parser.add_argument("--label", default="", help="building: a second title line for the plot (what was measured)")
    parser.add_argument("--replot", type=Path, default=None,
                        help="building: only redraw --plot from a saved time series (bench/results/<name>.json)")
    args = parser.parse_args()
    if args.replot is not None:
        series = json.loads(args.replot.read_text())
        saved = argparse.Namespace(**series["args"])
        saved.label = args.label or getattr(saved, "label", "")
        plot_building(series, args.plot, saved)
        print(f"plot: {args.plot}")
        return 0
    if args.frames is not None and args.frames < 1:
        parser.error(f"--frames must be >= 1, got {args.frames}")
    if args.rgb_only and args.dataset != "7scenes":
        parser.error("--rgb-only runs on the 7scenes dataset")
    if args.dataset == "7scenes":
        args.frames = 600 if args.frames is None else args.frames
    else:
        args.max_blocks = 8000 if args.max_blocks is None else args.max_blocks
        args.clearing_radius = 12.0 if args.clearing_radius is None else args.clearing_radius
    result = run(args)
    by_size = result.pop("over map size", None)
    if by_size is not None:
        info = args.floor_info
        print(f"\nmapping node, synthetic floor seed {info['seed']} "
              f"({info['floor_m'][0]:g} x {info['floor_m'][1]:g} m, "
              f"{info['rooms']} rooms, {info['frames']} frames = {info['seconds_at_30hz']} s) 640x480 at "
              f"{args.rate * 30:g} Hz, {args.voxel_size * 100:g} cm, checkpoint {args.checkpoint or 'none'}, "
              f"segmenter {args.segmenter or 'none'}, volume.max_blocks {args.max_blocks}, volume.clearing_radius "
              f"{args.clearing_radius} m, input QoS {args.qos}, mesh_rate {args.mesh_rate}, mesh_region_size "
              f"{args.mesh_region_size or 'default'}, queue_size {args.queue_size or 'default'}\n")
        print("| measure | value |\n|---|---|")
        for name, value in result.items():
            print(f"| {name} | {value} |")
        print("\nover map size (status periods of 0.5 s grouped by the map's blocks at their start):\n")
        print("| " + " | ".join(by_size[0]) + " |\n|" + "---|" * len(by_size[0]))
        for row in by_size:
            print("| " + " | ".join(str(v) for v in row.values()) + " |")
        print(f"\nplot: {args.plot}, time series: {RESULTS / (args.plot.stem + '.json')}")
        return 0
    rate = "the mode file's" if args.feature_rate is None else f"{args.feature_rate:g}"
    mode = (f"RGB-only ({args.rgb_only_geometry}, checkpoint {args.checkpoint}, rgb_only_feature_rate {rate}, "
            f"segmenter {args.segmenter or 'none'}), " if args.rgb_only else "")
    print(f"\nmapping node, 7-Scenes 640x480 at {args.rate * 30:g} Hz, {mode}{args.voxel_size * 100:g} cm, "
          f"input QoS {args.qos}, mesh_rate {args.mesh_rate}, torch_threads {args.torch_threads}\n")
    print("| measure | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
