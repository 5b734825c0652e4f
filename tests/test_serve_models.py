"""Several models in one server: each under its name, the first the default."""

import pytest

from reslab.infer.predictor import Predictor
from reslab.modelfile import save_model_file
from reslab.models import load_model_file
from reslab.serve.settings import ServeConfig, split_model_arguments

from .servers import RunningServer, stopped_cleanly


@pytest.fixture(scope="module")
def renamed_model(trained_model, tmp_path_factory):
    """The same weights under other class names: its answers show which model gave them."""
    network, info = load_model_file(trained_model)
    info.classes = [f"{c}-renamed" for c in info.classes]
    return save_model_file(tmp_path_factory.mktemp("models") / "renamed.safetensors", network, info)


@pytest.fixture(scope="module")
def server(trained_model, renamed_model):
    running = RunningServer([f"cifar={trained_model}", renamed_model], "--backend", "torch", "--precision", "fp32")
    yield running
    assert stopped_cleanly(running.stop())


def test_each_model_answers_under_its_name(server, trained_model, photos):
    listed = server.client.get("/models").json()
    assert listed["default"] == "cifar"
    assert [(m["name"], m["state"]) for m in listed["models"]] == [("cifar", "ready"), ("renamed", "ready")]
    expected = [p.label for p in Predictor.from_file(trained_model, "torch").predict([photos["chelsea"]])[0]]
    image = {"file": photos["chelsea"].read_bytes()}
    default = server.client.post("/predict", files=image).json()
    renamed = server.client.post("/predict?model=renamed", files=image).json()
    assert default["model"] == "cifar" and [p["label"] for p in default["predictions"]] == expected
    assert renamed["model"] == "renamed" and [p["label"] for p in renamed["predictions"]] == [
        f"{label}-renamed" for label in expected]
    assert renamed["version"] != default["version"]
    batch = server.client.post("/predict/batch?model=renamed", files=[("files", photos["chelsea"].read_bytes())])
    assert batch.json()["results"][0]["predictions"][0]["label"] == f"{expected[0]}-renamed"
    info = server.client.get("/info", params={"model": "renamed"}).json()
    assert info["model"] == "renamed" and info["models"] == ["cifar", "renamed"]
    assert info["classes"][0].endswith("-renamed")


def test_an_unknown_model_is_a_404_naming_those_served(server, photos):
    for answer in (server.client.post("/predict?model=nope", files={"file": photos["chelsea"].read_bytes()}),
                   server.client.get("/info?model=nope"), server.client.get("/v2/models/nope")):
        assert answer.status_code == 404 and "'cifar', 'renamed'" in answer.json()["error"]


def test_v2_and_metrics_per_model(server):
    assert server.client.get("/v2/models/renamed").json()["name"] == "renamed"
    assert server.client.get("/v2/models/cifar/ready").json() == {"name": "cifar", "ready": True}
    text = server.client.get("/metrics").text
    assert 'reslab_model_info{' in text and 'model="renamed"' in text and 'model="cifar"' in text


def test_model_arguments_and_their_names():
    assert split_model_arguments(["a.onnx"]) == [(None, "a.onnx")]  # one model: named by its architecture later
    assert split_model_arguments(["a.onnx"], "mine") == [("mine", "a.onnx")]
    assert split_model_arguments(["x=a.onnx", "dir/b.safetensors", "resnet50:IMAGENET1K_V2"]) == [
        ("x", "a.onnx"), ("b", "dir/b.safetensors"), ("resnet50-IMAGENET1K_V2", "resnet50:IMAGENET1K_V2")]
    with pytest.raises(ValueError, match="--name names a single model"):
        split_model_arguments(["a.onnx", "b.onnx"], "mine")
    with pytest.raises(ValueError, match="'a' is given to several models: name them NAME=MODEL"):
        ServeConfig(models=["a.onnx", "x/a.onnx"], names=["a", "a"])
    with pytest.raises(ValueError, match="goes into URLs"):
        ServeConfig(models=["a.onnx"], names=["a b"])
