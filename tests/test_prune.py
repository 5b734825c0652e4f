"""Pruning: unstructured zeros are permanent, structured pruning really removes channels."""

import pytest
import torch
from safetensors import safe_open

from reslab.export.run import export_model
from reslab.infer.predictor import Predictor
from reslab.models import count_macs, load_model_file
from reslab.optimize.prune import PruneOptions, prune_model


def test_l1_unstructured_is_global_and_permanent(trained_model, cifar_folder, tmp_path):
    out = tmp_path / "u.safetensors"
    r = prune_model(trained_model, PruneOptions(amount=0.5, data=str(cifar_folder)), out)
    assert abs(r.pruned.zero_weights - 0.5) < 0.01
    assert r.pruned.macs == r.before.macs and r.pruned.params == r.before.params
    assert r.pruned.compressed_bytes < 0.75 * r.before.compressed_bytes
    per_layer = r.layer_sparsity
    assert len(set(round(v, 2) for v in per_layer.values())) > 3  # ranked globally: layers differ
    with safe_open(str(out), "pt") as f:
        assert not any(k.endswith(("weight_orig", "weight_mask")) for k in f.keys())  # noqa: SIM118 (not a dict)
    model, info = load_model_file(out)
    zeros = sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    assert abs(zeros / total - 0.5) < 0.01
    assert info.training["pruning"]["method"] == "l1-unstructured"


@pytest.mark.slow
def test_structured_removes_channels_and_stays_usable(trained_model, cifar_folder, photos, tmp_path):
    out = tmp_path / "s.safetensors"
    r = prune_model(trained_model, PruneOptions(amount=0.5, method="structured", data=str(cifar_folder),
                                                finetune_epochs=1, batch_size=64), out)
    assert r.pruned.macs < 0.6 * r.before.macs
    assert r.pruned.params < 0.6 * r.before.params
    assert r.after.top1 is not None and len(r.finetune_history) == 1
    model, info = load_model_file(out)  # the narrower layers come back from the file alone
    assert model.layer1[0].conv1.out_channels == 8 and model.layer1[0].conv2.in_channels == 8
    assert model.layer1[0].conv2.out_channels == 16  # the residual path keeps its width
    assert count_macs(model, 32) == r.pruned.macs
    preds = Predictor.from_file(out, backend="torch").predict([photos["chelsea"]], topk=3)
    assert len(preds[0]) == 3
    report = export_model(out, "onnx", tmp_path / "s.onnx")
    assert report.agreement.top1_agreement == 1.0


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        PruneOptions(amount=1.5)
    with pytest.raises(ValueError, match="structured pruning"):
        PruneOptions(amount=0.3, finetune_epochs=2)
    with pytest.raises(ValueError, match="prune option .method.: .random. is not one of"):
        PruneOptions(amount=0.3, method="random")
