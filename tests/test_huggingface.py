"""Hugging Face interop: a transformers folder out (`--format huggingface`)."""

import numpy as np
import pytest
import torch

from reslab.cli import main
from reslab.data.preprocess import Preprocess
from reslab.infer.predictor import Predictor
from reslab.modelfile import ModelInfo, save_model_file
from reslab.models import ModelSpec, create_model

transformers = pytest.importorskip("transformers")


def _model_file(path, arch="resnet18", classes=("ant", "bee", "wasp")):
    torch.manual_seed(0)
    model = create_model(arch, num_classes=len(classes)).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    size = 32 if arch == "resnet20" else 96
    pre = Preprocess(size, 32 if arch == "resnet20" else 110, (0.5, 0.45, 0.4), (0.25, 0.24, 0.26), 3, "bicubic")
    return save_model_file(path, model, ModelInfo(ModelSpec(arch, len(classes)), list(classes), pre))


def test_huggingface_export_loads_in_transformers_with_no_code(tmp_path, photos, capsys):
    model_file = _model_file(tmp_path / "m.safetensors")
    main(["export", str(model_file), "--format", "huggingface", "--out", str(tmp_path / "out")])
    assert f"huggingface: {tmp_path / 'out'}" in capsys.readouterr().out
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    hf = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    predictor = Predictor.from_file(model_file, backend="torch", precision="fp32")
    images = [photos["grace_hopper"], photos["chelsea"]]
    batch = predictor.preprocess(images)
    with torch.no_grad():
        logits = hf(pixel_values=torch.from_numpy(batch)).logits.numpy()
    np.testing.assert_allclose(logits, predictor.backend.run(batch), rtol=0, atol=1e-3 * np.abs(logits).max())
    processor = transformers.AutoImageProcessor.from_pretrained(out)  # its own preprocessing, from the folder
    from PIL import Image

    pixels = processor([Image.open(p).convert("RGB") for p in images], return_tensors="np")["pixel_values"]
    assert pixels.shape == batch.shape and np.abs(pixels - batch).mean() < 0.05  # PIL's resize vs torch's
    classify = transformers.pipeline("image-classification", model=str(out))
    answer = classify(str(photos["grace_hopper"]), top_k=3)
    assert sorted(a["label"] for a in answer) == ["ant", "bee", "wasp"]
    assert abs(sum(a["score"] for a in answer) - 1) < 1e-4


def test_cifar_networks_are_refused_with_the_reason(tmp_path, capsys):
    model_file = _model_file(tmp_path / "c.safetensors", arch="resnet20")
    with pytest.raises(SystemExit):
        main(["export", str(model_file), "--format", "huggingface"])
    assert "has no transformers equivalent" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
