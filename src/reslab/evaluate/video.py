"""``reslab eval`` of a video model: each video's answer is the mean probability of its clips (spread evenly over
it); reported per clip and per video, with the confusion matrix of the videos and a strip of frames of the worst."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..atomic import write_text_atomic
from ..hardware import memory_format
from ..modelfile import ModelInfo
from .explain import Explainer, spread, worst_overlays
from .metrics import EvalResult, Figures, autocast_context, confusion_csv, per_class_report
from .plots import plot_confusion, plot_worst

STRIP_FRAMES = 4  # frames shown of each worst video


@dataclass
class VideoResult:
    videos: EvalResult  # each video by the mean probability of its clips
    clip_top1: float
    clip_top5: float
    clips: int


def _strip(clip: Tensor) -> Tensor:
    """A (C, T, H, W) clip as a strip of a few of its frames side by side: (C, H, k x W)."""
    return torch.cat(list(clip[:, spread(clip.shape[1], STRIP_FRAMES)].unbind(1)), dim=-1)


@torch.inference_mode()
def evaluate_videos(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_classes: int,
                    device: torch.device, keep_worst: int = 0, amp: bool = False) -> VideoResult:
    """Batches of (N, K, C, T, H, W) clips (or (N, C, T, H, W), one clip each) and the videos' labels."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top1, top5, count, clip_top1, clip_top5, clips = 0.0, 0, 0, 0, 0, 0, 0
    worst: list[tuple[float, int, int, Tensor]] = []
    k = min(5, num_classes)
    for x, y in batches:
        x = x if x.dim() == 6 else x[:, None]
        n, per_video = x.shape[:2]
        y = y.to(device)
        flat = x.flatten(0, 1).to(device).contiguous(memory_format=memory_format(True, 5))
        with autocast_context(device, amp):
            probabilities = model(flat).float().softmax(1)
        clip_topk = probabilities.topk(k, dim=1).indices
        clip_labels = y.repeat_interleave(per_video)
        clip_top1 += int((clip_topk[:, 0] == clip_labels).sum())
        clip_top5 += int((clip_topk == clip_labels[:, None]).any(1).sum())
        clips += len(clip_labels)
        video = probabilities.view(n, per_video, -1).mean(1)
        loss_sum += float(F.nll_loss(video.clamp_min(1e-12).log(), y, reduction="sum"))
        topk = video.topk(k, dim=1).indices
        pred = topk[:, 0]
        top1 += int((pred == y).sum())
        top5 += int((topk == y[:, None]).any(1).sum())
        count += n
        confusion += torch.bincount((y * num_classes + pred).cpu(), minlength=num_classes**2).view(
            num_classes, num_classes)
        if keep_worst:
            p_true = video.gather(1, y[:, None])[:, 0]
            for i in p_true.argsort()[:keep_worst].tolist():
                worst.append((float(p_true[i]), int(y[i]), int(pred[i]), x[i, per_video // 2].float()))
            worst = sorted(worst, key=lambda w: w[0])[:keep_worst]
    if count == 0:
        raise ValueError("nothing to evaluate: the split has no readable videos")
    videos = EvalResult(loss_sum / count, top1 / count, top5 / count, count, confusion, worst)
    return VideoResult(videos, clip_top1 / clips, clip_top5 / clips, clips)


def video_report(model: nn.Module, info: ModelInfo, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device,
                 out_dir: Path, worst: int, amp: bool, explain: str | None) -> tuple[Figures, dict[str, Path]]:
    """Video- and clip-level top-1/top-5, per-class figures and confusion of the videos, the worst videos (with
    ``explain``, a Grad-CAM method: the heat-maps of their predicted class over their middle clips)."""
    result = evaluate_videos(model, loader, len(info.classes), device, keep_worst=worst, amp=amp)
    metrics = {**result.videos.summary(), "clip_top1": result.clip_top1, "clip_top5": result.clip_top5,
               "clips": result.clips, "clips_per_video": info.clip.clips if info.clip else 1}
    figures = Figures(metrics, per_class_report(result.videos.confusion, info.classes))
    pre = info.preprocess
    worst_clips, what = result.videos.worst, "videos (a strip of frames of each one's middle clip)"
    strips = [(*w[:3], _strip(w[3])) for w in worst_clips]
    files = {"confusion_csv": out_dir / "confusion.csv",
             "confusion_png": plot_confusion(result.videos.confusion, info.classes, out_dir / "confusion.png"),
             "worst_png": plot_worst(strips, info.classes, pre.mean, pre.std, out_dir / "worst.png", what=what)}
    if explain is not None:
        overlays = worst_overlays(Explainer(model, info, explain), worst_clips, STRIP_FRAMES)
        files["worst_explained_png"] = plot_worst(strips, info.classes, pre.mean, pre.std,
                                                  out_dir / "worst_explained.png", overlays, what)
    write_text_atomic(files["confusion_csv"], confusion_csv(result.videos.confusion, info.classes))
    return figures, files
