"""The mapping node with a completion network, as separate processes over real DDS.

The checkpoint is a real S4R file made here whose behaviour is known exactly: every weight is zero
except a local path through the full-resolution stem, decoder and heads, so the network predicts
``tanh(2/729 * (5x5x5 triangle-weighted sum of the observed TSDF))``, +1 (free) where no voxel within
2 voxels was observed, and the class "window" everywhere. A plane therefore stays where it was
observed and continues 2 voxels into unobserved space: holes up to 4 voxels wide are filled.

Three node processes run at once on one input stream that this process publishes (a camera sliding
along a wall at z = 1.5 m whose depth images miss a 10 cm vertical strip of the wall, at 10 frames/s,
with /tf and /clock, after one warm-up frame): ``/complete`` (the checkpoint, mesh_source both),
``/observed`` (the checkpoint, mesh_source observed, the default: the hole filled only on mesh_additions) and
``/mismatched`` (the same network saved for 5 cm voxels: refused, fusion only). The checkpoint has no
calibration: the network's surface is trusted within 3 voxels of the observed surface (the hole's columns are 1-2
voxels from it). This process fuses and completes the same frames with the core as the reference.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

rclpy = pytest.importorskip("rclpy")

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from support.dds_processes import discovered_or_restarted, stop_process  # noqa: E402
from support.rviz_marker_view import apply_marker_array, shown_mesh  # noqa: E402
from support.spinning_test_node import SpinningTestNode  # noqa: E402
from support.paths import REPO
from semantic_recon_ros.core.camera import PinholeCamera  # noqa: E402
from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.completion import CompletionEngine  # noqa: E402
from semantic_recon_ros.core.config.completion import CompletionConfig  # noqa: E402
from semantic_recon_ros.core.meshing import extract_mesh  # noqa: E402
from semantic_recon_ros.core.models import S4RNet, S4RNetConfig, save_checkpoint  # noqa: E402
from semantic_recon_ros.core.map import SemanticTSDFVolume  # noqa: E402
from semantic_recon_ros.core.config.volume import VolumeConfig  # noqa: E402
from semantic_recon_ros.ros.camera_info_conversions import camera_to_camera_info_msg  # noqa: E402
from semantic_recon_ros.ros.header_conversions import time_msg  # noqa: E402
from semantic_recon_ros.ros.image_conversions import color_to_image_msg, depth_to_image_msg  # noqa: E402
from semantic_recon_ros.core.completion import DEFAULT_CHECKPOINT_FILE  # noqa: E402
from semantic_recon_ros.core.resources import share_file  # noqa: E402
from semantic_recon_ros.ros.mapping_node import LATCHED_QOS, MESH_QOS, MappingNode  # noqa: E402
from semantic_recon_ros.ros.mesh_conversions import ADDITIONS_ALPHA  # noqa: E402
from semantic_recon_ros.core.voxel_map import surface_voxel_points  # noqa: E402
from semantic_recon_ros.ros.pointcloud_conversions import pointcloud2_to_array  # noqa: E402
from semantic_recon_ros.ros.transform_conversions import matrix_to_transform_stamped  # noqa: E402


CONFIG = REPO / "config" / "mapping.yaml"
SEC = 1_000_000_000
START_NS = 1_750_000_000 * SEC
WARM_UP_NS = START_NS - SEC  # the first frame once more, before the stream
CLASSES = load_class_set()
WINDOW = CLASSES.names.index("window")  # the network's class everywhere
VOXEL = 0.04
WALL_Z = 1.5  # metres in front of the camera path
STRIP = 0.05  # the depth images miss the wall where |world x| < STRIP: voxel columns x = -4, 0, 4 cm
CAMERA = PinholeCamera(200.0, 200.0, 159.5, 119.5, 320, 240)
FRAME_ID = "wall_camera"
NUM_FRAMES = 40
RATE_HZ = 10.0
CAMERA_TOPICS = {"color/image_raw": "/camera/color/image_raw", "depth/image_raw": "/camera/depth/image_raw",
                 "color/camera_info": "/camera/color/camera_info"}
NODE_PARAMETERS = {"use_sim_time": "true", "input_qos": "reliable", "status_period": "0.5", "mesh_rate": "2.0",
                   "voxel_map_rate": "2.0", "mesh_color_mode": "semantic", "completion_period": "0.5",
                   "queue_size": "10",  # 1 s of frames: other jobs on the machine may stall any process briefly
                   "segmenter": "''"}  # the completion network alone labels what it fills
NAMESPACES = ("complete", "observed", "mismatched")


# ------------------------------------------------------------------ the network and the data
def set_batch_norm(norm: nn.BatchNorm3d, scale: float, shift: float) -> None:
    """Make an eval-mode BatchNorm the affine map ``scale * x + shift`` (running statistics 0 and 1 - eps)."""
    norm.weight.data.fill_(scale)
    norm.bias.data.fill_(shift)
    norm.running_mean.zero_()
    norm.running_var.fill_(1.0 - norm.eps)


def hole_filling_network(width: int = 8) -> S4RNet:
    """A color-blind S4RNet of the default model's width computing the local function of the module docstring.

    Coarse levels output zeros (zero weights, BatchNorm shift 0), so the decoders see only the stem's features:
    stem channels relu(+-sum_3 tsdf), relu(sum_3 observed); TSDF decoder channels relu(+-sum_3 (c0 - c1)),
    relu(1 - sum_3 c2) (1 where nothing was observed within 2 voxels); head 2/729 (c0 - c1) + 20 c2.
    """
    network = S4RNet(S4RNetConfig(num_classes=CLASSES.num_classes, base_width=width, use_color=False, fusion_blocks=0))
    for parameter in network.parameters():
        parameter.data.zero_()
    for module in network.modules():
        if isinstance(module, nn.BatchNorm3d):
            set_batch_norm(module, 0.0, 0.0)
    stem = network.geometry_encoder.stem
    stem.conv.weight.data[0, 0] = 1.0  # input channels: tsdf * observed, observed
    stem.conv.weight.data[1, 0] = -1.0
    stem.conv.weight.data[2, 1] = 1.0
    set_batch_norm(stem.norm, 1.0, 0.0)
    refine = network.tsdf_decoder.refine[-1]  # full resolution
    refine.conv.weight.data[0, 0], refine.conv.weight.data[0, 1] = 1.0, -1.0
    refine.conv.weight.data[1, 0], refine.conv.weight.data[1, 1] = -1.0, 1.0
    refine.conv.weight.data[2, 2] = -1.0
    set_batch_norm(refine.norm, 1.0, 0.0)
    refine.norm.bias.data[2] = 1.0
    network.tsdf_head.weight.data[0, :3, 0, 0, 0] = torch.tensor([2 / 729, -2 / 729, 20.0])
    network.semantic_head.bias.data[WINDOW] = 10.0
    return network.eval()


def wall_frames() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(depth, color, T_world_cam) of a camera (optical axes = world axes) sliding along x in front of the wall."""
    frames = []
    u = np.arange(CAMERA.width)
    for x in np.linspace(-0.6, 0.6, NUM_FRAMES):
        pose = np.eye(4)
        pose[0, 3] = x
        world_x = (u - CAMERA.cx) / CAMERA.fx * WALL_Z + x
        depth = np.full(CAMERA.shape, WALL_Z, np.float32)
        depth[:, np.abs(world_x) < STRIP] = np.nan
        color = np.empty((*CAMERA.shape, 3), np.uint8)
        color[...] = np.stack([np.clip(120 + 60 * world_x, 0, 255), np.full_like(world_x, 60),
                               np.full_like(world_x, 200)], axis=-1).astype(np.uint8)[None]
        frames.append((depth, color, pose))
    return frames


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    network = hole_filling_network()
    save_checkpoint(folder / "wall.pt", network, CLASSES.names, voxel_size=VOXEL, truncation=4 * VOXEL)
    save_checkpoint(folder / "wall_5cm.pt", network, CLASSES.names, voxel_size=0.05, truncation=0.2)
    return {"good": folder / "wall.pt", "mismatched": folder / "wall_5cm.pt"}


