"""Configuration of the plane-sweep stereo that gives RGB-only mapping its depth
(:mod:`semantic_recon_ros.core.multi_view_stereo`)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter


@dataclass
class StereoConfig:
    """How each color frame's depth is estimated from earlier frames of the same camera."""

    width: int = parameter(
        240, "Matching resolution: images are scaled to this width (aspect kept); depth comes back at the input "
             "size.", 32, 4096)
    planes: int = parameter(48, "Depth hypotheses, evenly spaced in inverse depth.", 8, 1024)
    min_depth: float = parameter(0.4, "Nearest depth hypothesis (metres).", 0.05, 100.0)
    max_depth: float = parameter(4.5, "Farthest depth hypothesis (metres).", 0.1, 100.0)
    window: int = parameter(7, "Side of the square matching window (pixels at the matching resolution; odd).", 3, 31)
    max_sources: int = parameter(4, "Earlier frames each frame is matched against.", 1, 16)
    best_sources: int = parameter(
        2, "Per depth, the score is the mean correlation of this many best-matching sources (a surface occluded in "
           "the others still scores).", 1, 16)
    min_baseline: float = parameter(
        0.08, "A source's camera centre lies at least this far from the frame's (metres).", 0.001, 10.0)
    max_baseline: float = parameter(
        0.45, "A source's camera centre lies at most this far from the frame's (metres).", 0.01, 10.0)
    max_view_angle: float = parameter(
        30.0, "A source's viewing direction is within this angle of the frame's (degrees).", 1.0, 90.0)
    keyframe_spacing: float = parameter(
        0.03, "A frame is kept as a future source when its camera moved this far (metres) or turned 3 degrees "
              "from the last one kept.", 0.0, 10.0)
    max_keyframes: int = parameter(40, "Sources kept (the oldest are forgotten first).", 2, 1000)
    min_score: float = parameter(
        0.85, "A pixel keeps its depth only when its score (zero-mean normalized cross-correlation, -1..1) reaches "
              "this, min_support sources reach support_score there and its window is textured (min_texture); the "
              "other pixels have no depth.", -1.0, 1.0)
    support_score: float = parameter(
        0.7, "Correlation a source must reach at a pixel's chosen depth to count towards min_support.", -1.0, 1.0)
    min_support: int = parameter(2, "Sources that must reach support_score at a pixel's chosen depth.", 1, 16)
    consistency: float = parameter(
        0.03, "A pixel's depth must also agree within this fraction with the depth estimated earlier for a source "
              "(its point seen from the source) in at least min_consistent sources that have one.", 0.0, 1.0)
    min_consistent: int = parameter(
        2, "Sources with an earlier depth that must agree (see consistency); 0 = no check.", 0, 16)
    min_texture: float = parameter(
        0.01, "Least standard deviation of the frame's intensity (0..1) in a pixel's window for its depth to be "
              "kept.", 0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.window % 2 == 0:
            raise ValueError(f"StereoConfig.window must be odd, got {self.window}")
        if self.min_depth >= self.max_depth:
            raise ValueError(f"StereoConfig.min_depth ({self.min_depth}) must be below max_depth ({self.max_depth})")
        if self.min_baseline >= self.max_baseline:
            raise ValueError(f"StereoConfig.min_baseline ({self.min_baseline}) must be below max_baseline "
                             f"({self.max_baseline})")
        if max(self.best_sources, self.min_support, self.min_consistent) > self.max_sources:
            raise ValueError(f"StereoConfig.best_sources ({self.best_sources}), min_support ({self.min_support}) "
                             f"and min_consistent ({self.min_consistent}) cannot exceed max_sources "
                             f"({self.max_sources})")
