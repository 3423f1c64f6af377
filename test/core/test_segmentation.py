"""2D segmenters: the installed default (real ADE20K TFLite model), the ONNX, TorchScript and torch.export back-ends
(tiny models exported here), class maps, and the depth-based label confidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.resources import share_file
from semantic_recon_ros.core.segmentation import (DeepLabADE20K, LabelConfidenceConfig, confidence_weighted,
                                                  label_confidence, labels_from_probs, load_class_mapping,
                                                  load_segmenter, resolve_segmenter)

from support.paths import REPO

MODEL_DIR = REPO.parent / "shared" / "models" / "deeplabv3-mobilenetv2-ade20k"
DEFAULT_DIR = REPO / "models" / "segmenters" / "deeplabv3-mobilenetv2-ade20k"
CLASSES = load_class_set()
# TorchScript and the TorchScript-based ONNX exporter are deprecated by torch 2.13 (still working); the new ONNX
# exporter would need the onnxscript package
TORCHSCRIPT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit", "ignore:You are using the legacy TorchScript",
                                                    "ignore:The feature will be removed")


@pytest.fixture(scope="module")
def segmenter():
    return load_segmenter("default", CLASSES.names)


def test_default_segmenter_is_shipped_in_the_package():
    assert resolve_segmenter("default") == DEFAULT_DIR
    for name in ("model.tflite", "labels.txt"):  # the very model of ../shared
        assert (DEFAULT_DIR / name).read_bytes() == (MODEL_DIR / name).read_bytes()
    readme = (DEFAULT_DIR / "README.md").read_text()
    assert "License" in readme and "ucalyptus/SIH-Stargazers" in readme
    assert resolve_segmenter("") is None and load_segmenter(None, CLASSES.names) is None
    with pytest.raises(FileNotFoundError, match="segmenter not found: /nonexistent"):
        load_segmenter("/nonexistent/net.onnx", CLASSES.names)


def test_shipped_mapping_covers_every_class_once():
    names = ["other"] + [line.split("\t")[1] for line in (MODEL_DIR / "labels.txt").read_text().splitlines()]
    mapping = load_class_mapping(names, CLASSES.names)
    assert mapping.matrix.shape == (151, CLASSES.num_classes)
    assert (mapping.matrix.sum(axis=1) <= 1).all()  # no ADE20K class counts twice
    assert (mapping.matrix.sum(axis=0) >= 1).all()  # every project class receives something
    assert mapping.matrix[names.index("windowpane"), CLASSES.index("window")] == 1
    # ADE20K names two classes "screen" (59 screen door, 131 projection screen): the name maps both
    assert mapping.matrix[[59, 131], CLASSES.index("door")].tolist() == [1, 1]


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


def test_segments_real_kitchen_frames(segmenter, seven_scenes):
    frame = seven_scenes[0]
    probs = segmenter.predict(frame.color)
    assert probs.shape == (480, 640, CLASSES.num_classes) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.sum(axis=-1).max() <= 1.0001
    labels = labels_from_probs(probs)
    share = {name: float((labels == i).mean()) for i, name in enumerate(CLASSES.names)}
    # the frame shows a kitchen: walls, carpet floor, a table with chairs, a counter
    assert share["wall"] > 0.1 and share["floor"] > 0.05 and share["table"] > 0.02 and share["chair"] > 0.02
    assert share["counter"] > 0.05 and share["bed"] < 0.01
    # the bottom rows (carpet) are floor far more often than anything else
    bottom = labels[-60:]
    assert (bottom == CLASSES.index("floor")).mean() > 0.5
    # frame 250 looks at the kitchen's cabinets and counter
    labels = labels_from_probs(segmenter.predict(seven_scenes[250].color))
    assert (labels == CLASSES.index("cabinet")).mean() > 0.01 and (labels == CLASSES.index("counter")).mean() > 0.1
    # the confidence is the model's top ADE20K probability: within [0, 1], high on most of the image
    segmentation = segmenter.segment(frame.color)
    assert np.array_equal(segmentation.probabilities, probs)
    assert segmentation.confidence.shape == (480, 640) and 0 < segmentation.confidence.min() <= 1
    assert np.median(segmentation.confidence) > 0.5 and segmentation.confidence.max() <= 1 + 1e-6


def test_ade20k_folder_without_description_matches_the_default(segmenter, seven_scenes):
    """DeepLabADE20K (the trainer's ../shared copy: model.tflite + labels.txt only) runs as the default does."""
    shared = DeepLabADE20K(MODEL_DIR, CLASSES.names)
    color = seven_scenes[100].color
    assert np.array_equal(shared.predict(color), segmenter.predict(color))
    assert "TFLite" in repr(shared) and "513x513 NHWC" in repr(shared)


def test_rejects_bad_images_and_missing_model(segmenter, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        segmenter.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="model.tflite"):
        DeepLabADE20K(tmp_path, CLASSES.names)


# --- the ONNX / TorchScript / torch.export back-ends with tiny models made here -------------------------------------

LABELS = ["wall", "floor", "mug", "desk", "sky"]  # the tiny model's classes, one output channel each
CLASS_MAP = {"wall": ["wall"], "floor": ["floor"], "object": ["mug"], "table": ["desk"]}  # "sky" is unlabeled
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


class TinyNet(torch.nn.Module):
    """NCHW image -> NCHW logits of 5 classes, at half resolution when ``stride`` is 2."""

    def __init__(self, stride: int = 1):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, len(LABELS), 3, stride=stride, padding=1)

    def forward(self, image):
        return self.conv(image) * 4.0