@pytest.fixture(scope="module")
def reference(checkpoints) -> dict[str, SemanticTSDFVolume]:
    """The frames fused by the core, completed by the checkpoint (volume "completed") and not ("fused")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        volumes = {}
        for name in ("fused", "completed"):
            volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
            frames = wall_frames()
            for depth, color, pose in frames[:1] + frames:  # the nodes fuse a warm-up frame first
                volume.integrate(depth, CAMERA, pose, color=color)
            if name == "completed":
                stats = CompletionEngine.from_checkpoint(checkpoints["good"], volume, CompletionConfig()).run(
                    time_budget=float("inf"))
                assert stats.chunks_run > 0 and stats.chunks_pending == 0
            volumes[name] = volume
    finally:
        torch.set_num_threads(threads)
    return volumes


# ------------------------------------------------------------------ node processes and this process's view
def start_node(env: dict, logs: Path, namespace: str, overrides: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "semantic_recon_ros.ros.mapping_node", "--ros-args", "--params-file", str(CONFIG),
            "-r", f"__ns:=/{namespace}"]
    for name, value in {**NODE_PARAMETERS, **overrides}.items():
        args += ["-p", f"{name}:={value}"]
    for topic, remapped in CAMERA_TOPICS.items():
        args += ["-r", f"{topic}:={remapped}"]
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout.txt", "a") as stdout, open(logs / "stderr.txt", "a") as stderr:  # restarts append
        process = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.logs = logs
    return process


def node_log(process: subprocess.Popen) -> str:
    return (process.logs / "stdout.txt").read_text() + (process.logs / "stderr.txt").read_text()


@pytest.fixture(scope="module")
def nodes(dds, checkpoints, rig_node, tmp_path_factory):
    """The three node processes by namespace, each discovered by ``rig_node`` (restarted when it is not)."""
    env, _ = dds
    logs = tmp_path_factory.mktemp("node_logs")
    overrides = {
        "complete": {"checkpoint": str(checkpoints["good"]), "mesh_source": "both"},
        "observed": {"checkpoint": str(checkpoints["good"]), "mesh_source": "observed"},
        "mismatched": {"checkpoint": str(checkpoints["mismatched"]), "mesh_source": "both"},
    }

    def start(name: str) -> subprocess.Popen:
        with rig_node.lock:
            rig_node.views[name].status = None  # a restarted node must report anew
        return start_node(env, logs / name, name, overrides[name])

    processes = {name: start(name) for name in NAMESPACES}
    try:
        for name in NAMESPACES:
            processes[name] = discovered_or_restarted(processes[name], lambda: start(name),
                                                      lambda: rig_node.discovered(name), f"node /{name}")
        rig_node.wait_for_subscriptions()
        yield processes
    finally:
        for process in processes.values():  # Ctrl-C all first, so that they shut down in parallel
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes.values():
            stop_process(process, timeout=120)


class NodeView:
    """What this process receives from one node: latest status, voxel map, and the mesh as RViz would show it."""

    def __init__(self) -> None:
        self.status: dict | None = None
        self.status_count = 0
        self.voxel_map: PointCloud2 | None = None
        self.shown: dict = {}  # (ns, id) -> (frame_id, stamp ns, (3T, 3) triangle corners, (3T, 3) uint8 colors)
        self.additions: dict = {}  # the same for mesh_additions
        self.additions_alpha: set = set()  # every vertex alpha received on mesh_additions

    def on_mesh(self, msg: MarkerArray) -> None:
        apply_marker_array(self.shown, msg)

    def on_additions(self, msg: MarkerArray) -> None:
        apply_marker_array(self.additions, msg)
        self.additions_alpha |= {color.a for marker in msg.markers for color in marker.colors}

    def on_voxel_map(self, msg: PointCloud2) -> None:
        self.voxel_map = msg

    def on_status(self, msg: String) -> None:
        self.status = json.loads(msg.data)
        self.status_count += 1

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return shown_mesh(self.shown)[:2]

    def added_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return shown_mesh(self.additions)[:2]


class Rig(SpinningTestNode):
    """This process's node: publishes the camera stream, /tf and /clock; receives every node's outputs."""

    def __init__(self, context) -> None:
        super().__init__(context, "completion_test_rig")
        self.views = {name: NodeView() for name in NAMESPACES}
        for name, view in self.views.items():
            self.node.create_subscription(MarkerArray, f"/{name}/mesh", self._locked(view.on_mesh), MESH_QOS)
            self.node.create_subscription(MarkerArray, f"/{name}/mesh_additions", self._locked(view.on_additions),
                                          MESH_QOS)
            self.node.create_subscription(PointCloud2, f"/{name}/voxel_map", self._locked(view.on_voxel_map),
                                          LATCHED_QOS)
            self.node.create_subscription(String, f"/{name}/mapping_node/status", self._locked(view.on_status), 10)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.inputs = {topic: self.node.create_publisher(CameraInfo if "info" in topic else Image, topic, qos)
                       for topic in CAMERA_TOPICS.values()}
        self.tf = self.node.create_publisher(TFMessage, "/tf", qos)
        self.clock = self.node.create_publisher(Clock, "/clock", qos)
        self.start_spinning()

    def _locked(self, callback):
        def locked(msg) -> None:
            with self.lock:
                callback(msg)
        return locked

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.05)
        with self.lock:
            statuses = {name: view.status for name, view in self.views.items()}
        pytest.fail(f"timed out after {timeout} s waiting for {what}; statuses: {statuses}")

    def discovered(self, name: str) -> bool:
        """Node ``name`` sent a status and this process sees its subscriptions to every input, /tf and /clock."""
        with self.lock:
            if self.views[name].status is None:
                return False
        topics = [*CAMERA_TOPICS.values(), "/tf", "/clock"]
        return all(any(info.node_namespace == f"/{name}" for info in self.node.get_subscriptions_info_by_topic(topic))
                   for topic in topics)

    def wait_for_subscriptions(self, timeout: float = 30.0) -> None:
        """Every publisher of this process is matched with every node's subscription."""
        publishers = [*self.inputs.values(), self.tf, self.clock]
        self.wait_for(lambda: all(p.get_subscription_count() >= len(NAMESPACES) for p in publishers), timeout,
                      "every node's input subscriptions")

    def publish(self, depth: np.ndarray, color: np.ndarray, pose: np.ndarray, stamp_ns: int) -> None:
        self.clock.publish(Clock(clock=time_msg(stamp_ns)))
        self.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(pose, stamp_ns, "world", FRAME_ID)]))
        self.inputs[CAMERA_TOPICS["color/camera_info"]].publish(camera_to_camera_info_msg(CAMERA, stamp_ns, FRAME_ID))
        self.inputs[CAMERA_TOPICS["color/image_raw"]].publish(color_to_image_msg(color, stamp_ns, FRAME_ID))
        self.inputs[CAMERA_TOPICS["depth/image_raw"]].publish(depth_to_image_msg(depth, stamp_ns, FRAME_ID))

    def settled(self, name: str, timeout: float = 60.0) -> dict:
        """Wait until node ``name`` fused every frame it received, completed the newest map, and published the mesh
        and voxel map of its newest state, in two status messages in a row; returns the last status."""
        def done(status: dict) -> bool:
            completion = status["completion"]
            caught_up = not completion["active"] or (completion["stamp_ns"] == status["map_stamp_ns"]
                                                     and completion["chunks_pending"] == 0)
            return (status["frames_in"] == status["integrated"] + sum(status["dropped"].values())
                    and not status["queue"] and caught_up
                    and status["mesh_version"] == status["voxel_map_version"] == status["map_version"])

        view, previous = self.views[name], None
        deadline = time.monotonic() + timeout
        while True:
            seen = view.status_count
            self.wait_for(lambda: view.status_count > seen, timeout, f"a status of /{name}")
            with self.lock:
                status = view.status
            if done(status) and previous is not None and previous["map_version"] == status["map_version"]:
                break
            previous = status if done(status) else None
            if time.monotonic() > deadline:
                pytest.fail(f"/{name} did not settle within {timeout} s; last status: {status}")
        time.sleep(0.5)  # the outputs of that state were published before the status; let them arrive
        return status


