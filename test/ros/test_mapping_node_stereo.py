"""The mapping node in RGB-only mode with stereo geometry, as a separate process over real DDS, fed a bag of a
synthetic room without depth.

A synthetic room is rendered along its camera loop at 160x120 and written as a bag of color, camera_info and /tf
only (30 Hz stamps, no depth topic). Another process plays it with /clock to a node started with the shipped
config/mapping.yaml plus the shipped config/modes/rgb_only.yaml (stereo geometry) and every frame admitted: the node
estimates each frame's depth from earlier frames and fuses it like an RGB-D frame, and the published mesh lies on
the room's true surface (the generator's exact boxes). On Ctrl-C it saves that map.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from support.dds_processes import discovered_or_restarted, play_to_subscribers  # noqa: E402
from support.mapping_node_process import CONFIG, MapListener, node_log, start_node  # noqa: E402
from support.mcap_bags import write_color_only_bag  # noqa: E402
from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_ros.core.mapper import map_folder  # noqa: E402
from semantic_recon_ros.core.ply import read_semantic_ply  # noqa: E402
from semantic_recon_ros.core.synthetic import (DEFAULT_CAMERA, load_ground_truth, union_sdf,  # noqa: E402
                                               write_synthetic_scene)
from semantic_recon_ros.ros.pointcloud_conversions import pointcloud2_to_array  # noqa: E402

NUM_FRAMES = 45  # 1.5 s at 30 Hz
RGB_ONLY_PARAMS = CONFIG.parent / "modes" / "rgb_only.yaml"
OVERRIDES = {"use_sim_time": "true", "input_qos": "reliable", "status_period": "0.5", "mesh_rate": "2.0",
             "voxel_map_rate": "2.0", "checkpoint": "''", "segmenter": "''",
             "rgb_only_feature_rate": "0.0",  # every frame
             "queue_size": "60",  # every frame of the bag fits: nothing is lost to a stalled machine
             "save_on_shutdown": "true"}


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """(ground truth, bag) of a synthetic room at 160x120."""
    root = tmp_path_factory.mktemp("stereo_room")
    scene = write_synthetic_scene(root / "room", seed=6, num_frames=NUM_FRAMES, camera=DEFAULT_CAMERA.scaled(160, 120))
    write_color_only_bag(root / "room.mcap", list(open_sequence(scene)))
    return load_ground_truth(scene), root / "room.mcap"


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stereo_maps")


@pytest.fixture(scope="module")
def listener(dds):
    _, context = dds
    view = MapListener(context, "stereo_listener")
    yield view
    view.close()


@pytest.fixture(scope="module")
def node(dds, listener, output_dir, tmp_path_factory):
    env, _ = dds
    logs = tmp_path_factory.mktemp("stereo_node_logs")
    overrides = {**OVERRIDES, "output_dir": str(output_dir)}
    start = lambda: start_node(env, logs, overrides, extra_params_files=[RGB_ONLY_PARAMS])  # noqa: E731
    process = discovered_or_restarted(start(), start, listener.has_status, "the stereo node")
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_bag_without_depth_is_mapped_by_stereo_onto_the_true_surface(dds, node, listener, room):
    env, _ = dds
    truth, bag = room
    play_to_subscribers(bag, env)
    status = listener.wait_until_idle(timeout=180)
    print(f"\nstereo room: {status}")
    assert status["frames_in"] == NUM_FRAMES and status["integrated"] > NUM_FRAMES // 2, status
    assert set(status["dropped"]) <= {"no_stereo_source", "no_valid_depth"}, status
    assert 1 <= status["dropped"].get("no_stereo_source", 0) < NUM_FRAMES // 3  # until the camera has moved
    assert "stereo depth" in node_log(node)
    points, _, _ = listener.mesh()
    distance = np.abs(union_sdf(points.astype(np.float64), truth.scene.box_arrays)[0])
    print(f"mesh: {len(points) // 3} triangles, distance to the true surface median {np.median(distance) * 1000:.1f} "
          f"mm, p75 {np.percentile(distance, 75) * 1000:.1f} mm")
    assert len(points) // 3 > 1000
    assert np.median(distance) < 0.04 and np.percentile(distance, 75) < 0.08
    cloud = pointcloud2_to_array(listener.voxel_map)
    assert len(cloud) > 500 and (cloud["observed"] == 1).all()  # fused from the estimated depth, like RGB-D


def test_ctrl_c_saves_the_stereo_map(node, listener, output_dir):
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=120) == 0, node_log(node)
    assert "Traceback" not in node_log(node)
    folder = map_folder(output_dir).current()
    mesh, _ = read_semantic_ply(folder / "mesh_rgb.ply")
    assert mesh.num_triangles == len(listener.mesh()[0]) // 3
