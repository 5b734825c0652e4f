"""``reslab find-label-issues``: the training images whose label is likely wrong.

Every image gets out-of-sample class probabilities: by k-fold cross-training with the user's own recipe
(each fold's images predicted by a model trained on the other folds), or from an existing model on a
split it did not train on. cleanlab's ``find_label_issues`` (confident learning) then flags the images
whose given label disagrees with those probabilities more than the classes' own confusion explains, and
ranks them by label quality (the probability of the given label). Nothing in the dataset is changed."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..atomic import write_text_atomic
from ..config import TrainConfig
from ..data.datasets import load_dataset
from ..data.images import UnreadableImageError, open_image
from ..data.pipeline import model_split
from ..data.preprocess import Preprocess
from ..data.splits import ArraySplit, Dataset, Split, subset, write_split
from ..evaluate.plots import plot_image_grid
from ..features.extract import pooled
from ..features.probe import probe_estimator
from ..hardware import resolve_device
from ..models import load_model_file
from ..train.trainer import Trainer

TRAINING_FOLDS = 5  # cross-training: each fold trains a network
FEATURE_FOLDS = 10  # the linear probe on frozen features is cheap: more folds, each probe fitted on more images
TRUSTED_TOP1 = 0.7  # out-of-sample top-1 under which the flagged list is said to be unreliable


def image_names(split: Split, name: str) -> list[str]:
    """What identifies each image in the report: its path, or ``name[i]`` for arrays in memory."""
    if isinstance(split, ArraySplit):
        return [f"{name}[{i}]" for i in range(len(split))]
    return [str(p) for p in split.paths]


def image_at(split: Split, i: int, pre: Preprocess | None = None) -> Image.Image:
    """Image ``i`` of a split, decoded with ``pre``'s policy (or as it is, for pictures)."""
    if isinstance(split, ArraySplit):
        array = split.images[i].transpose(1, 2, 0)
        return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    if pre is None:
        return open_image(split.source(i), name=str(split.paths[i]))
    return pre.open(split.source(i), name=str(split.paths[i]))


@torch.inference_mode()
def split_outputs(network: Callable[[Tensor], Tensor], pre: Preprocess, split: Split, device: torch.device,
                  batch_size: int = 256, threads: int = 4) -> np.ndarray:
    """``network``'s (n, width) outputs in fp32 for every image of ``split``, decoded with the model's own
    preprocessing; a row of NaN for an image that cannot be decoded."""

    def view(i: int) -> np.ndarray | None:
        try:
            return pre.geometry(image_at(split, i, pre))
        except UnreadableImageError:
            return None

    outputs: np.ndarray | None = None
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(split), batch_size):
            views = list(pool.map(view, range(start, min(start + batch_size, len(split)))))
            good = [k for k, v in enumerate(views) if v is not None]
            if good:
                x = torch.from_numpy(pre.normalize(np.stack([views[k] for k in good]))).to(device)
                y = network(x).float().cpu().numpy()
                if outputs is None:
                    outputs = np.full((len(split), y.shape[1]), np.nan, np.float32)
                outputs[[start + k for k in good]] = y
    if outputs is None:
        raise ValueError("none of the split's images could be decoded")
    return outputs


def split_probabilities(model: nn.Module, pre: Preprocess, split: Split, device: torch.device) -> np.ndarray:
    """Softmax probabilities (n, classes) of every image of ``split`` (NaN rows: undecodable)."""
    model = model.eval()
    return split_outputs(lambda x: model(x).softmax(1), pre, split, device)


def feature_probabilities(model_path: Path, dataset: Dataset, folds: int, seed: int, device: torch.device
                          ) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-sample probabilities of every training image from the linear probe on ``model_path``'s frozen
    features (``features.probe``), cross-validated: each image's from the probe fitted on the other folds."""
    from sklearn.model_selection import cross_val_predict

    model, info = load_model_file(model_path, device)
    model = model.eval()
    features = split_outputs(lambda x: pooled(model, x), info.preprocess, dataset.train, device)
    labels = np.asarray(dataset.train.labels, dtype=np.int64)
    readable = np.flatnonzero(~np.isnan(features).any(1))
    held = folds_of(labels[readable], folds, seed)
    splits = [(np.setdiff1d(np.arange(len(readable)), h), h) for h in held]
    probs = np.full((len(labels), len(dataset.classes)), np.nan, np.float32)
    probs[readable] = cross_val_predict(probe_estimator(), features[readable], labels[readable], cv=splits,
                                        method="predict_proba")
    how = {"method": f"a linear probe on the frozen features of {model_path}, {folds}-fold cross-validated",
           "features": str(model_path), "feature_dimension": int(features.shape[1])}
    return probs, how