@pytest.fixture(scope="module")
def rig_node(dds):
    _, context = dds
    rig = Rig(context)
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def rig(rig_node, nodes):
    """The test process's node, once every node process is discovered."""
    return rig_node


def voxel_map_points(rig: Rig, name: str) -> np.ndarray:
    with rig.lock:
        return pointcloud2_to_array(rig.views[name].voxel_map)


def voxel_coords(points: np.ndarray) -> np.ndarray:
    """(N,) voxel map points -> (N, 3) int64 voxel coordinates."""
    return np.round(np.stack([points["x"], points["y"], points["z"]], axis=1) / VOXEL).astype(np.int64)


def near_strip(points: np.ndarray) -> np.ndarray:
    """Points of the wall (within 4 voxels of the plane) across the strip, away from the wall's top and bottom edges."""
    return (np.abs(points["x"]) < 0.1) & (np.abs(points["y"]) < 0.7) & (np.abs(points["z"] - WALL_Z) < 0.17)


def packed_rgb(points: np.ndarray) -> np.ndarray:
    """The ``0x00RRGGBB`` colors (the PointCloud2 field is a FLOAT32 holding those bits)."""
    return points["rgb"].view(np.uint32) if points["rgb"].dtype.kind == "f" else points["rgb"]


def by_voxel(points: np.ndarray) -> dict:
    """{voxel coordinates: (observed, label, packed rgb)}."""
    return {tuple(c): (int(o), int(label), int(rgb)) for c, o, label, rgb in
            zip(voxel_coords(points).tolist(), points["observed"], points["label"], packed_rgb(points))}