def export(net: torch.nn.Module, path, size=(32, 48)) -> None:
    """Write ``net`` as ``path`` (.onnx, .pt TorchScript or .pt2 torch.export), spatial size left open."""
    example = torch.rand(1, 3, *size)
    if path.suffix == ".onnx":
        open_axes = {2: "height", 3: "width"}
        torch.onnx.export(net, (example,), str(path), dynamo=False, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": open_axes, "logits": open_axes})
    elif path.suffix == ".pt2":
        height, width = torch.export.Dim("height", min=8, max=2048), torch.export.Dim("width", min=8, max=2048)
        torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({2: height, 3: width},)), str(path))
    else:
        torch.jit.trace(net, example).save(str(path))


def write_segmenter(folder, model_name: str, labels=LABELS, class_map=CLASS_MAP, **input_spec):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in labels))
    (folder / "class_map.yaml").write_text(yaml.safe_dump(class_map))
    description = {"model": model_name, "labels": "labels.txt", "class_map": "class_map.yaml",
                   "input": {"channels": "BGR", "mean": list(MEAN), "std": list(STD), **input_spec}}
    (folder / "segmenter.yaml").write_text(yaml.safe_dump(description))
    return folder


def expected_probabilities(net: torch.nn.Module, color: np.ndarray) -> np.ndarray:
    """The torch model's own softmax on the BGR, normalized image, mapped onto the project's classes."""
    image = torch.from_numpy(color[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0
    image = (image - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        source = torch.softmax(net(image), dim=1)[0].permute(1, 2, 0).numpy()
    matrix = np.zeros((len(LABELS), CLASSES.num_classes), np.float32)
    for target, sources in CLASS_MAP.items():
        for name in sources:
            matrix[LABELS.index(name), CLASSES.index(target)] = 1
    return source @ matrix


@pytest.fixture(scope="module")
def color():
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


@TORCHSCRIPT_DEPRECATED
@pytest.mark.parametrize("model_name, backend", [("net.onnx", "ONNX Runtime"), ("net.pt", "TorchScript"),
                                                 ("net.ts", "TorchScript"), ("net.pt2", "torch.export")])
def test_backends_equal_the_torch_model_mapped_by_the_class_map(tmp_path, color, model_name, backend):
    net = TinyNet().eval()
    folder = write_segmenter(tmp_path / "seg", model_name, size="any")
    export(net, folder / model_name)
    for spec in (folder, folder / model_name, folder / "segmenter.yaml"):  # a folder, the model, its description
        segmenter = load_segmenter(spec, CLASSES.names, num_threads=1)
        assert segmenter.backend == backend and segmenter.input_size is None
        probs = segmenter.predict(color)
        assert probs.shape == (40, 56, CLASSES.num_classes) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, expected_probabilities(net, color), atol=2e-5)
    # "sky" maps to no project class: its probability is dropped; "table" receives "desk"
    assert probs.sum(axis=-1).max() < 1.0 and probs[..., CLASSES.index("table")].max() > 0.1


class ChannelsLast(torch.nn.Module):
    """TinyNet taking and returning NHWC tensors."""

    def __init__(self):
        super().__init__()
        self.net = TinyNet()

    def forward(self, image):
        return self.net(image.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


@TORCHSCRIPT_DEPRECATED
@pytest.mark.parametrize("model_name", ["net.onnx", "net.pt2"])
def test_channels_last_models(tmp_path, color, model_name):
    net = ChannelsLast().eval()
    folder = write_segmenter(tmp_path / "seg", model_name, size="any", layout="NHWC")
    path = folder / model_name
    example = torch.rand(1, 32, 48, 3)
    if model_name.endswith(".onnx"):
        open_axes = {1: "height", 2: "width"}
        torch.onnx.export(net, (example,), str(path), dynamo=False, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": open_axes, "logits": open_axes})
    else:
        height, width = torch.export.Dim("height", min=8, max=2048), torch.export.Dim("width", min=8, max=2048)
        torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({1: height, 2: width},)), str(path))
    segmenter = load_segmenter(folder, CLASSES.names)
    assert segmenter.input_layout == segmenter.output_layout == "NHWC"  # output: the input's layout by default
    np.testing.assert_allclose(segmenter.predict(color), expected_probabilities(net.net, color), atol=2e-5)


@TORCHSCRIPT_DEPRECATED
@pytest.mark.parametrize("model_name", ["net.onnx", "net.pt"])
def test_fixed_input_size_and_coarse_output_are_resized(tmp_path, color, model_name):
    """A model fed at a fixed size whose output is at half resolution: probabilities come back at the image's size."""
    net = TinyNet(stride=2).eval()
    folder = write_segmenter(tmp_path / "seg", model_name, size=[32, 48])
    export(net, folder / model_name)
    segmenter = load_segmenter(folder, CLASSES.names)
    assert segmenter.input_size == (32, 48)
    segmentation = segmenter.segment(color)
    assert segmentation.probabilities.shape == (40, 56, CLASSES.num_classes)
    assert segmentation.confidence.shape == (40, 56) and segmentation.confidence.max() <= 1 + 1e-6
    # the same as resizing the image to 32 x 48 by hand, running the net and resizing its probabilities back
    image = F.interpolate(torch.from_numpy(color).permute(2, 0, 1)[None].float(), size=(32, 48), mode="bilinear",
                          align_corners=False)
    small = image[0].permute(1, 2, 0).numpy()
    coarse = torch.from_numpy(expected_probabilities(net, small.astype(np.float32))).permute(2, 0, 1)[None]
    expected = F.interpolate(coarse, size=(40, 56), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    np.testing.assert_allclose(segmentation.probabilities, expected.numpy(), atol=2e-5)


@TORCHSCRIPT_DEPRECATED
@pytest.mark.parametrize("model_name", ["net.onnx", "net.pt"])
def test_class_map_naming_an_unknown_class_is_refused(tmp_path, model_name):
    folder = write_segmenter(tmp_path / "seg", model_name, class_map={"sofa": ["couch"]})
    export(TinyNet().eval(), folder / model_name)
    with pytest.raises(ValueError, match=r"class_map.yaml: 'couch' \(under 'sofa'\) is not a segmenter class"):
        load_segmenter(folder, CLASSES.names)
    (folder / "class_map.yaml").write_text(yaml.safe_dump({"spaceship": ["mug"]}))
    with pytest.raises(ValueError, match=r"class_map.yaml: 'spaceship' is not a project class"):
        load_segmenter(folder, CLASSES.names)
    # a class map given to load_segmenter replaces the description's
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"counter": ["desk"]}))
    segmenter = load_segmenter(folder, CLASSES.names, class_map=other)
    assert segmenter.mapping.matrix[LABELS.index("desk"), CLASSES.index("counter")] == 1


