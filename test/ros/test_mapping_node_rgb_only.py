"""The mapping node in RGB-only mode as a separate process over real DDS, fed a bag of a synthetic room without depth.

A synthetic room (seed ``ROOM_SEED``, one of the held-out test rooms) is rendered along its camera loop and written as a
bag of color, camera_info and /tf only (30 Hz stamps; no depth topic at all), with a writer independent of the package's
(``support.mcap_bags``). Another process plays it with /clock to a node started with the shipped config/mapping.yaml
plus rgb_only (atlas geometry) and an Atlas checkpoint (an untrained one: no trained Atlas model is shipped, so the
reconstruction's accuracy is not tested here; test_mapping_node_stereo.py tests the stereo geometry's): the node
subscribes to color and camera_info alone, back-projects the features of every third frame (rgb_only_feature_rate 10 Hz
of 30 Hz), its Atlas network runs over every chunk the views saw, mesh and voxel map show that prediction, and the map
saved on Ctrl-C holds exactly the features the core back-projects from the same frames. Nodes given a checkpoint that
cannot serve RGB-only mapping (the default one is not installed) stop at once with the reason.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch

rclpy = pytest.importorskip("rclpy")

from support.semantic_colors import vertex_labels  # noqa: E402
from support.atlas_checkpoints import untrained_atlas_checkpoint  # noqa: E402
from support.dds_processes import discovered_or_restarted, play_to_subscribers  # noqa: E402
from support.mapping_node_process import CAMERA_TOPICS, MapListener, node_log, start_node  # noqa: E402
from support.mcap_bags import write_color_only_bag  # noqa: E402
from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.completion import DEFAULT_CHECKPOINT_FILE, DEFAULT_RGB_ONLY_CHECKPOINT_FILE  # noqa: E402
from semantic_recon_ros.core.config.volume import VolumeConfig  # noqa: E402
from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_ros.core.map import SemanticTSDFVolume, load_volume  # noqa: E402
from semantic_recon_ros.core.mapper import map_folder  # noqa: E402
from semantic_recon_ros.core.meshing import extract_mesh  # noqa: E402
from semantic_recon_ros.core.ply import read_semantic_ply  # noqa: E402
from semantic_recon_ros.core.models import load_checkpoint  # noqa: E402
from semantic_recon_ros.core.resources import share_file  # noqa: E402
from semantic_recon_ros.core.rgb_only_features import ImageFeatureExtractor, feature_map_camera  # noqa: E402
from semantic_recon_ros.core.segmentation.process_segmenter import ProcessSegmenter  # noqa: E402
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene  # noqa: E402
from semantic_recon_ros.ros.pointcloud_conversions import pointcloud2_to_array  # noqa: E402

CLASSES = load_class_set()
ROOM_SEED = 900
NUM_FRAMES = 45  # 1.5 s at 30 Hz
FEATURE_RATE = 10.0  # the default rgb_only_feature_rate: every third frame
MAX_RANGE = 3.0
OVERRIDES = {"use_sim_time": "true", "rgb_only": "true", "rgb_only_geometry": "atlas", "input_qos": "reliable",
             "status_period": "0.5",
             "mesh_rate": "2.0", "voxel_map_rate": "2.0", "mesh_color_mode": "semantic", "completion_period": "1.0",
             "queue_size": "40",  # every admitted frame of the bag fits: nothing is lost to a stalled machine
             "save_on_shutdown": "true"}


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """(frames, bag) of the synthetic room at 160x120."""
    root = tmp_path_factory.mktemp("rgb_only_room")
    scene = write_synthetic_scene(root / "room", seed=ROOM_SEED, num_frames=NUM_FRAMES,
                                  camera=DEFAULT_CAMERA.scaled(160, 120))
    frames = list(open_sequence(scene))
    write_color_only_bag(root / "room.mcap", frames)
    return frames, root / "room.mcap"


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rgb_only_maps")


@pytest.fixture(scope="module")
def listener(dds):
    _, context = dds
    view = MapListener(context, "rgb_only_listener")
    yield view
    view.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_atlas_checkpoint(tmp_path_factory.mktemp("atlas") / "atlas.pt")


@pytest.fixture(scope="module")
def node(dds, listener, output_dir, checkpoint, tmp_path_factory):
    env, _ = dds
    logs = tmp_path_factory.mktemp("rgb_only_node_logs")
    overrides = {**OVERRIDES, "output_dir": str(output_dir), "checkpoint": str(checkpoint)}
    process = start_node(env, logs, overrides)
    try:
        process = discovered_or_restarted(process, lambda: start_node(env, logs, overrides), listener.has_status,
                                          "the RGB-only node")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def settled(listener: MapListener, timeout: float = 180.0) -> dict:
    """Two status messages in a row in which the node processed every frame it received, its network caught up with
    the newest map, and mesh and voxel map show that map's version; returns the last."""
    def done(status: dict) -> bool:
        completion = status["completion"]
        return (status["frames_in"] == status["integrated"] + sum(status["dropped"].values()) and not status["queue"]
                and completion["stamp_ns"] == status["map_stamp_ns"] > 0 and completion["chunks_pending"] == 0
                and status["mesh_version"] == status["voxel_map_version"] == status["map_version"])

    deadline, previous = time.monotonic() + timeout, None
    while True:
        status = listener.fresh_status(timeout)
        if done(status) and previous is not None and previous["map_version"] == status["map_version"]:
            return status
        previous = status if done(status) else None
        if time.monotonic() > deadline:
            pytest.fail(f"the RGB-only node did not settle within {timeout} s; last status: {status}")


