"""Whether the evaluation's scenes are held out from a checkpoint's training, from the checkpoint's record
(:mod:`..data.training_record`).

Scenes the checkpoint was trained or validated on are refused (a ValueError naming them). Only the reserved rooms
900-909, which no training config may use, are called held-out; other seeds are titled as what they are, and a
checkpoint that records no training scenes (exported before the record existed) gets a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.training_record import RESERVED_EVALUATION_SEEDS, TrainingRecord

RESERVED_RANGE = f"{RESERVED_EVALUATION_SEEDS.start}-{RESERVED_EVALUATION_SEEDS.stop - 1}"


def record_warning(record: TrainingRecord | None) -> str | None:
    """A warning when ``record`` cannot tell which scenes the checkpoint has seen."""
    if record is None:
        return ("warning: the checkpoint records no training scenes (exported before the record existed): only the "
                f"reserved rooms {RESERVED_RANGE} are known to be held out")
    if not record.complete:
        return ("warning: the checkpoint's training record is incomplete (it was fine-tuned from a checkpoint that "
                f"recorded none): only the reserved rooms {RESERVED_RANGE} are known to be held out")
    return None


def check_synthetic_rooms(seeds: Sequence[int], record: TrainingRecord | None) -> None:
    """ValueError naming the ``seeds`` whose rooms the checkpoint was trained or validated on."""
    if record is None:
        return
    seen = {seed: record.synthetic_splits(seed) for seed in seeds}
    seen = {seed: splits for seed, splits in seen.items() if splits}
    if seen:
        raise ValueError("the checkpoint was trained or validated on synthetic rooms "
                         + ", ".join(f"{seed} ({' and '.join(splits)})" for seed, splits in seen.items())
                         + f": they are not held out; evaluate on the reserved rooms {RESERVED_RANGE}")


def synthetic_title(seeds_text: str, seeds: Sequence[int], record: TrainingRecord | None) -> str:
    """The table title of the synthetic rooms: "held-out" only for the reserved rooms."""
    outside = [seed for seed in seeds if seed not in RESERVED_EVALUATION_SEEDS]
    if not outside:
        return f"Synthetic held-out rooms (seeds {seeds_text})"
    known = ("not trained on by this checkpoint" if record is not None and record.complete
             else "possibly trained on: the checkpoint does not record its training scenes fully")
    return (f"Synthetic rooms (seeds {seeds_text}; {outside} not among the reserved held-out rooms {RESERVED_RANGE}, "
            f"{known})")


def sequence_note(folder: Path, held_out_range: tuple[int, int], record: TrainingRecord | None) -> str:
    """What the checkpoint saw of the sequence ``folder``, for the table title; ValueError when it was trained or
    validated on frames at or after the first held-out view frame (``held_out_range``: [first, last))."""
    first, last = held_out_range
    views = f"held-out views from frames {first}-{last - 1}"
    if record is None:
        return f"{views}; the checkpoint does not record its training scenes"
    scenes = record.sequence_scenes(folder)
    if not scenes:
        return f"{views}; not trained on" if record.complete else f"{views}; not in the partial training record"
    for scene in scenes:
        if scene.last_frame is None or scene.last_frame >= first:
            seen = "every frame" if scene.last_frame is None else f"frames 0-{scene.last_frame}"
            used = "trained" if scene.split == "train" else "validated"
            raise ValueError(f"the checkpoint was {used} on {folder} (scene {scene.scene!r}: {seen}, stride "
                             f"{scene.frame_stride}), which reaches the held-out view frames {first}-{last - 1}: "
                             "they are not held out; give --held-out-frames after the frames it saw")
    seen = max(scene.last_frame for scene in scenes)
    return f"{views}; the checkpoint trained on frames 0-{seen} of it"
