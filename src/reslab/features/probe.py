"""``reslab probe``: how well a network's frozen features separate a dataset's classes. Features of the training
and test images are computed once; a kNN classifier (``knn``) and a linear probe (scikit-learn's logistic
regression, its C chosen by cross-validation on the training features) are fitted on them and scored on the test
split (val where there is no test split)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import load_dataset
from ..models import load_model_file
from ..results import Result
from .extract import split_features
from .knn import KNN_K, KNN_TEMPERATURE, knn_top1

PROBE_CS = (0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths tried, on standardised features


@dataclass
class ProbeReport(Result):
    model: Path
    data: str
    split: str  # the split scored: test, or val where there is none
    features: int  # their dimension
    train_images: int
    test_images: int
    knn_top1: float
    knn_k: int
    knn_temperature: float
    linear_top1: float
    linear_c: float
    seconds: float

    def text(self) -> str:
        return "\n".join([
            f"{self.model} on {self.data}: {self.features}-d features of {self.train_images} training images, "
            f"scored on {self.test_images} {self.split} images ({self.seconds:.0f} s)",
            f"kNN (k={self.knn_k}, cosine, temperature {self.knn_temperature:g}): top-1 {self.knn_top1:.4f}",
            f"linear probe (logistic regression, C={self.linear_c:g} by 3-fold cross-validation): top-1 "
            f"{self.linear_top1:.4f}",
        ])


def probe_estimator(folds: int = 3):
    """scikit-learn's logistic regression on standardised features, its C chosen by ``folds``-fold
    cross-validation among ``PROBE_CS``: the linear probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return GridSearchCV(probe, {"logisticregression__C": list(PROBE_CS)}, cv=folds)


def linear_probe(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
                 ) -> tuple[float, float]:
    """(test top-1, C) of the linear probe fitted on the training features."""
    folds = min(3, int(np.bincount(train_labels).min()))
    if folds < 2:
        raise ValueError("a linear probe needs at least 2 training images of every class")
    search = probe_estimator(folds).fit(train, train_labels)
    return float(search.score(test, test_labels)), float(search.best_params_["logisticregression__C"])


def run_probe(model_path: Path, data: str, device: torch.device, batch_size: int = 256, workers: int | None = None,
              k: int = KNN_K, temperature: float = KNN_TEMPERATURE, cache_dir: str | None = None,
              seed: int = 0) -> ProbeReport:
    start = time.perf_counter()
    dataset = load_dataset(data, cache_dir, seed, hold_out=False)
    evaluated, split = (dataset.test, "test") if dataset.test is not None else (dataset.val, "val")
    if evaluated is None:
        raise ValueError(f"{data}: a probe is scored on a test/ or val/ split, and there is neither")
    model, info = load_model_file(model_path, device)
    if info.task == "video":
        raise ValueError(f"{model_path}: a video model; probe takes the features of image models")
    train, train_labels = split_features(model, info.preprocess, dataset.train, device, batch_size, workers)
    test, test_labels = split_features(model, info.preprocess, evaluated, device, batch_size, workers)
    knn = knn_top1(train, train_labels, test, test_labels, len(dataset.classes), k, temperature)
    linear, c = linear_probe(train, train_labels, test, test_labels)
    return ProbeReport(model_path, data, split, train.shape[1], len(train), len(test), knn, min(k, len(train)),
                       temperature, linear, c, time.perf_counter() - start)
