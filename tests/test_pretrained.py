"""Models by name: torchvision's weights API (downloaded from a real HTTP server on 127.0.0.1, cached, or
refused offline with a clear message) and Hugging Face Hub repositories read from a real hub cache."""

import functools
import hashlib
import http.server
import json
import threading

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from reslab.cli import main
from reslab.infer.predictor import Predictor
from reslab.modelfile import read_model_info
from reslab.models import WeightsError
from reslab.models.pretrained import resolve_model

from .servers import free_port


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        QuietHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "reslab"))
    return tmp_path


@pytest.fixture
def weights_server(tmp_path, monkeypatch):
    """torchvision's ResNet-18 default entry pointed at a local server holding a random-weights checkpoint,
    saved in torchvision's format and named as torchvision names its files (sha256 prefix)."""
    served = tmp_path / "served"
    served.mkdir()
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    for m in reference.modules():  # non-trivial BatchNorm statistics, as trained weights have
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), served / "tmp.pth")
    digest = hashlib.sha256((served / "tmp.pth").read_bytes()).hexdigest()[:8]
    name = f"resnet18-{digest}.pth"
    (served / "tmp.pth").rename(served / name)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    entry = torchvision.models.ResNet18_Weights.DEFAULT
    monkeypatch.setattr(entry.value, "url", f"http://127.0.0.1:{server.server_port}/{name}")
    QuietHandler.requests = []
    yield reference, served / name
    server.shutdown()


def test_a_name_downloads_once_and_predicts_as_torchvision_does(caches, weights_server, photos, capsys):
    reference, served = weights_server
    main(["predict", "resnet18", str(photos["grace_hopper"]), "--backend", "torch", "--precision", "fp32", "--json"])
    answer = json.loads(capsys.readouterr().out)[0]["predictions"]
    main(["predict", "resnet18", str(photos["grace_hopper"]), "--backend", "torch", "--precision", "fp32", "--json"])
    assert json.loads(capsys.readouterr().out)[0]["predictions"] == answer
    assert QuietHandler.requests == [f"/{served.name}"]  # downloaded once, into torch hub's cache
    assert (caches / "torch" / "hub" / "checkpoints" / served.name).read_bytes() == served.read_bytes()

    weights = torchvision.models.ResNet18_Weights.DEFAULT  # torchvision's own preprocessing and classes
    with torch.no_grad():
        x = weights.transforms()(Image.open(photos["grace_hopper"]).convert("RGB")).unsqueeze(0)
        expected = torch.softmax(reference(x).double(), 1)[0]
    ours = Predictor.from_file("resnet18", backend="torch", precision="fp32").preprocess([photos["grace_hopper"]])
    assert np.allclose(ours[0], x[0].numpy(), rtol=0, atol=1e-5)  # torchvision's own preprocessing, to fp32 rounding
    top = expected.argsort(descending=True)[:5]
    assert [p["label"] for p in answer] == [weights.meta["categories"][i] for i in top]
    assert np.allclose([p["probability"] for p in answer], expected[top].numpy(), atol=1e-4)


def test_a_local_checkpoint_goes_with_the_name(caches, tmp_path, photos):
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "resnet50-local.pth")
    path = resolve_model("resnet50:IMAGENET1K_V1", tmp_path / "resnet50-local.pth")
    info = read_model_info(path)
    v1 = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()
    assert (info.spec.arch, len(info.classes), info.preprocess.resize_size) == ("resnet50", 1000, v1.resize_size[0])
    assert resolve_model("resnet50:IMAGENET1K_V1", tmp_path / "resnet50-local.pth") == path  # converted once
    predictor = Predictor.from_file("resnet50:IMAGENET1K_V1", backend="torch", precision="fp32",
                                    weights=tmp_path / "resnet50-local.pth")
    assert predictor.predict([photos["grace_hopper"]])[0][0].label in info.classes
    with pytest.raises(WeightsError, match=r"carries no architecture.*resnet50 --weights"):
        resolve_model(tmp_path / "resnet50-local.pth")
    with pytest.raises(WeightsError, match="IMAGENET1K_V3: no such weights; torchvision has IMAGENET1K_V1"):
        resolve_model("resnet50:IMAGENET1K_V3")
    with pytest.raises(WeightsError, match="pretrained weights for resnet18, resnet34"):
        resolve_model("resnet20")


def test_offline_and_not_cached_names_the_url_the_cache_and_the_flag(caches, monkeypatch, photos, capsys):
    entry = torchvision.models.ResNet18_Weights.DEFAULT
    url = f"http://127.0.0.1:{free_port()}/resnet18-f37072fd.pth"  # nothing listens there
    monkeypatch.setattr(entry.value, "url", url)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "resnet18", str(photos["grace_hopper"])])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    cache = caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert url in err and str(cache) in err and "--weights resnet18-f37072fd.pth" in err
    assert not cache.exists()


def test_a_download_that_fails_its_hash_leaves_nothing(caches, weights_server, monkeypatch):
    _, served = weights_server
    wrong = served.with_name("resnet18-00000000.pth")
    served.rename(wrong)
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.DEFAULT.value, "url",
                        torchvision.models.ResNet18_Weights.DEFAULT.url.replace(served.name, wrong.name))
    with pytest.raises(WeightsError, match="could not download"):
        resolve_model("resnet18")
    assert not any((caches / "torch" / "hub" / "checkpoints").iterdir())


def _hub_cache(root, repo: str, tmp_path):
    """A Hugging Face Hub cache holding ``repo`` as huggingface_hub lays it out after a download."""
    import transformers

    config = transformers.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                       num_labels=3, id2label={0: "ant", 1: "bee", 2: "wasp"},
                                       label2id={"ant": 0, "bee": 1, "wasp": 2})
    torch.manual_seed(1)
    model = transformers.ResNetForImageClassification(config).eval()
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    model.save_pretrained(snapshot)
    transformers.ConvNextImageProcessor(crop_pct=0.875, size={"shortest_edge": 224}, resample=3).save_pretrained(
        snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    return model


def test_hugging_face_hub_names_read_the_cache_offline(caches, tmp_path, monkeypatch, photos):
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    model = _hub_cache(hub, "someone/resnet-18-insects", tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")  # the Hub cannot be reached
    predictor = Predictor.from_file("hf:someone/resnet-18-insects", backend="torch", precision="fp32")
    pre = predictor.info.preprocess
    assert predictor.classes == ["ant", "bee", "wasp"]
    assert (pre.image_size, pre.resize_size, pre.interpolation) == (224, 256, "bicubic")  # crop_pct 0.875
    batch = predictor.preprocess([photos["grace_hopper"]])
    with torch.no_grad():
        expected = torch.softmax(model(pixel_values=torch.from_numpy(batch)).logits.double(), 1).numpy()
    assert np.allclose(predictor.inference(batch), expected, atol=1e-5)
    with pytest.raises(WeightsError, match=r"hf:someone/other.*Offline\?.*hf download someone/other"):
        resolve_model("hf:someone/other")


def test_export_of_a_name_carries_the_classes_and_preprocessing(caches, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from reslab.formats import read_info

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    monkeypatch.chdir(tmp_path)
    main(["export", "resnet18", "--weights", "r18.pth", "--format", "onnx"])
    assert "onnx: resnet18.onnx" in capsys.readouterr().out
    info = read_info(tmp_path / "resnet18.onnx")
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    assert info.classes == weights.meta["categories"]
    assert (info.preprocess.resize_size, info.preprocess.decode) == (weights.transforms().resize_size[0], "full")
