"""`semantic-recon demo` for real: a compressed bag of 8 shared 7-Scenes frames, the mapping node as a process (the
default model and segmenter) and the bag player over DDS; the node integrates every frame and saves its map on
SIGINT, the demo pictures it. Also: its errors (missing data, a node that does not start: the node's log shown),
and Ctrl-C, after which none of its processes runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from support.paths import SEVEN_SCENES
from semantic_recon_ros.commands.demo import NodeStatus
from semantic_recon_ros.core.map_folder import MapFolder

pytest.importorskip("rclpy")

DEMO = [sys.executable, "-m", "semantic_recon_ros.cli", "demo"]
FRAMES = 8


def demo_processes(marker: Path) -> list[psutil.Process]:
    """Processes whose command line names ``marker`` (the node's output_dir, the player's bag)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(marker) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def run_demo(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    return subprocess.run([*DEMO, *args], capture_output=True, text=True, timeout=timeout)


def test_the_node_maps_a_compressed_bag_played_over_dds_and_the_map_is_saved_and_pictured(tmp_path):
    if not SEVEN_SCENES.is_dir():
        pytest.fail(f"shared data missing: {SEVEN_SCENES}")
    out = tmp_path / "demo"
    start = time.monotonic()
    result = run_demo(str(SEVEN_SCENES), "--out", str(out), "--frames", str(FRAMES))
    seconds = time.monotonic() - start
    print(f"\ndemo of {FRAMES} frames: {seconds:.1f} s\n{result.stdout}")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{(out / 'node.log').read_text()}"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_in_bag"] == summary["frames_received"] == summary["frames_integrated"] == FRAMES, summary
    assert summary["frames_dropped"] == 0 and summary["dropped_reasons"] == {}, summary
    assert summary["triangles"] > 1000 and summary["blocks"] > 0, summary
    current = MapFolder(out / "map", ()).current()
    assert current is not None and current.parent.name == "maps"
    for name in ("mesh_rgb.ply", "mesh_semantic.ply", "volume.pt", "mesh_additions.ply"):  # the default model
        assert (current / name).is_file() and (out / "map" / name).is_file(), name
    with Image.open(out / "preview.png") as preview:
        assert preview.format == "PNG" and min(preview.size) > 200
    assert f"saved the map on shutdown: {summary['triangles']} triangles" in (out / "node.log").read_text()
    assert "done in" in result.stdout and not demo_processes(out)

    # a second run reuses the bag
    bag = Path(summary["bag"])
    written = (bag / "metadata.yaml").stat().st_mtime_ns
    result = run_demo(str(SEVEN_SCENES), "--out", str(out), "--frames", str(FRAMES), "-p", "checkpoint:=''",
                      "-p", "segmenter:=''")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert f"reusing the bag {bag}" in result.stdout
    assert (bag / "metadata.yaml").stat().st_mtime_ns == written
    assert json.loads((out / "summary.json").read_text())["frames_integrated"] == FRAMES
    assert MapFolder(out / "map", ()).current().name == "000002"  # fusion only: no additions in this save
    assert not (out / "map" / "mesh_additions.ply").exists()


def test_missing_data_and_bad_parameters_fail_before_anything_starts(tmp_path):
    result = run_demo(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "sequence folder not found" in result.stderr, result.stderr
    result = run_demo(str(SEVEN_SCENES), "--out", str(tmp_path / "out"), "-p", "checkpoint")
    assert result.returncode == 2 and "expected NAME:=VALUE" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_node_that_does_not_start_is_reported_with_the_end_of_its_log(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(str(SEVEN_SCENES), "--out", str(out), "--frames", "2", "-p", "volume.voxel_size:=-1.0")
    assert result.returncode == 1, f"{result.stdout}\n{result.stderr}"
    assert "the mapping node exited with status 2" in result.stderr
    assert f"--- the end of {out / 'node.log'} ---" in result.stderr
    assert "volume.voxel_size" in result.stderr.split("--- the end of")[1]  # the node's own error, shown
    assert not demo_processes(out)


def test_ctrl_c_stops_the_node_and_the_player(tmp_path):
    out = tmp_path / "demo"
    demo = subprocess.Popen([*DEMO, str(SEVEN_SCENES), "--out", str(out), "--frames", "60", "--stride", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in demo.stdout:
            if line.startswith("[3/5]"):  # playing
                break
        time.sleep(3.0)
        children = psutil.Process(demo.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert any("mapping_node" in c for c in commands) and any("play-bag" in c for c in commands), commands
        demo.send_signal(signal.SIGINT)  # the demo only: its processes run in sessions of their own
        stdout, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, stderr
    assert "stopped; stopping the node and the player" in stderr
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert not demo_processes(out)


def test_status_lines_of_the_node_are_read():
    line = ("[INFO] [1.2] [mapping_node]: frames in 12, integrated 9, dropped 2 (queue_full 1, tf 1); messages "
            "dropped 0, 0 waiting for partners; queue 1/30, integrate 3.1 ms, mesh 20.0 ms, blocks 250, volume 9.8 "
            "MB, rss 900.1 MB, completion: 4 runs, 7 chunks done, 3 pending, 800 ms per run")
    status = NodeStatus.parse(line)
    assert status == NodeStatus(12, 9, 2, {"queue_full": 1, "tf": 1}, 1, 250, 4, 3)
    assert not status.idle
    fusion_only = NodeStatus.parse(line.split(", completion")[0].replace("dropped 2 (queue_full 1, tf 1)", "dropped 2")
                                   .replace("queue 1/30", "queue 0/30"))
    assert fusion_only.dropped_reasons == {} and fusion_only.completion_runs is None and not fusion_only.idle
    assert NodeStatus.parse("[INFO] [1.2] [mapping_node]: saved the map on shutdown: 3 triangles") is None
