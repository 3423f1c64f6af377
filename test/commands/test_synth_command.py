"""`semantic-recon synth --floor` as a user runs it: the files it writes and its errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.synthetic import FloorConfig, generate_floor, load_ground_truth


def semantic_recon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semantic_recon_ros.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_synth_floor_writes_a_readable_floor_scan(tmp_path):
    out = tmp_path / "floor"
    result = semantic_recon("synth", "--floor", "13x11", "--out", out, "--seed", "4", "--frames", "3",
                            "--width", "80", "--height", "60")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    floor = generate_floor(4, FloorConfig(size_x=13.0, size_y=11.0))
    assert summary["floor_size_m"][:2] == [13.0, 11.0] and summary["rooms"] == len(floor.rooms) >= 4
    assert summary["frames"] == 3 and summary["boxes"] == len(floor.scene.boxes) and summary["tsdf_shape"] is None
    sequence = open_sequence(out)
    assert len(sequence) == 3 and sequence.camera.shape == (60, 80)
    assert (sequence[2].depth > 0).all()
    truth = load_ground_truth(out)
    assert truth.floor.layout_dict() == floor.layout_dict()
    np.testing.assert_allclose(truth.scene.room_size, floor.scene.room_size)


@pytest.mark.parametrize("args, message", [
    (["--floor", "30by20"], "--floor must be the floor size as XxY"),
    (["--floor", "30x6"], "--floor 30x6: .*make the floor at least 10.64 m deep"),
    (["--floor", "3x20"], "--floor 3x20: the floor must be at least one room"),
    (["--gt-tsdf"], "--gt-tsdf only applies with --floor"),
    (["--floor", "--frames", "0"], "--frames must be >= 1"),
])
def test_bad_floor_arguments_fail_with_a_clear_message(tmp_path, args, message):
    result = semantic_recon("synth", "--out", tmp_path / "bad", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("semantic-recon synth: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "bad").exists()
