"""Pictures: training curves, confusion matrix heat-map, worst-classified images, feature maps."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ..atomic import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


CURVES = {  # (training figure, val figure) of each kind of run, with their names on the plot
    "multiclass": (("train_top1", "train top-1"), ("val_top1", "val top-1")),
    "multilabel": (("train_exact_match", "train exact match"), ("val_map", "val mAP")),
    "features": (("train_view_top1", "train: own view nearest"), ("val_knn_top1", "val kNN top-1")),
}


def plot_history(history: list[dict[str, float]], path: Path) -> Path:
    """Loss, and top-1 (single-label), exact match and mAP (multi-label), or the views' top-1 and the kNN monitor
    (self-supervised), by epoch."""
    kind = ("multilabel" if "train_exact_match" in history[0] else "features" if "train_view_top1" in history[0]
            else "multiclass")
    (train_key, train_name), (val_key, val_name) = CURVES[kind]
    epochs = [h["epoch"] for h in history]
    evaluated = [h for h in history if val_key in h]  # --eval-every skips some epochs
    val_epochs = [h["epoch"] for h in evaluated]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    if kind != "features":  # a self-supervised loss has no val counterpart
        ax_loss.plot(val_epochs, [h["val_loss"] for h in evaluated], "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [h[train_key] for h in history], "o-", label=train_name)
    ax_acc.plot(val_epochs, [h[val_key] for h in evaluated], "o-", label=val_name)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_confusion(confusion: Tensor, classes: list[str], path: Path) -> Path:
    n = len(classes)
    rows = confusion.double() / confusion.sum(1, keepdim=True).clamp(min=1)
    size = max(5.0, min(0.45 * n + 2, 30.0))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90 if n > 6 else 0, fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                count = int(confusion[i, j])
                if count:
                    ax.text(j, i, count, ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def denormalize(image: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Normalised (C, H, W) -> displayable (H, W, C) in [0, 1]."""
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return (image * s + m).clamp(0, 1).permute(1, 2, 0)


def plot_image_grid(images: list, titles: list[str], title: str, path: Path) -> Path:
    """Pictures ((H, W[, C]) arrays) in rows of eight, each with its caption."""
    cols = min(8, max(1, len(images)))
    rows = max(1, math.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, shown, caption in zip(axes.flat, images, titles):
        ax.imshow(shown[..., 0] if shown.ndim == 3 and shown.shape[-1] == 1 else shown, cmap="gray")
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_worst(worst: list[tuple[float, int, int, Tensor]], classes: list[str], mean, std, path: Path,
               overlays: list | None = None, what: str = "images") -> Path:
    """The worst-classified images (``what``: or videos, as strips of frames) with their true and predicted
    classes; ``overlays``: pictures to show instead of the images (Grad-CAM heat-maps of the predicted class)."""
    images = overlays if overlays is not None else [denormalize(image, mean, std).numpy() for *_, image in worst]
    titles = [f"true {classes[true]}\npred {classes[pred]}\np(true)={p_true:.2f}" for p_true, true, pred, _ in worst]
    why = ": Grad-CAM of the predicted class" if overlays is not None else ""
    return plot_image_grid(images, titles, f"Worst-classified {what} (lowest probability of the true class){why}",
                           path)


def plot_feature_maps(maps: Tensor, path: Path, title: str) -> Path:
    """One image's (C, H, W) activations as a grid, each channel scaled to its own range."""
    count = maps.shape[0]
    cols = min(16, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, channel in zip(axes.flat, maps):
        ax.imshow(channel.numpy(), cmap="viridis")
    fig.suptitle(title)
    return _save(fig, path)


def plot_pr_curves(targets, probabilities, classes: list[str], thresholds: list[float], path: Path) -> Path:
    """Multi-label: each label's precision-recall curve with its operating point (its threshold) as a dot,
    and the micro-averaged curve of every image-label pair in black."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(7, 6))
    for c, name in enumerate(classes):
        if not targets[:, c].any():
            continue
        precision, recall, _ = precision_recall_curve(targets[:, c], probabilities[:, c])
        (line,) = ax.plot(recall, precision, lw=1, alpha=0.8, label=name if len(classes) <= 20 else None)
        chosen = probabilities[:, c] >= thresholds[c]
        hits = int((chosen & (targets[:, c] > 0)).sum())
        ax.plot(hits / targets[:, c].sum(), hits / max(1, int(chosen.sum())), "o", color=line.get_color(), ms=4)
    precision, recall, _ = precision_recall_curve(targets.ravel(), probabilities.ravel())
    ax.plot(recall, precision, color="black", lw=2.5, label="micro-average")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall per label (dots: the thresholds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _save(fig, path)


def plot_worst_multilabel(worst: list, classes: list[str], mean, std, path: Path, overlays: list | None = None
                          ) -> Path:
    """Multi-label: the images with the highest loss, with their true labels and the labels predicted at
    the thresholds; ``overlays``: Grad-CAM pictures of each image's most probable label instead."""
    images = overlays if overlays is not None else [denormalize(image, mean, std).numpy() for *_, image in worst]

    def names(rows) -> str:
        return ", ".join(classes[i] for i in rows) or "-"

    titles = [f"true {names(true.nonzero()[0])}\npred {names(predicted.nonzero()[0])}\nloss {loss:.2f}"
              for loss, true, predicted, _ in worst]
    why = ": Grad-CAM of the most probable label" if overlays is not None else ""
    return plot_image_grid(images, titles, f"Highest-loss images (binary cross-entropy summed over labels){why}",
                           path)


def plot_lr_find(test, path: Path) -> Path:
    """A learning-rate range test (``train.lr_find.RangeTest``): loss against learning rate, log scale,
    with the suggestion and the steepest descent marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(test.lrs, test.raw_losses, color="0.75", linewidth=0.8, label="loss")
    ax.plot(test.lrs, test.losses, label="smoothed loss")
    ax.axvline(test.suggestion, color="tab:red", linestyle="--", label=f"suggestion {test.suggestion:.3g}")
    ax.axvline(test.steepest_lr, color="tab:green", linestyle=":", label=f"steepest {test.steepest_lr:.3g}")
    top = min(max(test.raw_losses), 2 * test.losses[0])
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="Learning-rate range test",
           ylim=(min(test.raw_losses) * 0.95, top * 1.05))
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
