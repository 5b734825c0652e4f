"""Layer shapes that differ from the named architecture (after structured pruning), and their rebuild.

A pruned network is the same architecture with narrower convolutions. Its model file records the
shape of every layer that changed; ``apply_shapes`` rebuilds exactly those layers, so any later
step (export, serving, fine-tuning) gets the pruned network back from the file alone.
"""

from __future__ import annotations

from torch import nn

RESHAPED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def layer_shape(module: nn.Module) -> list[int]:
    if isinstance(module, nn.Conv2d):
        return [module.out_channels, module.in_channels]
    if isinstance(module, nn.BatchNorm2d):
        return [module.num_features]
    return [module.out_features, module.in_features]


def changed_shapes(model: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """Name -> shape of each conv, BatchNorm and linear layer of ``model`` that differs from ``reference``."""
    original = {name: layer_shape(m) for name, m in reference.named_modules() if isinstance(m, RESHAPED)}
    return {name: layer_shape(m) for name, m in model.named_modules()
            if isinstance(m, RESHAPED) and layer_shape(m) != original.get(name)}


def _resized(module: nn.Module, shape: list[int]) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        out_ch, in_ch = shape
        return nn.Conv2d(in_ch, out_ch, module.kernel_size, module.stride, module.padding, module.dilation,
                         module.groups, module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(shape[0], module.eps, module.momentum)
    return nn.Linear(shape[1], shape[0], module.bias is not None)


def apply_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Replace each named layer by one of the recorded shape (fresh weights, to be loaded)."""
    for name, shape in shapes.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        module = getattr(parent, child, None)
        if not isinstance(module, RESHAPED):
            raise ValueError(f"recorded layer shape for {name!r}, which is not a conv, BatchNorm or linear layer")
        setattr(parent, child, _resized(module, shape))
    return model
