"""Grad-CAM heat-maps: where in the image the model's score for a class comes from.

The maps are computed by pytorch-grad-cam (``pip install 'reslab[explain]'``) on the last stage of the
network by default (``layer4`` of ResNet-18..152, ``layer3`` of the CIFAR ResNets), over the image as
the model sees it: resized and centre-cropped by the model file's own preprocessing. A video model's map
covers its clip in time as well (T, H, W): the video's middle evaluation clip, for the class of the whole
video, drawn as a strip of frames. They need the network's layers and gradients, so only reslab model files
(``.safetensors``) can be explained."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..atomic import atomic_path
from ..data.images import UnreadableImageError
from ..data.splits import VideoSource
from ..data.videos import is_video_file
from ..formats import forward_only_reason
from ..infer.predictor import expand_inputs
from ..infer.video import evaluation_clips
from ..modelfile import ModelInfo
from ..models import load_model_file
from .methods import DEFAULT_METHOD, METHODS

OVERLAY_MIN_SIZE = 224  # small inputs (CIFAR's 32 px) are shown enlarged
CLIP_FRAMES_SHOWN = 8  # frames of an explained clip in its strip, spread evenly
CLIP_METHODS = ("gradcam", "gradcam++")  # Score-CAM's upsampling is 2D only in pytorch-grad-cam


class NotExplainableError(ValueError):
    pass


def cam_class(method: str) -> type:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM

    classes = dict(zip(METHODS, (GradCAM, GradCAMPlusPlus, ScoreCAM)))
    if method not in classes:
        raise ValueError(f"explanation method {method!r}: expected one of {', '.join(METHODS)}")
    return classes[method]


def target_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose activations are weighed: ``name`` (dotted, e.g. ``layer4.1``), or the last block
    of the last stage."""
    if name is not None:
        try:
            return model.get_submodule(name)
        except AttributeError:
            stages = getattr(model, "stage_names", None) or ["layer4"]
            raise ValueError(f"target layer {name!r} is not a module of this network (its stages: "
                             f"{', '.join(stages)}; name a block as {stages[-1]}.0, a convolution as "
                             f"{stages[-1]}.0.conv2)") from None
    stages = getattr(model, "stage_names", None)
    if not stages:
        raise NotExplainableError(f"{type(model).__name__} has no stages to take a heat-map from: name one "
                                  f"with --layer")
    return getattr(model, stages[-1])[-1]


def explainable(path: str | Path) -> Path:
    """``path`` if it is a reslab model file, whose network can give gradients; else a clear refusal."""
    path = Path(path)
    reason = forward_only_reason(path)
    if reason:
        raise NotExplainableError(reason)
    return path


def spread(count: int, shown: int) -> list[int]:
    """``shown`` indices (at most ``count``) spread evenly over ``range(count)``, first and last included."""
    return torch.linspace(0, count - 1, min(shown, count)).round().long().tolist()


