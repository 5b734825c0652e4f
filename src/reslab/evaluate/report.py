"""``reslab eval``: metrics, per-class report, confusion matrix (CSV + PNG) and worst images, in one folder
(for a multi-label model: mAP, per-label AP and thresholds, PR curves and the highest-loss images)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..atomic import write_text_atomic
from ..data.loaders import SkipLog
from ..data.pipeline import SMALL_IMAGE, clip_loader, make_loader, model_split
from ..hardware import resolve_device
from ..infer.selection import load_backend
from ..modelfile import ModelInfo
from ..results import Result
from .explain import Explainer, explainable, worst_overlays
from .metrics import Figures, confusion_csv, evaluate, per_class_report
from .multilabel_report import multilabel_report
from .plots import plot_confusion, plot_feature_maps, plot_worst
from .video import video_report


@dataclass
class EvalReport(Result):
    """``reslab eval``'s answer, also written as ``report.json`` into the report folder."""

    model: Path
    data: str
    split: str
    task: str
    tta: bool
    device: str
    precision: str
    precision_choice: str  # why that precision: asked for, or what ``auto`` measured
    metrics: dict[str, float]  # the split's figures (``Figures``)
    per_class: list[dict]
    fp32: dict[str, float] | None
    thresholds: str | None
    skipped_files: list[str]
    files: dict[str, Path]  # the pictures and tables written, and report.json itself

    def text(self) -> str:
        """The report as a reader wants it at a terminal (``--json`` prints it all)."""
        return _format_multilabel(self) if self.task == "multilabel" else _format_multiclass(self)


def run_eval(
    model_path: Path,
    data: str | None,
    out_dir: Path,
    split: str = "val",
    tta: bool = False,
    batch_size: int = 256,
    device: str = "auto",
    workers: int = 2,
    cache_dir: str | Path | None = None,
    split_file: Path | None = None,
    worst: int = 24,
    feature_maps: Path | None = None,
    precision: str = "fp32",
    explain: str | None = None,
) -> EvalReport:
    """Evaluate ``model_path`` on a split and write the report folder; ``feature_maps`` also
    draws conv1's activations for that image. ``precision`` other than fp32 (bf16, or auto where it picks
    bf16) is checked against fp32 on real images first, and the split is evaluated in fp32 too. ``explain``
    (a Grad-CAM method) also draws the worst images with the heat-maps of their predicted class."""
    torch_device = resolve_device(device)
    if explain is not None:
        explainable(model_path)
    selection = load_backend(model_path, "torch", torch_device, precision=precision)
    model, info = selection.backend.model, selection.info
    bf16 = selection.backend.precision == "bf16"
    if data is None:
        data = info.training.get("data")
        if data is None:
            raise ValueError(f"{model_path}: the model file does not say what it was trained on; pass --data")
    seed = int(info.training.get("seed", 0))
    if split_file is None and (model_path.parent / "split.json").is_file():
        split_file = model_path.parent / "split.json"  # the training run's own 70/20/10 split
    chosen = model_split(data, info.classes, split, cache_dir, seed, split_file, task=info.task)
    skipped = SkipLog()
    pre = info.preprocess
    if info.task == "video":
        loader = clip_loader(chosen, pre, info.clip, batch_size, torch_device, skipped, workers, seed)
    else:
        loader = make_loader(chosen, pre, batch_size, torch_device, skipped, workers,
                             in_memory=pre.image_size <= SMALL_IMAGE)
    out_dir.mkdir(parents=True, exist_ok=True)
    if info.task == "video":
        figures, files = video_report(model, info, loader, torch_device, out_dir, worst, bf16, explain)
    elif info.multilabel:
        figures, files = multilabel_report(model, info, loader, torch_device, out_dir, tta, worst, bf16, explain)
    else:
        figures, files = multiclass_report(model, info, loader, torch_device, out_dir, tta, worst, bf16, explain)
    if feature_maps is not None:
        files["feature_maps"] = first_conv_feature_maps(model, info, feature_maps, out_dir / "feature_maps.png")
    files["report"] = out_dir / "report.json"
    report = EvalReport(model_path, data, split, info.task, tta, str(torch_device), selection.backend.precision,
                        selection.reason, **asdict(figures), skipped_files=sorted(skipped.files), files=files)
    write_text_atomic(files["report"], report.to_json())
    return report


