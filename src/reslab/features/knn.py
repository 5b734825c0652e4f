"""The kNN classifier of self-supervised benchmarks (Wu et al. 2018, as lightly's benchmarks run it): each test
image's k nearest training images by cosine similarity vote for their classes, weighted by exp(similarity / t)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .options import KNN_K, KNN_TEMPERATURE


def knn_top1(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
             num_classes: int, k: int = KNN_K, temperature: float = KNN_TEMPERATURE, chunk: int = 1024) -> float:
    """Top-1 of lightly's ``knn_predict`` over the test features, the training features its bank."""
    from lightly.utils.benchmarking.knn import knn_predict  # lightly: the ssl extra

    if k < 1 or temperature <= 0:
        raise ValueError(f"kNN: k={k}, temperature={temperature}: k is at least 1 and the temperature positive")
    bank = F.normalize(torch.from_numpy(train).float(), dim=1).T.contiguous()
    labels = torch.from_numpy(train_labels).long()
    k = min(k, bank.shape[1])
    correct = 0
    for start in range(0, len(test), chunk):  # (chunk, N) similarities at a time
        features = F.normalize(torch.from_numpy(test[start : start + chunk]).float(), dim=1)
        predicted = knn_predict(features, bank, labels, num_classes, knn_k=k, knn_t=temperature)[:, 0]
        correct += int((predicted == torch.from_numpy(test_labels[start : start + chunk]).long()).sum())
    return correct / len(test)