@TORCHSCRIPT_DEPRECATED
@pytest.mark.parametrize("model_name", ["net.onnx", "net.pt", "net.pt2"])
def test_output_channels_must_equal_the_labels(tmp_path, model_name):
    folder = write_segmenter(tmp_path / "seg", model_name, labels=LABELS[:4], class_map={"wall": ["wall"]})
    export(TinyNet().eval(), folder / model_name)
    with pytest.raises(ValueError, match=rf"{model_name}: the model outputs 5 channels .*labels.txt describes 4 classes"):
        load_segmenter(folder, CLASSES.names)


@TORCHSCRIPT_DEPRECATED
def test_defaults_without_description(tmp_path, color):
    """A model file with labels.txt beside it and no segmenter.yaml: classes match project classes by name, input
    in [0, 1] RGB, NCHW, any size."""
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "labels.txt").write_text("0\twall\n1\tfloor\n2\tmug\n3\ttable\n4\tsky\n")  # ID<TAB>name lines
    net = TinyNet().eval()
    export(net, folder / "net.onnx")
    segmenter = load_segmenter(folder / "net.onnx", CLASSES.names)
    image = torch.from_numpy(color).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        source = torch.softmax(net(image), 1)[0]
    probs = segmenter.predict(color)
    np.testing.assert_allclose(probs[..., CLASSES.index("table")], source[3].numpy(), atol=2e-5)
    np.testing.assert_allclose(probs[..., CLASSES.index("object")], 0)  # "mug" is no project class name
    (folder / "labels.txt").write_text("sky\nsea\nsun\nsand\nsurf\n")
    with pytest.raises(ValueError, match="no class has the name of a project class"):
        load_segmenter(folder / "net.onnx", CLASSES.names)