def multiclass_report(model: nn.Module, info: ModelInfo, loader: Iterable[tuple[Tensor, Tensor]],
                      device: torch.device, out_dir: Path, tta: bool, worst: int, bf16: bool,
                      explain: str | None) -> tuple[Figures, dict[str, Path]]:
    """Top-1/top-5, balanced accuracy, per-class figures, the confusion matrix and the worst images."""
    classes, pre = info.classes, info.preprocess
    result = evaluate(model, loader, len(classes), device, tta=tta, keep_worst=worst, channels_last=True, amp=bf16)
    fp32_figures = None
    if bf16:  # the same split in fp32: what the lower precision changes
        fp32 = evaluate(model, loader, len(classes), device, tta=tta, channels_last=True)
        agreement = float((fp32.predictions == result.predictions).double().mean())
        fp32_figures = {"top1": fp32.top1, "top5": fp32.top5, "loss": fp32.loss, "agreement": agreement}
    figures = Figures(result.summary(), per_class_report(result.confusion, classes), fp32_figures)
    files = {
        "confusion_csv": out_dir / "confusion.csv",
        "confusion_png": plot_confusion(result.confusion, classes, out_dir / "confusion.png"),
        "worst_png": plot_worst(result.worst, classes, pre.mean, pre.std, out_dir / "worst.png"),
    }
    if explain is not None:
        files["worst_explained_png"] = plot_worst(result.worst, classes, pre.mean, pre.std,
                                                  out_dir / "worst_explained.png",
                                                  worst_overlays(Explainer(model, info, explain), result.worst))
    write_text_atomic(files["confusion_csv"], confusion_csv(result.confusion, classes))
    return figures, files


@torch.inference_mode()
def first_conv_feature_maps(model: nn.Module, info: ModelInfo, image: Path, out: Path) -> Path:
    """The first convolution's output for one image, one panel per channel."""
    x = torch.from_numpy(info.preprocess(info.preprocess.open(image))).unsqueeze(0).to(model.conv1.weight.device)
    maps = model.conv1(x)[0]
    return plot_feature_maps(maps.cpu(), out, f"conv1 feature maps of {image.name} ({maps.shape[0]} channels)")


def _format_multiclass(report: EvalReport) -> str:
    m, fp32 = report.metrics, report.fp32
    unit = "videos" if report.task == "video" else "images"
    lines = [f"{report.split}: {m['count']} {unit}  top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}  "
             f"loss {m['loss']:.4f}{'  (flip TTA)' if report.tta else ''}  [{report.device}, {report.precision}]",
             f"balanced accuracy {m['balanced_accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
             f"(each class counted equally)",
             f"precision: {report.precision_choice}"]
    if report.task == "video":
        lines.insert(1, f"each video: the mean probability of {m['clips_per_video']} clips; per clip ({m['clips']}): "
                        f"top-1 {m['clip_top1']:.4f}  top-5 {m['clip_top5']:.4f}")
    if fp32 is not None:
        lines.append(f"fp32 on the same images: top-1 {fp32['top1']:.4f}, so {report.precision} changes top-1 by "
                     f"{100 * (m['top1'] - fp32['top1']):+.2f} points; predictions agree on {fp32['agreement']:.1%}")
    lines.append(f"{'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    lines += [f"{row['class'][:15]:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}"
              f"{row['support']:>9}" for row in report.per_class]
    return "\n".join(lines + [f"{name}: {path}" for name, path in report.files.items()])


def _format_multilabel(report: EvalReport) -> str:
    m, fp32 = report.metrics, report.fp32
    lines = [f"{report.split}: {m['count']} images  mAP {m['map']:.4f} (micro {m['map_micro']:.4f})  "
             f"loss {m['loss']:.4f}{'  (flip TTA)' if report.tta else ''}  [{report.device}, {report.precision}]",
             f"at the thresholds ({report.thresholds}): sample-F1 {m['f1_samples']:.4f}  exact match "
             f"{m['exact_match']:.4f}  micro P/R/F1 {m['precision_micro']:.3f}/{m['recall_micro']:.3f}/"
             f"{m['f1_micro']:.3f}  macro-F1 {m['f1_macro']:.3f}",
             f"precision: {report.precision_choice}"]
    if fp32 is not None:
        lines.append(f"fp32 on the same images: mAP {fp32['map']:.4f}; decisions agree on {fp32['agreement']:.1%}")
    lines.append(f"{'label':<16}{'AP':>8}{'threshold':>10}{'precision':>10}{'recall':>10}{'f1':>8}{'support':>9}")
    for row in report.per_class:
        ap = f"{row['ap']:>8.3f}" if row["ap"] is not None else f"{'-':>8}"
        lines.append(f"{row['class'][:15]:<16}{ap}{row['threshold']:>10.3f}{row['precision']:>10.3f}"
                     f"{row['recall']:>10.3f}{row['f1']:>8.3f}{row['support']:>9}")
    return "\n".join(lines + [f"{name}: {path}" for name, path in report.files.items()])
