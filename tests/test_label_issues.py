"""`reslab find-label-issues`: out-of-sample probabilities (k-fold or a model's), cleanlab's ranking, the reports."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from reslab.bench.label_issues import flipped_pack, per_class_images, precision_recall
from reslab.config import TrainConfig
from reslab.curate.label_issues import (
    cross_validated_probabilities,
    find_label_issues,
    folds_of,
    format_label_issues,
    training_images,
)

from .conftest import SAMPLES


@pytest.fixture(scope="module")
def flipped(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The shipped sample with 10% of its test labels moved to another class (the demo model never saw test)."""
    z = np.load(SAMPLES / "cifar10-sample.npz")
    arrays = {k: z[k] for k in z.files}
    rng = np.random.default_rng(0)
    labels = arrays["y_test"].astype(np.int64)
    flips = np.sort(rng.choice(len(labels), 40, replace=False))
    labels[flips] = (labels[flips] + rng.integers(1, 10, 40)) % 10
    arrays["y_test"] = labels
    path = tmp_path_factory.mktemp("flipped") / "flipped.npz"
    np.savez(path, **arrays)
    return path, flips


def test_a_models_predictions_single_out_the_flipped_labels(flipped, trained_model, tmp_path):
    data, flips = flipped
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    cfg = TrainConfig(data=str(data), out_dir=str(tmp_path), name="search", device="cpu")
    report = find_label_issues(cfg, from_model=trained_model, split="test", top=8, write_relabel=True)
    found = {int(row["image"].removeprefix("test[").removesuffix("]")) for row in report["issues"]}
    flagged_flips = len(found & set(flips.tolist())) / len(flips)
    flagged_clean = len(found - set(flips.tolist())) / (report["readable"] - len(flips))
    # a 65% model: most flips are flagged, and a flipped label is far likelier flagged than a clean one
    assert flagged_flips >= 0.5 and flagged_flips > 3 * flagged_clean, (flagged_flips, flagged_clean)

    qualities = [row["quality"] for row in report["issues"]]
    assert qualities == sorted(qualities)  # worst first
    run = tmp_path / "search"
    with open(run / "label_issues.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report["flagged"] and set(rows[0]) == {"rank", "image", "given_label", "suggested_label",
                                                               "quality", "p_suggested"}
    assert all(r["given_label"] != r["suggested_label"] for r in rows)
    with open(run / "relabel.csv") as f:
        assert {r["action"] for r in csv.DictReader(f)} == {"review"}
    assert (run / "label_issues.png").stat().st_size > 10_000
    assert json.loads((run / "summary.json").read_text())["flagged"] == report["flagged"]
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before  # nothing in the dataset changed
    with pytest.raises(ValueError, match="already holds a search: pass --resume"):
        find_label_issues(cfg, from_model=trained_model, split="test")


def test_folds_are_stratified_disjoint_and_complete():
    labels = np.repeat(np.arange(4), [20, 10, 10, 5])
    folds = folds_of(labels, 5, seed=0)
    together = np.concatenate(folds)
    assert sorted(together.tolist()) == list(range(len(labels)))
    assert all(np.bincount(labels[f], minlength=4).tolist() == [4, 2, 2, 1] for f in folds)
    assert all(np.array_equal(a, b) for a, b in zip(folds, folds_of(labels, 5, seed=0)))
    with pytest.raises(ValueError, match="smallest class has 5 training images, fewer than --folds 6"):
        folds_of(labels, 6, seed=0)