def test_unsupported_files_and_bad_descriptions_are_refused(tmp_path):
    weights = tmp_path / "net.h5"
    weights.write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"net.h5: unsupported segmenter file type '.h5'"):
        load_segmenter(weights, CLASSES.names)
    folder = write_segmenter(tmp_path / "seg", "net.onnx", layout="NCWH")
    (folder / "net.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"segmenter.yaml: input.layout must be one of"):
        load_segmenter(folder, CLASSES.names)
    (folder / "segmenter.yaml").write_text(yaml.safe_dump({"model": "net.onnx", "input": {"szie": [8, 8]}}))
    with pytest.raises(ValueError, match=r"segmenter.yaml: input: unknown keys \['szie'\]"):
        load_segmenter(folder, CLASSES.names)
    (folder / "segmenter.yaml").write_text(yaml.safe_dump({"model": "missing.onnx"}))
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_segmenter(folder, CLASSES.names)
    (folder / "segmenter.yaml").unlink()
    with pytest.raises(ValueError, match="net.onnx: ONNX Runtime cannot load the model"):
        load_segmenter(folder, CLASSES.names)
    (folder / "net.onnx").unlink()
    with pytest.raises(ValueError, match="0 model files"):
        load_segmenter(folder, CLASSES.names)


# --- label confidence from depth -----------------------------------------------------------------------------------

CAMERA = PinholeCamera(100.0, 100.0, 39.5, 29.5, 80, 60)


def test_label_confidence_downweights_depth_edges_far_and_invalid_pixels():
    depth = np.full((60, 80), 2.0, np.float32)  # a wall 2 m away ...
    depth[20:40, 30:50] = 1.0  # ... with a box 1 m away in front of it
    depth[0:5, 0:5] = 0.0  # no depth
    depth[50:, 60:] = 6.0  # a far patch
    config = LabelConfidenceConfig(edge_threshold=0.05, edge_radius=2, full_weight_distance=3.0, distance_power=2.0)
    weight = label_confidence(depth, CAMERA, config).numpy()
    assert weight.shape == (60, 80) and weight.dtype == np.float32
    assert weight[10, 10] == 1.0 and weight[30, 40] == 1.0  # smooth surfaces within 3 m
    assert (weight[0:5, 0:5] == 0).all()  # invalid depth
    # the box's border pixels see a 1 m jump: relative 1.0 on the box, 0.5 on the wall -> weight t / jump
    assert weight[20, 40] == pytest.approx(0.05 / 1.0) and weight[18, 40] == pytest.approx(0.05 / 0.5)
    assert weight[17, 40] == 1.0  # three pixels away: outside the 2-pixel window
    # 6 m, at pixel (55, 70): distance along the ray, weight (3 / distance)^2
    ray = np.sqrt(1 + ((70 - 39.5) / 100) ** 2 + ((55 - 29.5) / 100) ** 2)
    assert weight[55, 70] == pytest.approx((3.0 / (6.0 * ray)) ** 2, rel=1e-5)
    flat = label_confidence(depth, CAMERA, LabelConfidenceConfig(edge_radius=0, distance_power=0.0)).numpy()
    assert set(np.unique(flat)) == {0.0, 1.0}  # both terms off: valid depth counts fully
    with pytest.raises(ValueError, match="edge_threshold"):
        LabelConfidenceConfig(edge_threshold=-1.0)


def test_confidence_weighted_scales_each_pixels_probability_vector():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(CLASSES.num_classes), size=(60, 80)).astype(np.float32)
    depth = np.full((60, 80), 2.0, np.float32)
    depth[:, 40:] = 5.0  # right half far away and behind a depth edge
    weighted = confidence_weighted(probs, depth, CAMERA)
    assert isinstance(weighted, np.ndarray) and weighted.dtype == np.float32 and weighted.shape == probs.shape
    weight = label_confidence(depth, CAMERA).numpy()
    np.testing.assert_allclose(weighted, probs * weight[..., None], rtol=1e-6)
    assert np.array_equal(weighted.argmax(-1), probs.argmax(-1))  # the vote's class is kept, only its size scales
    np.testing.assert_allclose(weighted[:, :30].sum(-1), 1.0, rtol=1e-5)  # near and smooth: full votes
    assert weighted[:, 60:].sum(-1).max() < 0.4  # 5 m: at most (3/5)^2
    # the segmenter's own confidence multiplies in; torch in, torch out
    confidence = np.full((60, 80), 0.5, np.float32)
    halved = confidence_weighted(torch.from_numpy(probs), depth, CAMERA, confidence=confidence)
    assert isinstance(halved, torch.Tensor)
    np.testing.assert_allclose(halved.numpy(), weighted * 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="depth is"):
        confidence_weighted(probs, depth[:30], CAMERA)


def test_a_segmenter_in_its_own_process_predicts_what_it_predicts_in_this_one(seven_scenes):
    """ProcessSegmenter (the node's: never holds this process's interpreter lock) gives the in-process result
    (float16 on the wire); a segmenter that cannot be loaded is refused with the child's message."""
    from semantic_recon_ros.core.segmentation.process_segmenter import ProcessSegmenter

    names = load_class_set().names
    color = seven_scenes[0].color
    remote = ProcessSegmenter("default", names)
    try:
        assert remote.class_names == names and "own process" in repr(remote)
        probs = remote.predict(color)
        local = load_segmenter("default", names, num_threads=1).predict(color)
        assert probs.shape == local.shape and np.abs(probs - local).max() < 2e-3
        assert (probs.argmax(axis=-1) == local.argmax(axis=-1)).mean() > 0.999
    finally:
        remote.close()
    with pytest.raises(ValueError, match="missing.onnx"):
        ProcessSegmenter("/nonexistent/missing.onnx", names)