def training_images(cfg: TrainConfig, out_dir: Path) -> Dataset:
    """``cfg.data`` with every training image in its train split: none held out for validation (there is
    nothing to validate here)."""
    split_file = out_dir / "split.json"
    dataset = load_dataset(cfg.data, cfg.cache_dir, cfg.seed, split_file,
                           columns=(cfg.image_column, cfg.label_column), hold_out=False)
    if dataset.split_file is not None:
        write_split(dataset.split_file, split_file)  # the same 70/20/10 split when the search goes on
    return dataset


def folds_of(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out indices of each fold: stratified by class, shuffled with ``seed``."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    smallest = int(np.bincount(labels).min(initial=len(labels)))
    if smallest < folds:
        raise ValueError(f"the smallest class has {smallest} training images, fewer than --folds {folds}: "
                         f"lower --folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(labels)), labels)]


def cross_validated_probabilities(cfg: TrainConfig, dataset: Dataset, folds: int, out_dir: Path
                                  ) -> tuple[np.ndarray, list[dict]]:
    """Out-of-sample probabilities of every training image, each fold trained with ``cfg`` (the user's
    recipe) on the other folds in ``out_dir/fold-K``. Each fold is evaluated once, after its last epoch,
    and predicts with that last model: its held-out images pick nothing. A fold already done (its
    ``held_out.npz``) is reused, so an interrupted search goes on where it stopped with ``--resume``."""
    labels = np.asarray(dataset.train.labels, dtype=np.int64)
    probs = np.full((len(labels), len(dataset.classes)), np.nan, np.float32)
    report = []
    for k, held in enumerate(folds_of(labels, folds, cfg.seed)):
        done = out_dir / f"fold-{k}" / "held_out.npz"
        if done.is_file():
            saved = np.load(done)
            if not np.array_equal(saved["indices"], held):
                raise ValueError(f"{done}: made with other folds (another --folds or --seed): use another --name")
            probs[held] = saved["probabilities"]
            report.append({"fold": k, "held_out": len(held), "reused": True})
            continue
        kept = np.setdiff1d(np.arange(len(labels)), held)
        fold = Dataset(f"{dataset.name}-fold{k}", dataset.classes, subset(dataset.train, kept.tolist()),
                       subset(dataset.train, held.tolist()), None)
        started = (out_dir / f"fold-{k}" / "last.pt").is_file()  # cut short: resumed with --resume
        fold_cfg = dataclasses.replace(cfg, out_dir=str(out_dir), name=f"fold-{k}", eval_every=cfg.epochs,
                                       patience=0, eval_split="val", resume=cfg.resume and started)
        trainer = Trainer(fold_cfg, dataset=fold)
        summary = trainer.fit()
        probs[held] = split_probabilities(trainer.eval_model(), trainer.data.preprocess, fold.val,
                                          trainer.rt.device)
        np.savez(done, indices=held, probabilities=probs[held])
        report.append({"fold": k, "held_out": len(held), "val_top1": summary["best_val_top1"]})
    return probs, report


def rank_label_issues(labels: np.ndarray, probs: np.ndarray, readable: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """(indices of the flagged images, worst first; label quality of every image; cleanlab's estimate of the
    number of label issues) among the ``readable`` ones (indices). The flagged list is as long as that estimate:
    the images of lowest label quality (self-confidence)."""
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = np.full(len(labels), np.nan)
    p = probs[readable].astype(np.float64)
    p /= p.sum(1, keepdims=True)
    scores = get_label_quality_scores(labels[readable], p)
    quality[readable] = scores
    estimate = int(num_label_issues(labels[readable], p))
    return readable[np.argsort(scores, kind="stable")[:estimate]], quality, estimate


def weak_probabilities_warning(top1: float) -> str | None:
    """Confident learning trusts the out-of-sample probabilities more than the labels: a model wrong on this many
    images flags its own mistakes (hard images) as label errors."""
    if top1 >= TRUSTED_TOP1:
        return None
    return (f"the out-of-sample top-1 is {top1:.3f}, below {TRUSTED_TOP1}: probabilities this weak make the list "
            f"unreliable (hard images look mislabelled); use --features with a pretrained backbone, or a stronger "
            f"recipe")


def issues_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["rank", "image", "given_label", "suggested_label", "quality",
                                     "p_suggested"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def relabel_csv(rows: list[dict]) -> str:
    """The flagged images with an ``action`` column for the user to fill in: keep, relabel (to
    ``new_label``) or remove. It starts as ``review``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "given_label", "new_label", "action"])
    for row in rows:
        writer.writerow([row["image"], row["given_label"], row["suggested_label"], "review"])
    return buffer.getvalue()


def find_label_issues(cfg: TrainConfig, folds: int | None = None, from_model: Path | None = None, split: str = "val",
                      top: int = 32, write_relabel: bool = False, features: Path | None = None) -> dict[str, Any]:
    """Flag likely label errors of ``cfg.data``'s training split (k-fold cross-training with ``cfg``, or a
    cross-validated linear probe on ``features``' frozen features), or of ``split`` as predicted by
    ``from_model``; the report goes to ``cfg.run_dir``. ``folds``: 5 for cross-training, 10 for the probe."""
    if from_model is not None and features is not None:
        raise ValueError("--from-model and --features are two ways to get the probabilities: give one")
    if cfg.task == "multilabel":
        raise ValueError("find-label-issues ranks single labels (cleanlab's find_label_issues); multi-label data "
                         "is not supported yet")
    out_dir = cfg.run_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not cfg.resume:
        raise ValueError(f"{out_dir} already holds a search: pass --resume to go on with it, or --name for a new one")
    out_dir.mkdir(parents=True, exist_ok=True)
    if features is not None:
        dataset = training_images(cfg, out_dir)
        chosen, chosen_name, classes, pre = dataset.train, "train", dataset.classes, None
        probs, how = feature_probabilities(features, dataset, folds or FEATURE_FOLDS, cfg.seed,
                                           resolve_device(cfg.device))
    elif from_model is None:
        folds = folds or TRAINING_FOLDS
        dataset = training_images(cfg, out_dir)
        chosen, chosen_name = dataset.train, "train"
        probs, source = cross_validated_probabilities(cfg, dataset, folds, out_dir)
        how: dict[str, Any] = {"method": f"{folds}-fold cross-training", "folds": source, "epochs": cfg.epochs,
                               "model": cfg.model}
        classes, pre = dataset.classes, None
    else:

        model, info = load_model_file(from_model, resolve_device(cfg.device))
        split_file = from_model.parent / "split.json"
        chosen = model_split(cfg.data, info.classes, split, cfg.cache_dir,
                             int(info.training.get("seed", 0)), split_file if split_file.is_file() else None)
        chosen_name, classes, pre = split, info.classes, info.preprocess
        probs = split_probabilities(model, pre, chosen, next(model.parameters()).device)
        how = {"method": f"predictions of {from_model} on the {split} split"}

    labels = np.asarray(chosen.labels, dtype=np.int64)
    readable = ~np.isnan(probs).any(1)
    flagged, quality, estimate = rank_label_issues(labels, probs, np.flatnonzero(readable))
    names = image_names(chosen, chosen_name)
    suggested = np.nan_to_num(probs, nan=-1.0).argmax(1)
    rows = [{"rank": r + 1, "image": names[i], "given_label": classes[labels[i]],
             "suggested_label": classes[suggested[i]], "quality": round(float(quality[i]), 6),
             "p_suggested": round(float(probs[i, suggested[i]]), 6)} for r, i in enumerate(flagged)]
    unreadable = [names[i] for i in np.flatnonzero(~readable)]
    files = {"csv": out_dir / "label_issues.csv", "grid": out_dir / "label_issues.png",
             "summary": out_dir / "summary.json"}
    write_text_atomic(files["csv"], issues_csv(rows))
    thumbnails = [np.asarray(image_at(chosen, i, pre).convert("RGB")) for i in flagged[:top]]
    plot_image_grid(thumbnails, [f"#{r['rank']} given {r['given_label']}\nsuggested {r['suggested_label']}\n"
                                 f"quality {r['quality']:.3f}" for r in rows[:top]],
                    f"Likely label errors, worst first ({len(rows)} of {int(readable.sum())} images flagged)",
                    files["grid"])
    if write_relabel:
        files["relabel"] = out_dir / "relabel.csv"
        write_text_atomic(files["relabel"], relabel_csv(rows))
    per_class = {c: int((labels[flagged] == k).sum()) for k, c in enumerate(classes)}
    top1 = float((suggested[readable] == labels[readable]).mean())
    summary = {"data": cfg.data, "split": chosen_name, "images": len(labels), "readable": int(readable.sum()),
               "estimated_issues": estimate, "flagged": len(rows), "flagged_per_given_class": per_class,
               "out_of_sample_top1": top1, "warning": weak_probabilities_warning(top1),
               **how, "unreadable": unreadable, "files": {k: str(v) for k, v in files.items()}}
    write_text_atomic(files["summary"], json.dumps(summary, indent=1))
    return {**summary, "issues": rows}


def format_label_issues(report: dict[str, Any], top: int) -> str:
    lines = [f"{report['flagged']} of {report['readable']} {report['split']} images flagged as likely label errors: "
             f"cleanlab estimates {report['estimated_issues']} label issues, and the images of lowest label quality "
             f"fill that many places ({report['method']}; out-of-sample top-1 {report['out_of_sample_top1']:.3f})",
             *([f"warning: {report['warning']}"] if report["warning"] else []),
             f"{'rank':>5}  {'quality':>8}  {'given':<14}{'suggested':<14}image"]
    lines += [f"{row['rank']:>5}  {row['quality']:>8.4f}  {row['given_label'][:13]:<14}"
              f"{row['suggested_label'][:13]:<14}{row['image']}" for row in report["issues"][:top]]
    lines += [f"{name}: {path}" for name, path in report["files"].items()]
    return "\n".join(lines + ["nothing in the dataset was changed"])
