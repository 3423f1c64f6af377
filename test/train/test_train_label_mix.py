"""SSR's semi-supervised mix (``data.labeled_seeds``): the labeled rooms' views carry their 2D ground-truth labels,
every other scene the segmenter's pseudo-labels; the input's fused labels stay the segmenter's everywhere.

Real runs of the pipeline on the two small rooms of ``tiny.yaml`` with the real DeepLab segmenter: one config with
room 4 labeled, one with none, sharing a data root (so the pseudo-labels are computed once).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from support.paths import REPO

from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_training.data.chunk_dataset import load_chunk, read_manifest  # noqa: E402
from semantic_recon_training.data.pseudo_labels import sequence_key  # noqa: E402
from semantic_recon_training.data.view_images import pick_pixels  # noqa: E402
from semantic_recon_training.fitting.data_module import ChunkDataModule  # noqa: E402
from semantic_recon_training.fitting.data_sources import label_source, prepare_scenes  # noqa: E402
from semantic_recon_training.fitting.training_config import DataConfig, load_run_config  # noqa: E402

TINY = REPO / "semantic_recon_training" / "configs" / "tiny.yaml"
LABELED, UNLABELED = "synthetic_0004", "synthetic_0005"

pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_data")


def _config(root, labeled_seeds):
    config = load_run_config(TINY)
    config.data.root = str(root / "data")
    config.trainer.output_dir = str(root / "run")
    config.data.labels = "segmenter"
    config.data.labeled_seeds = list(labeled_seeds)
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(mixed config, its caches, pseudo-only config, its caches), on one data root."""
    root = tmp_path_factory.mktemp("label_mix")
    mixed = _config(root, [4])
    pseudo = _config(root, [])
    return mixed, prepare_scenes(mixed, progress=False), pseudo, prepare_scenes(pseudo, progress=False)


def _view_labels_and_truth(config, cache):
    """Per stored view of every chunk: (stored labels, ground truth at the view's pixels, pseudo-labels there)."""
    manifest = read_manifest(cache)
    frames = open_sequence(manifest["source"])
    segmenter = label_source(config)
    downscale = manifest["config"]["view_downscale"]
    key = sequence_key(manifest["source"])
    rows = []
    for entry in manifest["chunks"]:
        chunk = load_chunk(cache / entry["file"])
        for stored, index in zip(chunk["view_labels"], chunk["view_frames"].tolist()):
            frame = frames[index]
            known = (frame.labels >= 0) & (frame.labels < len(manifest["class_names"]))
            truth = pick_pixels(np.where(known, frame.labels, -1), downscale)
            pseudo = pick_pixels(segmenter.labels(key, index, frame), downscale)
            rows.append((stored.numpy().astype(np.int64), truth.astype(np.int64), pseudo.astype(np.int64)))
    return rows


def test_labeled_rooms_get_ground_truth_views_and_the_others_pseudo_labels(runs):
    mixed, caches, _, _ = runs
    assert caches[LABELED].name == f"{LABELED}.gt2d" and caches[UNLABELED].name == UNLABELED
    assert read_manifest(caches[LABELED])["label_source"] == "ground_truth"
    assert read_manifest(caches[UNLABELED])["label_source"].startswith("segmenter:")
    for cache in caches.values():  # the input's fused labels come from the segmenter in every scene
        assert read_manifest(cache)["input_label_source"].startswith("segmenter:")

    labeled = _view_labels_and_truth(mixed, caches[LABELED])
    unlabeled = _view_labels_and_truth(mixed, caches[UNLABELED])
    assert labeled and unlabeled
    for stored, truth, _ in labeled:
        assert np.array_equal(stored, truth)
    for stored, _, pseudo in unlabeled:
        assert np.array_equal(stored, pseudo)
    # the two label sources really differ on these rooms (DeepLab gets much of a synthetic room wrong)
    assert sum(int((truth != pseudo).sum()) for _, truth, pseudo in labeled) > 0.2 * sum(t.size for _, t, _ in labeled)
    assert sum(int((truth != pseudo).sum()) for _, truth, pseudo in unlabeled) > 0


def test_a_labeled_room_differs_from_its_pseudo_labeled_cache_in_the_view_labels_only(runs):
    _, caches, _, pseudo_caches = runs
    assert pseudo_caches[LABELED].name == LABELED  # kept apart from the .gt2d cache on the same data root
    labeled, pseudo = read_manifest(caches[LABELED]), read_manifest(pseudo_caches[LABELED])
    assert [e["chunk"] for e in labeled["chunks"]] == [e["chunk"] for e in pseudo["chunks"]]
    differing = 0
    for a_entry, b_entry in zip(labeled["chunks"], pseudo["chunks"]):
        a = load_chunk(caches[LABELED] / a_entry["file"])
        b = load_chunk(pseudo_caches[LABELED] / b_entry["file"])
        for name in ("tsdf", "observed", "color", "input_labels", "target_tsdf", "view_frames", "view_depth",
                     "gt_labels"):
            assert torch.equal(a[name], b[name]), name
        differing += int((a["view_labels"] != b["view_labels"]).sum())
    assert differing > 0
    # the unlabeled room's cache is the same whichever config wrote it
    assert read_manifest(caches[UNLABELED]) == read_manifest(pseudo_caches[UNLABELED])


def test_training_reads_the_labeled_caches(runs):
    mixed, caches, _, _ = runs
    module = ChunkDataModule(mixed)
    assert module.train_dirs == [caches[LABELED]] and module.val_dirs == [caches[UNLABELED]]
    module.setup()
    assert len(module.train_set) == len(read_manifest(caches[LABELED])["chunks"])


def test_bad_label_mixes_fail_naming_the_file_and_the_seeds(tmp_path):
    with pytest.raises(ValueError, match=r"labeled_seeds \[7\] are not among the synthetic_seeds"):
        DataConfig(synthetic_seeds=[4, 5], labeled_seeds=[4, 7])
    with pytest.raises(ValueError, match="labeled_seeds needs labels: segmenter"):
        DataConfig(synthetic_seeds=[4, 5], labeled_seeds=[4], labels="ground_truth")
    with pytest.raises(ValueError, match="labeled_seeds must be unique"):
        DataConfig(synthetic_seeds=[4, 5], labeled_seeds=[4, 4])
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump({"base": str(TINY), "data": {"labels": "segmenter", "labeled_seeds": [9]}}))
    with pytest.raises(ValueError) as err:
        load_run_config(path)
    assert str(path) in str(err.value) and "[data]" in str(err.value) and "[9]" in str(err.value)
    assert DataConfig(synthetic_seeds=[4, 5]).cache_dir(LABELED).name == LABELED  # no mix: the usual folders


def test_the_semi_supervised_configs_label_only_synthetic_training_rooms():
    configs = REPO / "semantic_recon_training" / "configs"
    mixes = (("semi_supervised.yaml", 11), ("semi_supervised_half.yaml", 6), ("semi_supervised_none.yaml", 0))
    for name, count in mixes:
        config = load_run_config(configs / name)
        data = config.data
        assert data.labels == "segmenter" and len(data.labeled_seeds) == count
        assert {data.synthetic_name(s) for s in data.labeled_seeds} <= set(data.train_scenes())
        assert config.losses.gt_tsdf == 0 and config.losses.gt_semantic == 0  # 2D labels only, never 3D
        assert config.trainer.num_threads == 1
