"""Loading weights from torchvision files, reslab model files and Hugging Face folders."""

import json
from dataclasses import asdict

import pytest
import torch
import torchvision

from reslab.data.preprocess import Preprocess
from reslab.modelfile import FORMAT_VERSION, ModelFileError, ModelInfo, save_model_file
from reslab.models import ModelSpec, WeightsError, create_model, load_model_file


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_local_torchvision_checkpoint_gives_the_same_logits(tmp_path):
    reference = _randomize_bn(torchvision.models.resnet18()).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    ours = create_model("resnet18", weights=tmp_path / "resnet18.pth").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-4)


def test_head_of_another_size_is_replaced_and_the_rest_kept(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save({"model": reference.state_dict()}, tmp_path / "ckpt.pth")  # a training checkpoint wrapper
    with pytest.warns(UserWarning, match="replaced"):
        ours = create_model("resnet18", num_classes=5, weights=tmp_path / "ckpt.pth")
    assert ours.fc.weight.shape == (5, 512)
    assert torch.equal(ours.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_rgb_weights_load_into_a_grayscale_model(tmp_path):
    reference = torchvision.models.resnet18().eval()
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    gray = create_model("resnet18", in_chans=1, weights=tmp_path / "r.pth").eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # a gray image seen by the RGB model equals the summed stem on one channel
        assert torch.allclose(gray(x), reference(x.expand(1, 3, 64, 64)), atol=1e-4)


def test_weights_that_do_not_fit_are_named(tmp_path):
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(WeightsError, match="unexpected.*layer1.2"):
        create_model("resnet18", weights=tmp_path / "r34.pth")


@pytest.mark.parametrize("content", [b"", b"garbage" * 10])
def test_unreadable_weights_file(tmp_path, content):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(WeightsError, match="bad.pth: not a readable PyTorch checkpoint"):
        create_model("resnet18", weights=tmp_path / "bad.pth")


def test_reslab_model_file_round_trip_and_as_weights(tmp_path):
    model = _randomize_bn(create_model("resnet20", num_classes=10)).eval()
    info = ModelInfo(ModelSpec("resnet20", 10), [f"c{i}" for i in range(10)],
                     Preprocess(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    save_model_file(tmp_path / "m.safetensors", model, info)
    loaded, loaded_info = load_model_file(tmp_path / "m.safetensors")
    assert loaded_info == info
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    finetune = create_model("resnet20", num_classes=10, weights=tmp_path / "m.safetensors")
    assert finetune.class_names == info.classes


def test_damaged_model_files_give_clear_errors(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty.safetensors: not a readable safetensors model file"):
        load_model_file(tmp_path / "empty.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="without reslab metadata"):
        load_model_file(tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file(tmp_path / "missing.safetensors")


def test_pretrained_offline_says_how_to_pass_a_local_file(tmp_path, monkeypatch):
    # the weights' URL on a closed local port: the download really fails, as on a machine without internet
    # (not a proxy variable: urllib keeps the first opener it builds, with its proxies, for the whole process)
    from .servers import free_port

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    entry = torchvision.models.ResNet18_Weights.DEFAULT
    monkeypatch.setattr(entry.value, "url", f"http://127.0.0.1:{free_port()}/resnet18-f37072fd.pth")
    with pytest.raises(WeightsError, match=r"could not download.*resnet18-f37072fd\.pth.*--weights resnet18-f"):
        create_model("resnet18", pretrained=True)


def test_pretrained_weights_carry_imagenet_class_names():
    from reslab.models.weights import torchvision_weights

    categories = torchvision_weights("resnet50").meta["categories"]
    assert len(categories) == 1000 and categories[0] == "tench"
    with pytest.raises(WeightsError, match="no pretrained weights"):
        torchvision_weights("resnet20")


@pytest.mark.parametrize("layer_type,depths,arch", [("basic", [2, 2, 2, 2], "resnet18"),
                                                    ("bottleneck", [3, 4, 6, 3], "resnet50")])
def test_hugging_face_resnet_folder_converts_with_the_same_logits(tmp_path, layer_type, depths, arch):
    import transformers
    hidden = [64, 128, 256, 512] if layer_type == "basic" else [256, 512, 1024, 2048]
    config = transformers.ResNetConfig(layer_type=layer_type, depths=depths, hidden_sizes=hidden, num_labels=4,
                                       id2label={i: f"label{i}" for i in range(4)},
                                       label2id={f"label{i}": i for i in range(4)})
    torch.manual_seed(0)
    hf = transformers.ResNetForImageClassification(config).eval()
    _randomize_bn(hf)
    hf.save_pretrained(tmp_path / "hf")
    ours = create_model(arch, num_classes=4, weights=tmp_path / "hf").eval()
    assert ours.class_names == ["label0", "label1", "label2", "label3"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), hf(pixel_values=x).logits, atol=1e-4)


def test_preprocessing_follows_the_starting_weights(tmp_path):
    from reslab.models.weights import weights_preprocess

    assert weights_preprocess("resnet20", False, None) is None
    v2 = weights_preprocess("resnet50", True, None)  # torchvision's IMAGENET1K_V2 evaluates at 232 -> 224
    assert (v2.resize_size, v2.image_size, v2.mean) == (232, 224, (0.485, 0.456, 0.406))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r.pth")
    assert weights_preprocess("resnet18", False, tmp_path / "r.pth").resize_size == 256
    info = ModelInfo(ModelSpec("resnet20", 10), [str(i) for i in range(10)],
                     Preprocess(32, 32, (0.3, 0.3, 0.3), (0.2, 0.2, 0.2)))
    save_model_file(tmp_path / "m.safetensors", create_model("resnet20", num_classes=10), info)
    assert weights_preprocess("resnet20", False, tmp_path / "m.safetensors") == info.preprocess


def test_fine_tuning_keeps_the_weights_normalisation(tiny_folder, tmp_path):
    from reslab.config import TrainConfig
    from reslab.train.trainer import Trainer

    first = Trainer(TrainConfig(data=str(tiny_folder), model="resnet20", epochs=1, batch_size=32, device="cpu",
                                mean=[0.3, 0.3, 0.3], std=[0.2, 0.2, 0.2], out_dir=str(tmp_path), name="a"))
    first.fit()
    second = Trainer(TrainConfig(data=str(tiny_folder), model="resnet20", epochs=1, batch_size=32, device="cpu",
                                 weights=str(tmp_path / "a" / "best.safetensors"), out_dir=str(tmp_path), name="b"))
    assert second.data.preprocess.mean == (0.3, 0.3, 0.3)
    assert torch.equal(second.model.conv1.weight, first.eval_model().conv1.weight)


def _write_layout(path, model, payload: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"reslab": json.dumps(payload)})


def test_an_older_layout_loads_and_a_newer_format_version_is_refused(tmp_path):
    model = _randomize_bn(create_model("resnet20", num_classes=10)).eval()
    first_layout = {  # the first model files: no precision, task, thresholds, nor the later spec fields
        "format": "reslab-model", "format_version": 1,
        "model": {"arch": "resnet20", "num_classes": 10, "in_chans": 3, "stem": None, "dropout": 0.0,
                  "zero_init_residual": False},
        "classes": [f"c{i}" for i in range(10)],
        "preprocess": asdict(Preprocess(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))),
        "training": {"reslab": "0.0.1"}}
    _write_layout(tmp_path / "old.safetensors", model, first_layout)
    loaded, info = load_model_file(tmp_path / "old.safetensors")
    assert (info.precision, info.task, info.thresholds, info.spec.se) == ("fp32", "multiclass", None, False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    newer = {**first_layout, "format_version": FORMAT_VERSION + 1, "training": {"reslab": "9.0.0"}}
    _write_layout(tmp_path / "new.safetensors", model, newer)
    with pytest.raises(ModelFileError, match=rf"new.safetensors: model file format version {FORMAT_VERSION + 1} "
                       rf"\(written by reslab 9.0.0\); this reslab \(.+\) reads versions up to {FORMAT_VERSION}"):
        load_model_file(tmp_path / "new.safetensors")
    _write_layout(tmp_path / "odd.safetensors", model, {**first_layout, "format_version": "2"})
    with pytest.raises(ModelFileError, match="odd.safetensors: damaged reslab metadata \\(format_version '2'"):
        load_model_file(tmp_path / "odd.safetensors")
