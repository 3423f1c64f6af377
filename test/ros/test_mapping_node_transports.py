"""The node's compressed image transports over real DDS: a bag of png color + 16UC1 compressedDepth, played from
another process on ``.../image_raw/compressed`` and ``.../image_raw/compressedDepth``, maps the same volume, block
for block and bit for bit, as the raw bag of the same frames read by `semantic-recon map`."""

from __future__ import annotations

import json
import signal

import pytest
import torch

rclpy = pytest.importorskip("rclpy")

from support.dds_processes import discovered_or_restarted, play_to_subscribers  # noqa: E402
from support.mapping_node_process import CONFIG, MapListener, node_log, start_node  # noqa: E402
from semantic_recon_ros.cli import main as cli_main  # noqa: E402
from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig  # noqa: E402
from semantic_recon_ros.core.map import load_volume  # noqa: E402
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene  # noqa: E402

START = 1_700_000_000 * 1_000_000_000
OVERRIDES = {
    "use_sim_time": "true", "use_labels": "true", "input_qos": "reliable", "status_period": "0.5",
    "queue_size": "10", "checkpoint": "''", "segmenter": "''",
    "color_transport": "compressed", "depth_transport": "compressed",
}


def test_compressed_transports_map_the_same_volume_as_raw_images(dds, tmp_path):
    env, context = dds
    scene = write_synthetic_scene(tmp_path / "room", seed=5, num_frames=10, camera=DEFAULT_CAMERA.scaled(320, 240))
    frames = list(open_sequence(scene))
    bags = {}
    for name, compression in (("raw", None), ("compressed", "png")):
        bags[name] = tmp_path / name
        config = RosbagWriterConfig(start_time_ns=START, depth_encoding="16UC1", compression=compression)
        with RosbagWriter(bags[name], config) as writer:
            for frame in frames:
                writer.write(frame)

    overrides = {**OVERRIDES, "output_dir": str(tmp_path / "maps")}
    listener = MapListener(context, "transport_listener")
    process = start_node(env, tmp_path, overrides)
    try:
        process = discovered_or_restarted(process, lambda: start_node(env, tmp_path, overrides), listener.has_status,
                                          "the node with compressed transports")
        assert ("inputs /camera/color/image_raw/compressed, /camera/depth/image_raw/compressedDepth, "
                "/camera/color/camera_info, /camera/semantic/image_raw (reliable)") in node_log(process)
        play_to_subscribers(bags["compressed"], env, rate=0.25)
        status = listener.wait_until_idle(mesh=False)
        assert status["integrated"] == len(frames) and status["dropped"] == {}, status
        live = load_volume(json.loads(listener.call("/mapping_node/save_map").message)["volume"], "cpu")
    finally:
        listener.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, node_log(process)

    out = tmp_path / "offline"
    assert cli_main(["map", "--bag", str(bags["raw"]), "--out", str(out), "--checkpoint", "",
                     "--params-file", str(CONFIG)]) == 0
    offline = load_volume(out / "volume.pt", "cpu")
    assert live.num_blocks == offline.num_blocks > 0
    assert torch.equal(live.grid.block_coords(), offline.grid.block_coords())
    for layer in offline.grid.layer_names:
        assert torch.equal(live.grid.values(layer), offline.grid.values(layer)), layer