def test_the_node_subscribes_to_color_alone_and_loads_the_atlas_checkpoint(node, listener, checkpoint):
    status = listener.fresh_status(30)
    completion = status["completion"]
    assert completion["active"] and completion["error"] is None and completion["mesh_source"] == "completed"
    assert completion["checkpoint"] == str(checkpoint)
    topics = listener.node.get_topic_names_and_types()
    subscribed = {topic for topic, _ in topics if listener.node.get_subscriptions_info_by_topic(topic)}
    assert {CAMERA_TOPICS["color"], CAMERA_TOPICS["info"]} <= subscribed
    assert not listener.node.get_subscriptions_info_by_topic(CAMERA_TOPICS["depth"])


def test_a_bag_without_depth_is_back_projected_at_the_feature_rate_and_reconstructed(dds, node, listener, room):
    env, _ = dds
    _, bag = room
    play_to_subscribers(bag, env)
    status = settled(listener)
    print(f"\nRGB-only room: {status}")
    admitted = len(range(0, NUM_FRAMES, 3))
    assert status["integrated"] == status["frames_in"] == admitted and not status["dropped"], status
    assert status["skipped_frames"] == NUM_FRAMES - admitted
    assert status["dropped_messages"].get("feature_rate") == 2 * (NUM_FRAMES - admitted)  # color and camera_info
    assert status["completion"]["chunks_run"] > 0
    points, colors, _ = listener.mesh()
    if len(points):
        assert (vertex_labels(colors) >= 0).all()  # every vertex carries the network's class
    cloud = pointcloud2_to_array(listener.voxel_map)
    assert (cloud["observed"] == 0).all() and (cloud["label"] >= 0).all()  # the prediction, never observations


def test_ctrl_c_saves_the_features_the_core_back_projects(node, listener, output_dir, checkpoint, room):
    frames = room[0]
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=120) == 0, node_log(node)
    assert "Traceback" not in node_log(node)
    folder = map_folder(output_dir).current()
    assert sorted(path.name for path in folder.iterdir()) == ["mesh_rgb.ply", "mesh_semantic.ply", "volume.pt"]
    saved = load_volume(folder / "volume.pt", "cpu")
    mesh, names = read_semantic_ply(folder / "mesh_rgb.ply")
    assert names == list(CLASSES.names) and mesh.num_triangles == extract_mesh(saved, source="completed").num_triangles
    network, info = load_checkpoint(checkpoint, "cpu")
    # DeepLab features: from the default segmenter in its own process, as the node runs it (float16 probabilities)
    segmenter = (ProcessSegmenter("default", CLASSES.names, num_threads=1)
                 if info.config.feature_source == "deeplab" else None)
    extractor = ImageFeatureExtractor(network, segmenter)
    reference = SemanticTSDFVolume(VolumeConfig(feature_dim=extractor.channels), CLASSES.names, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for frame in frames[::3]:
            reference.integrate_features(extractor(frame.color, frame.camera, frame.T_world_cam),
                                         feature_map_camera(frame.camera), frame.T_world_cam, max_range=MAX_RANGE)
    finally:
        torch.set_num_threads(threads)
        if segmenter is not None:
            segmenter.close()
    assert torch.equal(saved.grid.block_coords(), reference.grid.block_coords())
    for layer in ("features", "feature_weight"):
        assert torch.allclose(saved.grid.values(layer), reference.grid.values(layer), atol=1e-5), layer
    predicted = saved.grid.values("pred_weight") > 0
    assert torch.equal(predicted, saved.grid.values("feature_weight") > 0)  # the network predicted every seen voxel


@pytest.mark.parametrize("checkpoint, reason", [
    ("''", "rgb_only: RGB-only mapping needs an Atlas checkpoint"),
    ("default", f"the default RGB-only model is not installed ({DEFAULT_RGB_ONLY_CHECKPOINT_FILE} not found"),
    (str(share_file(DEFAULT_CHECKPOINT_FILE)), "model 's4r' completes a depth-fused RGB-D map; RGB-only mapping needs "
                                               "an Atlas checkpoint"),
])
def test_a_checkpoint_that_cannot_serve_stops_the_rgb_only_node(dds, tmp_path, checkpoint, reason):
    env, _ = dds
    process = start_node(env, tmp_path, {"rgb_only": "true", "rgb_only_geometry": "atlas", "checkpoint": checkpoint})
    assert process.wait(timeout=60) == 2
    assert reason in node_log(process)
