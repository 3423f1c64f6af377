"""Benchmark: the 2D segmenter back-ends on a 640x480 7-Scenes frame, per thread count.

TFLite runs the installed default model (DeepLabV3 + MobileNetV2, ADE20K). ONNX Runtime, TorchScript and
torch.export run a DeepLabV3 + MobileNetV2 of the same shape written here (width 1.0, output stride 8, a 1x1 ASPP
head with image pooling, 151 classes, logits upsampled to the 513x513 input inside the network, as the TFLite
model does) with random weights: the time does not depend on them. Every back-end goes through
``load_segmenter`` with the same description (513x513 input, logits), so the numbers include the same pre- and
post-processing (resize, softmax over 151 classes, class map, resize back). Prints a markdown table: per frame, the
median wall time, the process CPU time (all threads; the wall time on otherwise idle cores when the machine is
shared) and the model call's share of the wall time.

    .venv/bin/python bench/bench_segmenters.py [--threads 1 2] [--repeats 5] [--frame 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.segmentation import load_segmenter

REPO = Path(__file__).resolve().parents[1]
SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
SIZE = 513
CLASSES = 151


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1,
         relu: bool = True) -> torch.nn.Sequential:
    layers = [torch.nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, groups, bias=False),
              torch.nn.BatchNorm2d(cout)]
    return torch.nn.Sequential(*layers, torch.nn.ReLU6()) if relu else torch.nn.Sequential(*layers)


class InvertedResidual(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv(cin, hidden)] if expand != 1 else []
        layers += [conv(hidden, hidden, 3, stride, dilation, groups=hidden), conv(hidden, cout, relu=False)]
        self.body = torch.nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class DeepLabMobileNetV2(torch.nn.Module):
    """NCHW image -> NCHW logits at the input size (output stride 8: the last strides become dilations)."""

    # (expansion, channels, repeats, stride, dilation) of MobileNetV2's stages, strides 2 of stages 5 and 7 dilated
    STAGES = [(1, 16, 1, 1, 1), (6, 24, 2, 2, 1), (6, 32, 3, 2, 1), (6, 64, 4, 1, 2), (6, 96, 3, 1, 2),
              (6, 160, 3, 1, 4), (6, 320, 1, 1, 4)]

    def __init__(self, classes: int = CLASSES):
        super().__init__()
        layers, cin = [conv(3, 32, 3, 2)], 32
        for expand, cout, repeats, stride, dilation in self.STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, dilation, expand))
                cin = cout
        self.backbone = torch.nn.Sequential(*layers)
        self.aspp, self.pool = conv(cin, 256), conv(cin, 256)
        self.classifier = torch.nn.Conv2d(512, classes, 1)

    def forward(self, image):
        features = self.backbone(image)
        pooled = self.pool(features.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *features.shape[2:])
        logits = self.classifier(torch.cat([self.aspp(features), pooled], dim=1))
        return F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=False)


def export_models(folder: Path) -> list[Path]:
    """The network as .onnx, .pt (TorchScript) and .pt2 (torch.export) with one segmenter.yaml for each."""
    torch.manual_seed(0)
    net = DeepLabMobileNetV2().eval()
    example = torch.rand(1, 3, SIZE, SIZE)
    (folder / "labels.txt").write_text("".join(f"class{i}\n" for i in range(CLASSES)))
    (folder / "class_map.yaml").write_text("wall: [class1]\nfloor: [class4]\n")
    models = []
    for name in ("net.onnx", "net.pt", "net.pt2"):
        sub = folder / Path(name).suffix[1:]
        sub.mkdir()
        path = sub / name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            if name.endswith(".onnx"):
                torch.onnx.export(net, (example,), str(path), dynamo=False, input_names=["image"])
            elif name.endswith(".pt2"):
                torch.export.save(torch.export.export(net, (example,)), str(path))
            else:
                torch.jit.trace(net, example).save(str(path))
        description = {"model": name, "labels": str(folder / "labels.txt"), "class_map": str(folder / "class_map.yaml"),
                       "input": {"size": [SIZE, SIZE], "layout": "NCHW", "range": [-1.0, 1.0]}}
        (sub / "segmenter.yaml").write_text(yaml.safe_dump(description))
        models.append(sub)
    return models


def measure(segmenter, color, repeats: int) -> tuple[float, float, float]:
    """(median wall s, mean CPU s, model call's share of the wall time) per frame, after two warm-up frames."""
    runner, model_seconds = segmenter._runner, []

    def timed(image):
        start = time.perf_counter()
        output = runner(image)
        model_seconds.append(time.perf_counter() - start)
        return output

    segmenter._runner = timed
    for _ in range(2):
        segmenter.predict(color)
    model_seconds.clear()
    walls, cpu_start = [], time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        segmenter.predict(color)
        walls.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / repeats
    segmenter._runner = runner
    return statistics.median(walls), cpu, sum(model_seconds) / sum(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frame", type=int, default=0)
    args = parser.parse_args()
    classes = load_class_set()
    color = open_sequence(SEVEN_SCENES)[args.frame].color
    print(f"frame {args.frame} of {SEVEN_SCENES.name}: {color.shape[1]}x{color.shape[0]}; torch {torch.__version__}")
    print("| back-end | model | threads | wall ms / frame | CPU ms / frame | model call share |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        specs = [("default", "DeepLabV3-MobileNetV2 ADE20K (shipped)")]
        specs += [(str(path), "DeepLabV3-MobileNetV2, random weights") for path in export_models(Path(tmp))]
        for threads in args.threads:
            torch.set_num_threads(threads)  # torch models and every back-end's pre- and post-processing
            for spec, model in specs:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    segmenter = load_segmenter(spec, classes.names, num_threads=threads)
                wall, cpu, share = measure(segmenter, color, args.repeats)
                print(f"| {segmenter.backend} | {model} | {threads} | {1000 * wall:.0f} | {1000 * cpu:.0f} | "
                      f"{100 * share:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
