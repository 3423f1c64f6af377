"""Where the repository and the shared data are, from any test file."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
