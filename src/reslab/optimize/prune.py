"""``reslab prune``: global L1 unstructured pruning, or structured channel pruning with Torch-Pruning.

- ``l1-unstructured``: the smallest weights of all convolutions and the head, ranked together
  (``torch.nn.utils.prune.global_unstructured``), set to zero for good. The file compresses better;
  dense kernels do the same work, so it does not run faster.
- ``structured``: whole channels inside each residual block are removed (the first conv of a
  BasicBlock, the first two of a Bottleneck, ranked by L1 norm; Torch-Pruning keeps the dependent
  BatchNorm and next conv consistent). Channels on the residual path are kept, as in Li et al. 2017
  ("Pruning Filters for Efficient ConvNets"), so every shortcut still lines up. Fewer MACs, really
  faster; a short fine-tune (``finetune_epochs``) wins back accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.nn.utils import prune

from ..config import TrainConfig
from ..data.loaders import SkipLog
from ..data.pipeline import SMALL_IMAGE, make_loader, model_split
from ..evaluate.metrics import evaluate
from ..hardware import resolve_device
from ..infer.backends import TorchBackend
from ..modelfile import ModelInfo, save_model_file
from ..models import count_macs, count_params, load_model_file
from ..models.registry import build_model
from ..models.reshape import changed_shapes
from ..models.resnet import BasicBlock, Bottleneck
from ..results import Result
from ..timing import interleaved_images_per_second
from ..train.trainer import Trainer
from .options import PruneOptions


@dataclass
class Stage:
    """The network at one stage of pruning: its size, its work and (with validation data) its top-1."""

    params: int
    macs: int
    zero_weights: float  # the share of convolution and head weights that are zero
    compressed_bytes: int  # the weights' safetensors bytes after zlib: what unstructured zeros save
    top1: float | None  # None without validation data
    cpu_images_per_s: float = 0.0  # batch 32, channels_last; filled once every stage is known


@dataclass
class PruneReport(Result):
    """What ``prune_model`` wrote: the network before pruning, right after it, and after the fine-tune."""

    method: str
    amount: float
    finetune_epochs: int
    source: Path
    output: Path
    data: str | None
    before: Stage
    pruned: Stage
    after: Stage  # the pruned stage again when there was no fine-tune
    layer_sparsity: dict[str, float]  # per layer, for unstructured pruning only
    finetune_history: list[dict]

    def text(self) -> str:
        stages = [("before", self.before), ("pruned", self.pruned)]
        if self.finetune_epochs:
            stages.append((f"+{self.finetune_epochs} ep", self.after))
        lines = [f"{self.method} pruning, amount {self.amount}: {self.output}",
                 f"{'':<9}{'top-1':>8}{'params':>12}{'MMACs':>10}{'zeros':>8}{'zlib MB':>9}{'CPU img/s':>11}"]
        for name, row in stages:
            top1 = f"{row.top1:.4f}" if row.top1 is not None else "-"
            lines.append(f"{name:<9}{top1:>8}{row.params:>12,}{row.macs / 1e6:>10.1f}{row.zero_weights:>8.1%}"
                         f"{row.compressed_bytes / 1e6:>9.2f}{row.cpu_images_per_s:>11.1f}")
        if self.layer_sparsity:
            lines += ["sparsity per layer: " + ", ".join(f"{k} {v:.0%}" for k, v in self.layer_sparsity.items()),
                      "note: unstructured zeros make the file compress better; dense kernels still do every "
                      "multiplication, so it does not run faster. Use --method structured for speed."]
        return "\n".join(lines)


def prunable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def prune_unstructured(model: nn.Module, amount: float) -> None:
    params = [(m, "weight") for m in prunable(model)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)  # the mask is folded into the weight: zeros for good


def block_internal_convs(model: nn.Module) -> list[nn.Conv2d]:
    convs: list[nn.Conv2d] = []
    for m in model.modules():
        if isinstance(m, BasicBlock):
            convs.append(m.conv1)
        elif isinstance(m, Bottleneck):
            convs += [m.conv1, m.conv2]
    return convs


def prune_structured(model: nn.Module, info: ModelInfo, amount: float) -> None:
    import torch_pruning as tp

    pre = info.preprocess
    example = torch.randn(1, pre.in_chans, pre.image_size, pre.image_size)
    internal = {id(m) for m in block_internal_convs(model)}
    ignored = [m for m in prunable(model) if id(m) not in internal]
    wide = min(m.out_channels for m in block_internal_convs(model)) >= 64
    pruner = tp.pruner.MetaPruner(
        model.eval(), example, importance=tp.importance.GroupMagnitudeImportance(p=1), pruning_ratio=amount,
        ignored_layers=ignored, round_to=8 if wide else None,  # SIMD-friendly widths for the big networks
    )
    pruner.step()


def sparsity(model: nn.Module) -> dict[str, float]:
    return {name: float((m.weight == 0).float().mean()) for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def measure(model: nn.Module, info: ModelInfo, val_loader, device: torch.device) -> Stage:
    weights = [m.weight for m in prunable(model)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    top1 = None
    if val_loader is not None:
        top1 = evaluate(model.to(device), val_loader, len(info.classes), device).top1
        model.cpu()
    return Stage(count_params(model), count_macs(model, info.preprocess.image_size),
                 zeros / sum(w.numel() for w in weights), len(zlib.compress(safetensors_bytes(state), 6)), top1)


def cpu_speeds(models: dict[str, nn.Module], info: ModelInfo) -> dict[str, float]:
    """CPU images/s at batch 32 (channels_last), the networks measured in alternating rounds."""
    pre = info.preprocess
    batch = torch.randn(32, pre.in_chans, pre.image_size, pre.image_size).numpy()
    cpu = torch.device("cpu")
    runs = {name: TorchBackend(copy.deepcopy(m).cpu().to(memory_format=torch.channels_last).eval(), cpu).run
            for name, m in models.items()}
    return interleaved_images_per_second(runs, batch)


def _finetune(model: nn.Module, info: ModelInfo, data: str, opts: PruneOptions) -> tuple[nn.Module, list[dict]]:

    pre = info.preprocess
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            data=data, model=info.spec.arch, epochs=opts.finetune_epochs, lr=opts.lr, batch_size=opts.batch_size,
            image_size=pre.image_size, mean=list(pre.mean), std=list(pre.std), in_chans=pre.in_chans,
            out_dir=tmp, name="finetune", device=opts.device, seed=opts.seed, cache_dir=opts.cache_dir,
        )
        trainer = Trainer(cfg, start=(info.spec, model))
        trainer.fit()
        tuned, _ = load_model_file(Path(tmp) / "finetune" / "best.safetensors")
    return tuned, trainer.history


def prune_model(model_path: Path, opts: PruneOptions, out: Path | None = None) -> PruneReport:
    model, info = load_model_file(model_path)
    if info.multilabel:
        raise ValueError(f"{model_path}: a multi-label model; pruning measures and fine-tunes single-label models "
                         f"only (not supported yet)")
    out = out or model_path.with_name(f"{model_path.stem}-pruned.safetensors")
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: a pruned model is written as a reslab model file (.safetensors)")
    data = opts.data or info.training.get("data")
    if opts.finetune_epochs and not data:
        raise ValueError(f"{model_path}: fine-tuning needs --data (the model file does not say what it was "
                         "trained on)")
    device = resolve_device(opts.device)
    val_loader = None
    if data:
        pre = info.preprocess
        split = model_split(data, info.classes, "val", opts.cache_dir, opts.seed,
                            limit=opts.val_images)
        val_loader = make_loader(split, pre, 256, device, SkipLog(), in_memory=pre.image_size <= SMALL_IMAGE)
    before = measure(model, info, val_loader, device)
    original = copy.deepcopy(model)

    history: list[dict] = []
    if opts.method == "l1-unstructured":
        prune_unstructured(model, opts.amount)
        pruned_info = info
    else:
        prune_structured(model, info, opts.amount)
        unpruned = build_model(dataclasses.replace(info.spec, shapes={}))
        spec = dataclasses.replace(info.spec, shapes=changed_shapes(model, unpruned))
        pruned_info = dataclasses.replace(info, spec=spec)
    pruned = measure(model, pruned_info, val_loader, device)
    if opts.finetune_epochs:
        model, history = _finetune(model, pruned_info, data, opts)
    after = measure(model, pruned_info, val_loader, device) if opts.finetune_epochs else pruned
    speeds = cpu_speeds({"before": original, "after": model}, info)
    before.cpu_images_per_s = speeds["before"]
    pruned.cpu_images_per_s = after.cpu_images_per_s = speeds["after"]  # the same network shapes
    report = PruneReport(opts.method, opts.amount, opts.finetune_epochs, model_path, out, data, before, pruned, after,
                         sparsity(model) if opts.method == "l1-unstructured" else {}, history)
    record = {"method": opts.method, "amount": opts.amount, "finetune_epochs": opts.finetune_epochs,
              "source": str(model_path), **{f"top1_{k}": stage.top1 for k, stage in
                                            (("before", before), ("pruned", pruned), ("after", after))}}
    save_model_file(out, model, dataclasses.replace(pruned_info, training={**info.training, "pruning": record}))
    return report
