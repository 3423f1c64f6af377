"""The status hint for large images on a best-effort subscription."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from semantic_recon_ros.ros.mapping_node import COLOR_TOPIC, INFO_TOPIC, input_hints  # noqa: E402

BIG = 4000 * 3000 * 3


def test_large_images_missing_on_best_effort_give_a_hint():
    starved = {INFO_TOPIC: 30, COLOR_TOPIC: 0}
    hint, = input_hints("sensor_data", starved, COLOR_TOPIC, INFO_TOPIC, BIG)
    assert "36.0 MB" in hint and "input_qos:=reliable" in hint and "LARGE_DATA" in hint
    assert input_hints("reliable", starved, COLOR_TOPIC, INFO_TOPIC, BIG) == []  # reliable: not this cause
    assert input_hints("sensor_data", starved, COLOR_TOPIC, INFO_TOPIC, 320 * 240 * 3) == []  # small images
    assert input_hints("sensor_data", {INFO_TOPIC: 30, COLOR_TOPIC: 29}, COLOR_TOPIC, INFO_TOPIC, BIG) == []
    assert input_hints("sensor_data", {INFO_TOPIC: 3, COLOR_TOPIC: 0}, COLOR_TOPIC, INFO_TOPIC, BIG) == []  # too early
