"""ONNX files are predicted and served without torch: a machine with only `pip install reslab[serve]`."""

import json
import os
import subprocess
import sys

import pytest

from reslab.export.run import export_model
from reslab.infer.predictor import Predictor
from tests.servers import RunningServer, stopped_cleanly


@pytest.fixture(scope="module")
def onnx_model(trained_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("lean") / "resnet20.onnx"
    export_model(trained_model, "onnx", out)
    return out


def reslab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reslab", *args], capture_output=True, text=True,
                          env={**os.environ, **env})


def test_predict_with_an_onnx_file_needs_no_torch(onnx_model, photos, without_torch):
    done = reslab("predict", str(onnx_model), str(photos["grace_hopper"]), "--backend", "onnxruntime", "--json",
                  env=without_torch)
    assert done.returncode == 0, done.stderr
    expected = Predictor.from_file(onnx_model, backend="onnxruntime").predict_files([photos["grace_hopper"]])
    assert json.loads(done.stdout) == json.loads(json.dumps(expected))  # the same preprocessing and runtime


def test_serve_with_an_onnx_file_needs_no_torch(onnx_model, photos, without_torch):
    expected = Predictor.from_file(onnx_model, backend="onnxruntime").predict([photos["chelsea"]])[0]
    server = RunningServer(onnx_model, "--backend", "onnxruntime", env=without_torch)
    try:
        answer = server.client.post("/predict", files={"file": photos["chelsea"].read_bytes()}).json()
        # no model here can give gradients: the schema leaves /explain out rather than promise it
        assert "/explain" not in server.client.get("/openapi.json").json()["paths"]
    finally:
        assert stopped_cleanly(server.stop())
    assert [p["label"] for p in answer["predictions"]] == [p.label for p in expected]
    assert answer["predictions"][0]["probability"] == pytest.approx(expected[0].probability, abs=1e-6)


def test_what_needs_torch_says_how_to_install_it(tmp_path, without_torch):
    done = reslab("train", "--data", str(tmp_path), env=without_torch)
    assert done.returncode == 2
    assert "this needs torch, which is not installed: pip install 'reslab[torch]'" in done.stderr
