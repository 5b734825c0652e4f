"""Imbalanced classes: the balanced sampler, class weights in the loss, and balanced accuracy / macro-F1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.utils.class_weight import compute_class_weight

from reslab.config import TrainConfig
from reslab.data.check import check_folder, format_report
from reslab.data.decoding import NormalizeBatch, TrainCrops
from reslab.data.folders import scan_folder
from reslab.data.loaders import SkipLog, TensorLoader
from reslab.data.options import AugmentOptions
from reslab.data.preprocess import Preprocess
from reslab.data.sampling import balanced_weights, draw_keys, epoch_sequence
from reslab.data.splits import ArraySplit
from reslab.data.streams import StreamLoader
from reslab.data.transforms import BatchAugment
from reslab.evaluate.metrics import balanced_accuracy, macro_f1
from reslab.models import load_model_file
from reslab.train.class_weights import class_weights
from reslab.train.trainer import Trainer

from .order import epoch_order
from .test_train import read_metrics, tiny_config

LABELS_10_TO_1 = [0] * 1000 + [1] * 100  # 10:1


def test_balanced_sampler_draws_each_class_equally_often_repeatably():
    weights = balanced_weights(LABELS_10_TO_1, 2)
    labels = torch.tensor(LABELS_10_TO_1)
    sequence = epoch_sequence(1100, seed=3, epoch=2, shuffle=True, weights=weights)
    share = float((labels[sequence] == 1).double().mean())
    # 1,100 draws of p = 1/2: standard deviation 1.5%; without the sampler the share is 9.1%
    assert 0.43 < share < 0.57
    assert torch.equal(sequence, epoch_sequence(1100, 3, 2, True, weights))  # seeded by (seed, epoch)
    assert not torch.equal(sequence, epoch_sequence(1100, 3, 3, True, weights))
    assert len(set(sequence.tolist())) < 1100  # with replacement: the rare class's images come up again
    # sharded: the ranks' slices of each global batch make up the one-process sequence
    shards = [epoch_order(1100, 3, 2, True, rank, 2, 50, drop_last=True, weights=weights) for rank in range(2)]
    together = torch.stack([s.view(-1, 50) for s in shards], 1).reshape(-1)
    assert torch.equal(together, sequence[: len(together)])


def test_draw_keys_tell_repeats_apart():
    sequence = torch.tensor([4, 1, 4, 0, 4, 1])
    keys = draw_keys(sequence, 5)
    assert keys.tolist() == [4, 1, 9, 0, 14, 6]
    assert torch.equal(keys % 5, sequence)
    permutation = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw_keys(permutation, 7), permutation)  # no repeats: keys are the indices


def _rare_and_common(tmp_path: Path, photos: dict[str, Path]) -> Path:
    """One photo of class "rare", nine of class "common"."""
    root = tmp_path / "imbalanced"
    (root / "train" / "rare").mkdir(parents=True)
    (root / "train" / "common").mkdir(parents=True)
    Image.open(photos["chelsea"]).convert("RGB").save(root / "train" / "rare" / "cat.jpg")
    for i in range(9):
        source = photos["grace_hopper" if i % 2 else "camera"]
        Image.open(source).convert("RGB").rotate(i * 3).save(root / "train" / "common" / f"{i}.jpg")
    return root


def test_a_repeated_image_gets_its_own_crop_each_time(tmp_path, photos):
    classes, train = scan_folder(_rare_and_common(tmp_path, photos) / "train")
    pre = Preprocess(48, 55, (0.5,) * 3, (0.25,) * 3)
    device = torch.device("cpu")
    rare = classes.index("rare")
    weights = balanced_weights(train.labels, 2)
    loader = StreamLoader(train, TrainCrops(48, 3, "bilinear", 0), NormalizeBatch(pre, device), 4, SkipLog(),
                          device, workers=0, shuffle=True, seed=1, weights=weights)
    copies = [x for batch, labels in loader for x, y in zip(batch, labels) if y == rare]
    assert len(copies) >= 2  # about half of 10 draws
    assert all(not torch.equal(a, b) for i, a in enumerate(copies) for b in copies[i + 1:])


def test_in_memory_loader_with_the_sampler_balances_and_varies_copies():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (110, 3, 16, 16), dtype=np.uint8)
    labels = np.array([0] * 100 + [1] * 10)
    pre = Preprocess(16, 16, (0.5,) * 3, (0.25,) * 3)
    loader = TensorLoader(ArraySplit(images, labels), pre, 22, torch.device("cpu"),
                          augment=BatchAugment(AugmentOptions("cifar", crop_padding=4), pre), shuffle=True,
                          weights=balanced_weights(labels, 2))
    xs, ys = zip(*loader)
    y = torch.cat(ys)
    assert len(y) == 110 and 0.35 < float(y.double().mean()) < 0.65
    x = torch.cat(xs)[y == 1]
    assert len({tuple(img.flatten()[:64].tolist()) for img in x}) > len(x) // 2  # copies are augmented apart


def test_class_weights_balanced_and_effective_number():
    counts = [500, 50, 5, 0]
    balanced = class_weights(counts, "balanced")
    labels = np.repeat([0, 1, 2], [500, 50, 5])
    reference = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert torch.allclose(balanced[:3].double(), torch.from_numpy(reference * 3 / reference.sum()), rtol=1e-6)
    assert balanced[3] == 0 and abs(float(balanced[:3].mean()) - 1) < 1e-6
    beta = 0.99
    effective = class_weights(counts, "effective", beta)
    expected = torch.tensor([(1 - beta) / (1 - beta**n) for n in counts[:3]], dtype=torch.float64)
    assert torch.allclose(effective[:3].double(), expected * 3 / expected.sum(), rtol=1e-5)
    # rarer classes weigh more, but less than in proportion: 100x rarer gets under 100x the weight
    assert effective[0] < effective[1] < effective[2] < 100 * effective[0]
    assert class_weights(counts, "none") is None
    with pytest.raises(ValueError, match="class_weights.*'inverse'"):
        class_weights(counts, "inverse")


def test_balanced_accuracy_and_macro_f1_match_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.choice(4, 300, p=[0.7, 0.2, 0.08, 0.02])
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 5, 300))
    confusion = torch.zeros(5, 5, dtype=torch.long)
    np.add.at(confusion.numpy(), (y, pred), 1)
    assert balanced_accuracy(confusion) == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert macro_f1(confusion) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)


def _imbalanced_tiny(tiny_folder: Path, tmp_path: Path) -> Path:
    root = tmp_path / "tiny-imbalanced"
    shutil.copytree(tiny_folder, root)
    for name in ("frog", "horse", "ship", "truck"):
        for path in sorted((root / "train" / name).iterdir())[2:]:
            path.unlink()
    return root


def test_training_with_weights_and_sampler_reports_imbalance(tiny_folder, tmp_path):
    root = _imbalanced_tiny(tiny_folder, tmp_path)
    cfg = tiny_config(root, tmp_path, epochs=1, class_weights="effective", effective_beta=0.9, sampler="balanced",
                      label_smoothing=0.0)
    trainer = Trainer(cfg)
    summary = trainer.fit()
    counts = trainer.data.class_counts
    assert sorted(counts) == [2] * 4 + [16] * 6
    assert trainer.class_weights[counts.index(2)] > trainer.class_weights[counts.index(16)]
    # the loss is the class-weighted cross-entropy
    logits, y = torch.randn(8, 10), torch.tensor([0, 5, 6, 7, 8, 9, 1, 6])
    w = trainer.class_weights
    expected = (w[y] * F.cross_entropy(logits, y, reduction="none")).sum() / w[y].sum()
    assert torch.allclose(trainer._loss(logits, torch.empty(0), y), expected)

    row = read_metrics(tmp_path / "run")[-1]
    assert 0 <= float(row["val_balanced_accuracy"]) <= 1 and 0 <= float(row["val_macro_f1"]) <= 1
    assert summary["best_val_balanced_accuracy"] == pytest.approx(float(row["val_balanced_accuracy"]))
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["sampler"] == "balanced" and saved["class_weights"] == "effective"
    _, info = load_model_file(tmp_path / "run" / "best.safetensors")
    assert info.training["class_counts"] == counts and info.training["effective_beta"] == 0.9
    assert info.training["class_weight_values"] == pytest.approx(w.tolist(), rel=1e-5)


def test_check_data_suggests_weights_for_imbalanced_folders(tiny_folder, tmp_path):
    assert check_folder(tiny_folder)["suggestions"] == []
    report = check_folder(_imbalanced_tiny(tiny_folder, tmp_path))
    assert report["splits"]["train"]["imbalance"] == 8.0
    (text,) = report["suggestions"]
    assert "8.0:1" in text and "--class-weights balanced" in text and "--sampler balanced" in text
    assert "suggestion: classes are imbalanced" in format_report(report)


def test_bad_imbalance_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="'sampler'.*'weighted'"):
        TrainConfig(sampler="weighted")
    with pytest.raises(ValueError, match="'effective_beta'"):
        TrainConfig(class_weights="effective", effective_beta=1.0)


@pytest.mark.slow
def test_weights_and_sampler_raise_balanced_accuracy_on_a_10_to_1_set():
    """The shipped sample with half of the classes cut to a tenth of their training images (val balanced)."""
    from reslab.bench.imbalance import run_imbalance_bench
    from reslab.bench.options import ImbalanceBench

    result = run_imbalance_bench(ImbalanceBench(
        data=None, ratio=10, recipes="none,class-weights balanced,sampler balanced", model="resnet20", epochs=10,
        batch_size=64, lr=0.05, seeds=2, device="cpu", json=True))
    assert result["train_counts"] == [300] * 5 + [30] * 5
    scores = {name: [r["balanced_accuracy"] for r in result["rows"] if r["recipe"] == name]
              for name in ("none", "class-weights balanced", "sampler balanced")}
    # measured (3 seeds, 15 epochs): none 0.300, weights 0.348, sampler 0.373, spread over seeds <= 0.03
    for name in ("class-weights balanced", "sampler balanced"):
        assert min(scores[name]) > max(scores["none"]), scores
