"""Live semantics over real DDS: a node fed a bag without any semantic topic labels its map with the installed
default segmenter on keyframes, with the class shares the offline `semantic-recon map --labels segmenter` gives on
the same frames; a segmenter that does not fit is refused while the node keeps mapping geometry."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from support.dds_processes import discovered_or_restarted, play_to_subscribers, stop_process  # noqa: E402
from support.mapping_node_process import MapListener, node_log, start_node  # noqa: E402
from semantic_recon_ros.cli import main as cli_main  # noqa: E402
from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig  # noqa: E402
from semantic_recon_ros.core.map import SemanticTSDFVolume, load_volume  # noqa: E402
from semantic_recon_ros.core.resources import share_file  # noqa: E402
from semantic_recon_ros.core.surface_fields import labels_from_scores  # noqa: E402
from support.paths import SEVEN_SCENES  # noqa: E402

SEC = 1_000_000_000
START_NS = 1_750_000_000 * SEC
CLASSES = load_class_set()
FRAMES = {"stride": 10, "max_frames": 20}
NODE_OVERRIDES = {"use_sim_time": "true", "input_qos": "reliable", "status_period": "0.5", "mesh_rate": "1.0",
                  "voxel_map_rate": "0.0", "queue_size": "30", "checkpoint": "''", "segmenter": "default",
                  "segmentation_rate": "10.0"}
SHARE_TOLERANCE = 0.05  # absolute, per class: live keyframes are confidence-weighted and may skip a frame


def label_shares(volume: SemanticTSDFVolume) -> np.ndarray:
    """(K,) share of each class among the voxels with label votes."""
    label, _ = labels_from_scores(volume.grid.values("semantic").flatten(0, 1))
    label = label[label >= 0].numpy()
    return np.bincount(label, minlength=len(CLASSES.names)) / max(len(label), 1)


def wait_until_segmentation_settles(listener: MapListener, quiet: float = 3.0, timeout: float = 90.0) -> dict:
    """The status's segmentation block once no keyframe was taken up (segmented or skipped) for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        block = listener.fresh_status(10)["segmentation"]
        considered = block["runs"] + sum(block["skipped"].values())
        if considered != last:
            last, since = considered, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return block
    pytest.fail(f"the segmentation did not settle within {timeout} s; last: {block}")


@pytest.fixture(scope="module")
def kitchen_bag(seven_scenes, tmp_path_factory):
    frames = list(seven_scenes.subset(**FRAMES))
    bag = tmp_path_factory.mktemp("live_segmentation") / "bag"
    with RosbagWriter(bag, RosbagWriterConfig(start_time_ns=START_NS, depth_encoding="16UC1")) as writer:
        for frame in frames:
            writer.write(frame)  # 7-Scenes has no labels: the bag has no semantic topic
    return bag, len(frames)


@contextmanager
def node_playing(dds, bag: Path, logs: Path, overrides: dict[str, str], rate: float):
    """A node process with ``overrides`` that received ``bag`` at ``rate`` and fused it: yields (listener, status
    once idle, process); the node is stopped afterwards (its log checked for tracebacks)."""
    env, context = dds
    listener = MapListener(context, f"listener_{logs.name}")
    process = start_node(env, logs, overrides)
    try:
        process = discovered_or_restarted(process, lambda: start_node(env, logs, overrides), listener.has_status,
                                          "the mapping node")
        play_to_subscribers(bag, env, rate=rate)
        yield listener, listener.wait_until_idle(timeout=120), process
    finally:
        listener.close()
        stop_process(process)
    assert "Traceback" not in node_log(process)


def test_the_node_segments_keyframes_like_the_offline_map(dds, kitchen_bag, tmp_path):
    bag, frames = kitchen_bag
    overrides = {**NODE_OVERRIDES, "output_dir": str(tmp_path / "maps")}
    # 1.5 frames/s: each keyframe is segmented before the next comes
    with node_playing(dds, bag, tmp_path, overrides, rate=0.05) as (listener, status, _):
        segmentation = wait_until_segmentation_settles(listener)
        assert status["integrated"] == frames and segmentation["active"] and segmentation["errors"] == 0, status
        assert segmentation["runs"] >= frames // 2, segmentation
        live = load_volume(json.loads(listener.call("/mapping_node/save_map").message)["volume"], "cpu")

    out = tmp_path / "offline"
    assert cli_main(["map", str(SEVEN_SCENES), "--stride", str(FRAMES["stride"]), "--max-frames",
                     str(FRAMES["max_frames"]), "--labels", "segmenter", "--checkpoint", "", "--out", str(out)]) == 0
    offline = load_volume(out / "volume.pt", "cpu")
    live_shares, offline_shares = label_shares(live), label_shares(offline)
    table = {name: (round(float(a), 3), round(float(b), 3)) for name, a, b in zip(CLASSES.names, live_shares,
                                                                                   offline_shares) if a or b}
    print(f"\nlabel shares live / offline on {frames} 7-Scenes frames ({segmentation['runs']} keyframes "
          f"segmented live): {table}")
    assert np.abs(live_shares - offline_shares).max() < SHARE_TOLERANCE, table
    for name in ("floor", "counter", "chair"):  # the kitchen's floor, counter and chairs are found live as offline
        assert live_shares[CLASSES.index(name)] > 0.03, table


def test_a_segmenter_whose_class_map_does_not_fit_is_refused_and_mapping_goes_on(dds, kitchen_bag, tmp_path):
    """The shipped model with a class map naming a class the model does not have: refused at startup with a
    message naming that class; the node maps geometry without live labels."""
    bag, frames = kitchen_bag
    folder = tmp_path / "segmenter"
    shutil.copytree(share_file("models/segmenters/deeplabv3-mobilenetv2-ade20k"), folder)
    (folder / "class_map.yaml").write_text("floor: [floor, moon surface]\n")
    description = yaml.safe_load((folder / "segmenter.yaml").read_text())
    description["class_map"] = "class_map.yaml"
    (folder / "segmenter.yaml").write_text(yaml.safe_dump(description))
    overrides = {**NODE_OVERRIDES, "segmenter": str(folder)}
    with node_playing(dds, bag, tmp_path, overrides, rate=0.5) as (_, status, process):
        pass
    assert status["integrated"] >= frames - 2 and status["blocks"] > 0, status
    assert not status["segmentation"]["active"] and "moon surface" in status["segmentation"]["error"], status
    assert "cannot be used, mapping without live segmentation" in node_log(process)
