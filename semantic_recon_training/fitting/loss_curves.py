"""Loss curves of a run from its CSV logs (``<output_dir>/logs/version_*/metrics.csv``), as a matplotlib PNG.

A resumed run writes one CSV version per start; the versions are merged by step (a later version wins
where steps overlap, e.g. after resuming from an earlier checkpoint).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

SMOOTHING_WINDOW = 25  # training steps averaged in the plotted training curves


def read_metrics(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """metric name -> {step: value} over all CSV log versions of ``run_dir`` (FileNotFoundError if none)."""
    files = sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"no CSV logs under {Path(run_dir) / 'logs'}")
    metrics: dict[str, dict[int, float]] = {}
    for path in files:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = int(row["step"])
                for key, value in row.items():
                    if key not in ("step", "epoch") and value not in ("", None):
                        metrics.setdefault(key, {})[step] = float(value)
    return metrics


def _smoothed(series: dict[int, float], window: int) -> tuple[list[int], list[float]]:
    steps = sorted(series)
    values = [series[s] for s in steps]
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1):i + 1] if math.isfinite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else float("nan"))
    return steps, out


def plot_loss_curves(run_dir: str | Path, out: str | Path, window: int = SMOOTHING_WINDOW) -> Path:
    """Write the training losses (moving average over ``window`` logged steps), the validation losses and
    the validation completion IoU / mIoU of ``run_dir`` to the PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(run_dir)
    train = sorted(k for k in metrics if k.startswith("train/") and k != "train/loss")
    val = sorted(k for k in metrics if k.startswith("val/") and not k.startswith(("val/iou", "val/miou")))
    scores = sorted(k for k in metrics if k.startswith(("val/iou", "val/miou")))
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for key in train:
        steps, values = _smoothed(metrics[key], window)
        axes[0].plot(steps, values, label=key[len("train/"):], linewidth=2.5 if key == "train/total" else 1.2)
    axes[0].set_title(f"training losses (moving average of {window} logged steps)")
    for key in val:
        steps = sorted(metrics[key])
        axes[1].plot(steps, [metrics[key][s] for s in steps], marker="o", label=key[len("val/"):],
                     linewidth=2.5 if key == "val/total" else 1.2)
    axes[1].set_title("validation losses (held-out scene)")
    for key in scores:
        steps = sorted(metrics[key])
        axes[2].plot(steps, [metrics[key][s] for s in steps], marker="o", label=key[len("val/"):])
    axes[2].set_title("validation completion IoU / semantic mIoU (synthetic GT)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes[:2]:
        if ax.lines:
            ax.set_yscale("log")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
