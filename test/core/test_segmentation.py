"""The generic 2D segmenter (real ADE20K TFLite model from ../shared) and its class mapping."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.resources import share_file
from semantic_recon_ros.core.segmentation import DeepLabADE20K, labels_from_probs, load_class_mapping

from support.paths import REPO

MODEL_DIR = REPO.parent / "shared" / "models" / "deeplabv3-mobilenetv2-ade20k"
CLASSES = load_class_set()


@pytest.fixture(scope="module")
def segmenter():
    return DeepLabADE20K(MODEL_DIR, CLASSES.names)


def test_shipped_mapping_covers_every_class_once():
    names = ["other"] + [line.split("\t")[1] for line in (MODEL_DIR / "labels.txt").read_text().splitlines()]
    mapping = load_class_mapping(names, CLASSES.names)
    assert mapping.matrix.shape == (151, CLASSES.num_classes)
    assert (mapping.matrix.sum(axis=1) <= 1).all()  # no ADE20K class counts twice
    assert (mapping.matrix.sum(axis=0) >= 1).all()  # every project class receives something
    assert mapping.matrix[names.index("windowpane"), CLASSES.index("window")] == 1


def test_mapping_errors_name_the_problem(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text(yaml.safe_dump({"wall": ["wall"], "floor": ["wall"]}))
    with pytest.raises(ValueError, match="mapped twice"):
        load_class_mapping(["wall", "floor"], CLASSES.names, bad)
    bad.write_text(yaml.safe_dump({"spaceship": ["wall"]}))
    with pytest.raises(ValueError, match="not a project class"):
        load_class_mapping(["wall"], CLASSES.names, bad)
    bad.write_text(yaml.safe_dump({"wall": ["wal"]}))
    with pytest.raises(ValueError, match="not a segmenter class"):
        load_class_mapping(["wall"], CLASSES.names, bad)
    assert share_file("config/ade20k_to_classes.yaml").is_file()


def test_segments_a_real_kitchen_frame(segmenter, seven_scenes):
    frame = seven_scenes[0]
    probs = segmenter.predict(frame.color)
    assert probs.shape == (480, 640, CLASSES.num_classes) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.sum(axis=-1).max() <= 1.0001
    labels = labels_from_probs(probs)
    share = {name: float((labels == i).mean()) for i, name in enumerate(CLASSES.names)}
    # the frame shows a kitchen: walls, carpet floor, a table with chairs, a counter
    assert share["wall"] > 0.1 and share["floor"] > 0.05 and share["table"] > 0.02 and share["chair"] > 0.02
    assert share["bed"] < 0.01
    # the bottom rows (carpet) are floor far more often than anything else
    bottom = labels[-60:]
    assert (bottom == CLASSES.index("floor")).mean() > 0.5


def test_rejects_bad_images_and_missing_model(segmenter, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        segmenter.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="model.tflite"):
        DeepLabADE20K(tmp_path, CLASSES.names)