@dataclass
class Explanation:
    class_index: int
    class_name: str
    probability: float
    heatmap: np.ndarray  # (H, W) float32 in [0, 1] over the model's input (after resize and centre crop); (T, H, W)
    view: np.ndarray  # (H, W, 3) uint8: the model's input image, as it saw it; a clip's frames: (T, H, W, 3)

    def overlay(self, min_size: int = OVERLAY_MIN_SIZE, frames: int = CLIP_FRAMES_SHOWN) -> Image.Image:
        """The heat-map (jet colours) blended half and half with the image the model saw; for a clip, a strip of
        ``frames`` of its frames side by side."""
        from pytorch_grad_cam.utils.image import show_cam_on_image

        views, maps = (self.view[None], self.heatmap[None]) if self.view.ndim == 3 else (self.view, self.heatmap)
        shown = spread(len(views), frames)
        blended = np.concatenate([show_cam_on_image(views[t].astype(np.float32) / 255, maps[t], use_rgb=True,
                                                    image_weight=0.5) for t in shown], axis=1)
        image = Image.fromarray(blended)
        scale = max(1, -(-min_size // views.shape[2]))
        return image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.overlay().save(buffer, format="PNG")
        return buffer.getvalue()


class Explainer:
    """Heat-maps of one network for batches of images, in fp32 on the network's device."""

    def __init__(self, model: nn.Module, info: ModelInfo, method: str = DEFAULT_METHOD,
                 layer: str | None = None) -> None:
        self.model, self.info, self.method = model.eval(), info, method
        if info.task == "video" and method not in CLIP_METHODS:
            raise ValueError(f"explanation method {method!r} draws 2D maps only: a video model is explained with "
                             f"{' or '.join(CLIP_METHODS)}")
        self.cam_class = cam_class(method)
        self.layer = target_layer(model, layer)
        self.device = next(model.parameters()).device

    @classmethod
    def from_file(cls, path: str | Path, method: str = DEFAULT_METHOD, layer: str | None = None,
                  device: str | torch.device = "cpu") -> Explainer:

        model, info = load_model_file(explainable(path), device)
        return cls(model, info, method, layer)

    def class_index(self, name: str) -> int:
        if name not in self.info.classes:
            shown = ", ".join(self.info.classes[:20]) + (", ..." if len(self.info.classes) > 20 else "")
            raise ValueError(f"class {name!r} is not one of the model's classes ({shown})")
        return self.info.classes.index(name)

    def views(self, images: Sequence[Image.Image]) -> np.ndarray:
        """uint8 (N, C, H, W): the images resized and centre-cropped as the model sees them."""
        return np.stack([self.info.preprocess.geometry(image) for image in images])

    def explain(self, images: Sequence[Image.Image], class_name: str | None = None) -> list[Explanation]:
        """One heat-map per image, for its top class or for ``class_name``."""
        views = self.views(images)
        x = torch.from_numpy(self.info.preprocess.normalize(views))
        classes = None if class_name is None else [self.class_index(class_name)] * len(images)
        return self.explain_views(views, x, classes)

    def explain_video(self, source: VideoSource, class_name: str | None = None, decoder=None) -> Explanation:
        """The heat-map of the video's middle evaluation clip for the video's top class (the mean probability of
        its evaluation clips, as ``reslab predict`` answers) or for ``class_name``; ``decoder``: one already open."""
        views = evaluation_clips(self.info, source, decoder)
        x = torch.from_numpy(self.info.preprocess.normalize(views))
        video = self.probabilities(x).mean(0)
        chosen = int(video.argmax()) if class_name is None else self.class_index(class_name)
        middle = len(views) // 2
        explanation = self.explain_views(views[middle : middle + 1], x[middle : middle + 1], [chosen])[0]
        return replace(explanation, probability=float(video[chosen]))

    def probabilities(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            logits = self.model(x.to(self.device, torch.float32)).float()
            return (logits.sigmoid() if self.info.multilabel else logits.softmax(1)).cpu()

    def explain_views(self, views: np.ndarray, x: Tensor, classes: Sequence[int] | None = None) -> list[Explanation]:
        """``views``: uint8 (N, C, H, W) images or (N, C, T, H, W) clips; ``x``: the same, normalised;
        ``classes``: the class to explain for each (default: its top class)."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        x = x.to(self.device, torch.float32)
        probabilities = self.probabilities(x)
        chosen = list(classes) if classes is not None else probabilities.argmax(1).tolist()
        with torch.inference_mode(False), torch.enable_grad(), self.cam_class(self.model, [self.layer]) as cam:
            maps = cam(input_tensor=x.clone().requires_grad_(True),
                       targets=[ClassifierOutputTarget(c) for c in chosen])
        rgb = views if views.shape[1] == 3 else np.repeat(views, 3, axis=1)
        channels_last = (*range(1, rgb.ndim - 1), 0)  # (C, H, W) -> (H, W, C); (C, T, H, W) -> (T, H, W, C)
        return [Explanation(c, self.info.classes[c], float(probabilities[i, c]), maps[i].astype(np.float32),
                            rgb[i].transpose(channels_last)) for i, c in enumerate(chosen)]


def explain_files(explainer: Explainer, inputs: Sequence[str | Path], out_dir: Path, class_name: str | None = None,
                  batch_size: int = 16) -> list[dict]:
    """An overlay PNG per image (files, or folders of them) in ``out_dir``; one row per image, with its
    error where it cannot be decoded. A video model's inputs are videos: a strip of frames each."""

    rows: list[dict] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    if explainer.info.task == "video":
        for path in expand_inputs(inputs, is_video_file):
            try:
                _write_overlay(explainer, path, explainer.explain_video(VideoSource(path), class_name), out_dir,
                               used, rows)
            except UnreadableImageError as e:
                rows.append({"file": str(path), "error": str(e)})
        return rows
    paths = expand_inputs(inputs)
    for start in range(0, len(paths), batch_size):  # decoded a batch at a time: a folder may hold thousands
        chunk: list[tuple[Path, Image.Image]] = []
        for path in paths[start : start + batch_size]:
            try:
                chunk.append((path, explainer.info.preprocess.open(path)))
            except (UnreadableImageError, OSError) as e:
                rows.append({"file": str(path), "error": str(e)})
        if not chunk:
            continue
        for (path, _), explanation in zip(chunk, explainer.explain([image for _, image in chunk], class_name)):
            _write_overlay(explainer, path, explanation, out_dir, used, rows)
    return rows


def _write_overlay(explainer: Explainer, path: Path, explanation: Explanation, out_dir: Path, used: set[str],
                   rows: list[dict]) -> None:
    name = _unused(f"{path.stem}-{explanation.class_name}-{explainer.method}", used)
    with atomic_path(out_dir / name) as tmp:
        tmp.write_bytes(explanation.png())
    rows.append({"file": str(path), "class": explanation.class_name, "probability": explanation.probability,
                 "overlay": str(out_dir / name)})


def _unused(stem: str, used: set[str]) -> str:
    """``stem.png``, or ``stem-2.png``... when images of the same name came before; remembered in ``used``."""
    k = 1
    while (name := f"{stem}{'' if k == 1 else f'-{k}'}.png") in used:
        k += 1
    used.add(name)
    return name


def worst_overlays(explainer: Explainer, worst: list[tuple[float, int, int, Tensor]], frames: int = CLIP_FRAMES_SHOWN
                   ) -> list[np.ndarray]:
    """Overlays of ``evaluate``'s worst images (normalised tensors; or clips, drawn as strips of ``frames``), each
    for the class it was taken for."""
    if not worst:
        return []
    x = torch.stack([image for _, _, _, image in worst])
    pre = explainer.info.preprocess
    shape = (1, -1) + (1,) * (x.dim() - 2)  # the channel axis of images and clips alike
    views = (x * torch.tensor(pre.std).view(shape) + torch.tensor(pre.mean).view(shape)) * 255
    views = views.round().clamp(0, 255).to(torch.uint8).numpy()
    explanations = explainer.explain_views(views, x, [pred for _, _, pred, _ in worst])
    return [np.asarray(e.overlay(frames=frames)) for e in explanations]


def format_explained(rows: list[dict]) -> str:
    return "\n".join(f"{row['file']}: skipped: {row['error']}" if "error" in row else
                     f"{row['file']}: {row['class']} ({row['probability']:.3f}) -> {row['overlay']}" for row in rows)