# ------------------------------------------------------------------ tests, in order
def test_voxel_map_sources_select_observed_and_predicted_voxels(reference):
    """surface_voxel_points on the completed reference map, checked voxel by voxel against its layers."""
    volume, cfg = reference["completed"], reference["completed"].config
    B = cfg.block_size
    local = torch.cartesian_prod(*[torch.arange(B)] * 3)
    coords = (volume.grid.block_coords()[:, None, :] * B + local).reshape(-1, 3)
    layers = volume.grid.read_voxels(coords)
    observed, predicted = layers["weight"] > 0, layers["pred_weight"] > 0
    trusted = predicted & (layers["pred_confidence"] >= CompletionConfig().min_confidence)
    near = 1.0 / cfg.truncation_voxels  # within one voxel of the surface
    near_fused, near_predicted = layers["tsdf"].abs() <= near, layers["pred_tsdf"].abs() <= near
    expected = {"observed": observed & near_fused, "completed": predicted & near_predicted,
                "both": torch.where(observed, near_fused, trusted & near_predicted),
                "additions": ~observed & trusted & near_predicted}
    index = {tuple(c): i for i, c in enumerate(coords.tolist())}
    for source, mask in expected.items():
        points = surface_voxel_points(volume, 1.0, source)
        rows = torch.tensor([index[tuple(c)] for c in voxel_coords(points).tolist()], dtype=torch.int64)
        assert sorted(rows.tolist()) == mask.nonzero().squeeze(1).tolist(), source
        np.testing.assert_array_equal(points["observed"], observed[rows].numpy())
        labels = torch.where(predicted[rows], layers["pred_semantic"][rows].argmax(dim=1),
                             torch.full((len(rows),), -1))  # no 2D labels fused: labels only where predicted
        np.testing.assert_array_equal(points["label"], labels.numpy())
        fused_color = observed[rows, None] if source != "completed" else torch.zeros(len(rows), 1, dtype=torch.bool)
        color = torch.where(fused_color, layers["color"][rows], layers["pred_color"][rows] * 255).round().long()
        np.testing.assert_array_equal(packed_rgb(points), (color[:, 0] << 16 | color[:, 1] << 8 | color[:, 2]).numpy())
        confidence = torch.where(fused_color[:, 0], torch.ones(len(rows)), layers["pred_confidence"][rows])
        np.testing.assert_array_equal(points["surface_confidence"], confidence.numpy())
    assert int(expected["both"].sum()) > int(expected["observed"].sum()) > 0
    assert int(expected["completed"].sum()) > int(expected["both"].sum()) - int(expected["observed"].sum()) > 0
    with pytest.raises(ValueError, match="needs the completion network's predictions"):
        surface_voxel_points(reference["fused"], 1.0, "completed")


