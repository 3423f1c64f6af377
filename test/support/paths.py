"""Where the repository and the shared data are, from any test file.

The shared data lies beside the checkout (``../shared``, as CI places it). Tests reach it through the
``shared_data`` fixture of ``test/conftest.py``, which fails (never skips) when it is missing.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SEVEN_SCENES = SHARED / "data" / "7scenes-redkitchen"
SEGMENTER = SHARED / "models" / "deeplabv3-mobilenetv2-ade20k"