def test_cross_training_predicts_each_image_with_a_model_that_never_saw_it(tiny_folder, tmp_path):
    cfg = TrainConfig(data=str(tiny_folder), model="resnet20", epochs=1, batch_size=32, lr=0.05, device="cpu",
                      out_dir=str(tmp_path), name="search", amp=False)
    dataset = training_images(cfg, cfg.run_dir)
    assert len(dataset.train) == 160  # every training image: none held out (the folder has a test split)
    probs, folds = cross_validated_probabilities(cfg, dataset, 2, cfg.run_dir)
    assert probs.shape == (160, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert [f["held_out"] for f in folds] == [80, 80]
    for k, held in enumerate(folds_of(np.asarray(dataset.train.labels), 2, 0)):
        saved = np.load(cfg.run_dir / f"fold-{k}" / "held_out.npz")
        assert np.array_equal(saved["indices"], held) and np.array_equal(saved["probabilities"], probs[held])
    again, reused = cross_validated_probabilities(cfg, dataset, 2, cfg.run_dir)  # an interrupted search goes on
    assert np.array_equal(again, probs) and all(f["reused"] for f in reused)
    shutil.rmtree(cfg.run_dir / "fold-1")  # cut short before fold 1 began: --resume trains it from the start
    resumed, folds = cross_validated_probabilities(replace(cfg, resume=True), dataset, 2, cfg.run_dir)
    assert folds[0]["reused"] and "val_top1" in folds[1] and np.array_equal(resumed[held], probs[held])


@pytest.mark.slow
def test_command_line(flipped, trained_model, tmp_path):
    data, _ = flipped
    done = subprocess.run([sys.executable, "-m", "reslab", "find-label-issues", "--from-model", str(trained_model),
                           "--data", str(data), "--split", "test", "--out-dir", str(tmp_path), "--top", "3"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "test images flagged as likely label errors" in done.stdout
    assert "nothing in the dataset was changed" in done.stdout
    assert (tmp_path / "label-issues-flipped" / "label_issues.csv").is_file()


def test_flipped_pack_and_scores(tmp_path):
    flips = flipped_pack(SAMPLES / "cifar10-sample.npz", tmp_path / "f.npz", 0.05, seed=3, images=1000)
    source, noisy = np.load(SAMPLES / "cifar10-sample.npz"), np.load(tmp_path / "f.npz")
    kept = per_class_images(source["y_train"], 1000, 10)  # 100 of each class, whatever the pack's order
    original = source["y_train"][kept]
    assert len(noisy["y_train"]) == 1000 and len(flips) == 50 and np.bincount(original).tolist() == [100] * 10
    assert np.flatnonzero(original != noisy["y_train"]).tolist() == flips.tolist()
    ends, new_ends = source["train_offsets"], noisy["train_offsets"]
    for k, i in enumerate(kept[:5]):  # the same JPEG bytes, moved together with their labels
        assert noisy["train_jpeg"][new_ends[k] : new_ends[k + 1]].tobytes() == \
            source["train_jpeg"][ends[i] : ends[i + 1]].tobytes()
    assert precision_recall({1, 2, 3, 4}, {3, 4, 5}) == (0.5, 2 / 3)


def test_frozen_features_of_a_model_that_never_saw_the_images_single_out_the_flipped_labels(flipped, trained_model,
                                                                                          tmp_path):
    """--features: the demo model (trained on the sample's train split) gives the features of the 400 test images,
    whose labels are 10% flipped and which are here the search's training split; a linear probe cross-validated
    on them gives the probabilities, without training a network. The list is as long as cleanlab's estimate."""
    data, flips = flipped
    z = dict(np.load(data))
    for key in ("jpeg", "offsets"):
        z[f"train_{key}"] = z[f"test_{key}"]
    z["y_train"] = z["y_test"]
    search_data = tmp_path / "test-as-train.npz"
    np.savez(search_data, **z)
    cfg = TrainConfig(data=str(search_data), out_dir=str(tmp_path), name="features", device="cpu")
    report = find_label_issues(cfg, features=trained_model, top=8)
    assert report["split"] == "train" and report["readable"] == 400 and report["feature_dimension"] == 64
    assert report["flagged"] == report["estimated_issues"] == len(report["issues"])
    found = {int(row["image"].removeprefix("train[").removesuffix("]")) for row in report["issues"]}
    precision, recall = precision_recall(found, set(flips.tolist()))
    flagged_clean = len(found - set(flips.tolist())) / (400 - len(flips))
    # most flips are flagged, a flipped label far likelier than a clean one
    assert recall >= 0.6 and recall > 3 * flagged_clean, (precision, recall, flagged_clean, report["flagged"])
    assert "10-fold cross-validated" in report["method"]
    # a 65% model's 64-d features: the probe's out-of-sample top-1 is too low to trust the list, and it says so
    assert report["out_of_sample_top1"] < 0.7 and "unreliable" in report["warning"]
    assert "cleanlab estimates" in format_label_issues(report, 8)
    with pytest.raises(ValueError, match="give one"):
        find_label_issues(replace(cfg, name="both"), features=trained_model, from_model=trained_model)