def test_a_checkpoint_that_does_not_fit_is_reported_and_the_others_load(rig, nodes, checkpoints):
    with rig.lock:
        statuses = {name: view.status for name, view in rig.views.items()}
    refused = statuses["mismatched"]["completion"]
    assert not refused["active"] and "voxel size 0.05 m, the map uses 0.04 m" in refused["error"], refused
    assert refused["mesh_source"] == "observed" and "runs" not in refused
    log = node_log(nodes["mismatched"])
    assert "cannot be used, mapping by fusion only" in log and "wall_5cm.pt" in log and "Traceback" not in log
    for name in ("complete", "observed"):
        completion = statuses[name]["completion"]
        assert completion["active"] and completion["error"] is None, completion
        assert completion["checkpoint"] == str(checkpoints["good"])
        assert "completion network" in node_log(nodes[name]) and "S4RNet" in node_log(nodes[name])
    assert statuses["complete"]["completion"]["mesh_source"] == "both"
    assert statuses["observed"]["completion"]["mesh_source"] == "observed"
    assert all(process.poll() is None for process in nodes.values())


def test_integration_keeps_up_while_the_network_completes(rig):
    frames = wall_frames()
    rig.publish(*frames[0], WARM_UP_NS)  # the first integration of a process loads the fusion kernel (~1 s)
    # (up to a minute when the kernel's source changed and it is compiled first)
    rig.wait_for(lambda: all(v.status["integrated"] == 1 for v in rig.views.values()), 150, "the warm-up frame")
    start = time.monotonic()
    for index, (depth, color, pose) in enumerate(frames):
        rig.publish(depth, color, pose, START_NS + index * SEC // 10)
        time.sleep(max(0.0, start + (index + 1) / RATE_HZ - time.monotonic()))
    statuses = {name: rig.settled(name) for name in NAMESPACES}
    for name, status in statuses.items():
        print(f"\n/{name}: {status}")
    for name, status in statuses.items():
        assert status["frames_in"] == status["integrated"] == NUM_FRAMES + 1 and not status["dropped"], (name, status)
        assert status["map_stamp_ns"] == START_NS + (NUM_FRAMES - 1) * SEC // 10
    # frames were fused while the network was computing, and then it caught up with the whole map
    for name in ("complete", "observed"):
        completion = statuses[name]["completion"]
        assert completion["integrated_while_computing"] > 0, completion
        assert completion["chunks_run"] > 0 and completion["errors"] == 0 and completion["blocks_allocated"] > 0
    assert statuses["complete"]["blocks"] > statuses["mismatched"]["blocks"]  # blocks for the predictions


def test_completed_voxels_fill_the_hole_flagged_unobserved(rig, reference):
    complete, observed, fused = (voxel_map_points(rig, name) for name in NAMESPACES)
    # the wall across the strip, as the core fuses and completes the same frames
    expected = surface_voxel_points(reference["completed"], 1.0, "both")
    got = by_voxel(complete[near_strip(complete)])
    assert got == by_voxel(expected[near_strip(expected)])
    filled = complete[near_strip(complete) & (complete["observed"] == 0)]
    filled_xyz = voxel_coords(filled) * VOXEL
    print(f"\n/complete voxel map: {len(complete)} points, {int((complete['observed'] == 0).sum())} filled by the "
          f"network; across the strip {len(got)} points, {len(filled)} filled")
    # the hole is filled: every voxel of the strip's centre column next to the wall plane, never observed
    centre = filled_xyz[(filled_xyz[:, 0] == 0) & (np.abs(filled_xyz[:, 2] - WALL_Z) < VOXEL)]
    assert len(np.unique(np.round(centre[:, 1] / VOXEL))) >= int(1.4 / VOXEL) - 1  # every row in |y| < 0.7 m
    assert (np.abs(filled_xyz[:, 0]) <= STRIP).all()  # only where the depth images had the hole
    assert (filled["label"] == WINDOW).all() and (packed_rgb(filled) == 128 << 16 | 128 << 8 | 128).all()  # predicted
    assert (filled["surface_confidence"] == 1.0).all()  # uncalibrated: trusted within 3 voxels of observations
    assert (complete["label"] == WINDOW).all()  # the network's labels wherever it predicted (everywhere here)
    # whatever the mesh shows, a node with a network sends the additions in its voxel map, flagged
    assert by_voxel(observed) == by_voxel(complete)
    # without a network: the observed voxels only, unlabeled; the same as the observed ones of the others
    assert (fused["observed"] == 1).all() and (fused["surface_confidence"] == 1).all()
    np.testing.assert_array_equal(voxel_coords(observed[observed["observed"] == 1]), voxel_coords(fused))
    assert (fused["label"] == -1).all()
    # the node keeps its voxel map by region (core/incremental_meshing.py): the same voxels in another order
    offline = voxel_coords(surface_voxel_points(reference["fused"], 1.0))
    assert len(fused) == len(offline)
    np.testing.assert_array_equal(np.unique(voxel_coords(fused), axis=0), np.unique(offline, axis=0))
    fused_xyz = voxel_coords(fused) * VOXEL
    assert not ((fused_xyz[:, 0] == 0) & (np.abs(fused_xyz[:, 2] - WALL_Z) < VOXEL)).any()


def test_mesh_source_switches_what_is_meshed(rig, reference):
    with rig.lock:
        meshes = {name: rig.views[name].mesh() for name in NAMESPACES}

    def across_the_hole(points: np.ndarray) -> np.ndarray:
        return (np.abs(points[:, 0]) < 0.03) & (np.abs(points[:, 1]) < 0.7) & (np.abs(points[:, 2] - WALL_Z) < 0.1)

    completed_points, completed_colors = meshes["complete"]
    hole = across_the_hole(completed_points)
    print("\nmesh triangles: " + ", ".join(f"/{n} {len(m[0]) // 3}" for n, m in meshes.items())
          + f"; /complete corners across the hole {int(hole.sum())}, |z - wall| max "
          f"{np.abs(completed_points[hole, 2] - WALL_Z).max() * 1000:.1f} mm")
    assert hole.sum() > 100 and np.abs(completed_points[hole, 2] - WALL_Z).max() < 0.01  # the plane continues
    assert (completed_colors == CLASSES.colors[WINDOW]).all()
    assert len(completed_points) // 3 == extract_mesh(reference["completed"], source="both").num_triangles
    for name in ("observed", "mismatched"):
        points, _ = meshes[name]
        assert not across_the_hole(points).any(), name  # the observed surface has the hole
        assert len(points) // 3 == extract_mesh(reference["fused"]).num_triangles
    # the default (/observed): the network's additions on their own topic, semi-transparent; with the observed
    # mesh they make the completed one. No network, no additions.
    with rig.lock:
        added = {name: rig.views[name].added_mesh() for name in NAMESPACES}
        alphas = {name: rig.views[name].additions_alpha for name in NAMESPACES}
    added_points, added_colors = added["observed"]
    assert across_the_hole(added_points).sum() > 100 and alphas["observed"] == {ADDITIONS_ALPHA}
    assert (added_colors == CLASSES.colors[WINDOW]).all()
    assert len(added_points) // 3 == extract_mesh(reference["completed"], source="additions").num_triangles
    assert len(added_points) + len(meshes["observed"][0]) == len(completed_points)
    assert len(added["complete"][0]) == len(added_points) and len(added["mismatched"][0]) == 0
    order = [np.lexsort(meshes[name][0].T) for name in ("observed", "mismatched")]
    np.testing.assert_array_equal(meshes["observed"][0][order[0]], meshes["mismatched"][0][order[1]])
    assert (meshes["observed"][1] == CLASSES.colors[WINDOW]).all()  # network labels on the observed surface
    assert (meshes["mismatched"][1] == np.array(CLASSES.unlabeled_color, np.uint8)).all()  # no labels at all


def test_reset_map_clears_the_predictions_and_completion_resumes(rig):
    before = rig.settled("complete")
    response = rig.call("/complete/mapping_node/reset_map")
    assert response.success, response.message
    time.sleep(1.5)  # three completion periods on an empty map
    empty = rig.settled("complete")
    assert empty["blocks"] == 0 and empty["completion"]["chunks_pending"] == 0
    assert empty["completion"]["chunks_run"] == before["completion"]["chunks_run"]  # nothing to complete
    with rig.lock:
        assert len(pointcloud2_to_array(rig.views["complete"].voxel_map)) == 0 and not rig.views["complete"].shown
        assert not rig.views["complete"].additions
    frames = wall_frames()
    for index in range(NUM_FRAMES // 2 - 3, NUM_FRAMES // 2 + 3):  # the camera in front of the hole again
        rig.publish(*frames[index], START_NS + (NUM_FRAMES + index) * SEC // 10)
        time.sleep(1 / RATE_HZ)
    after = rig.settled("complete")
    assert after["integrated"] == before["integrated"] + 6 and not after["dropped"]
    assert after["completion"]["chunks_run"] > before["completion"]["chunks_run"]
    refilled = voxel_map_points(rig, "complete")
    assert ((refilled["observed"] == 0) & near_strip(refilled)).any()


def test_nodes_shut_down_cleanly(nodes):
    for process in nodes.values():
        process.send_signal(signal.SIGINT)
    for name, process in nodes.items():
        assert process.wait(timeout=60) == 0, node_log(process)
        assert "Traceback" not in node_log(process), name


def test_a_node_with_default_parameters_completes_with_the_installed_default_model(dds):
    _, context = dds
    node = MappingNode(context=context)  # every parameter at its declared default
    try:
        assert node.checkpoint == share_file(DEFAULT_CHECKPOINT_FILE) and node.completion_error is None
        assert node.engine is not None and node.mesh_source == "observed"  # the additions apart, on mesh_additions
        assert node.engine.label_input  # the default model also reads fused 2D labels (none here: use_labels off)
        # it comes calibrated on the validation rooms, and only its confident surface is added
        assert "905-909" in node.engine.calibration.fitted_on
        assert node.engine.config.min_confidence == CompletionConfig().min_confidence > 0.5
        # and segments keyframes with the installed default segmenter
        assert node.segmentation is not None and node.segmenter_error is None
        assert node.status()["segmentation"]["active"] and repr(node.segmentation.segmenter).startswith("TFLite")
    finally:
        node.shutdown()
        node.destroy_node()
