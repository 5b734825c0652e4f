"""`auto` times and checks the runtimes once per model file and machine, then reuses the choice."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from reslab.infer.memory import choice_key, recall, remember
from reslab.modelfile import save_model_file
from reslab.models import load_model_file


def _retrained(path) -> None:
    network, info = load_model_file(path)  # the same weights, other metadata: another file
    info.training["note"] = "retrained"
    save_model_file(path, network, info)


def test_the_key_follows_the_file_and_the_request(trained_model, tmp_path, monkeypatch, photos):
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))
    model = shutil.copy(trained_model, tmp_path / "m.safetensors")
    images = [photos["grace_hopper"]]
    key = choice_key(model, "auto", "auto", "cpu", None, images)
    assert key == choice_key(model, "auto", "auto", "cpu", None, images)
    assert key != choice_key(model, "auto", "fp32", "cpu", None, images)
    assert key != choice_key(model, "auto", "auto", "cpu", 1, images)
    assert recall(key) is None
    remember(key, {"key": ["onnxruntime", "fp32"], "reason": "r", "timings_ms": {}})
    assert recall(key)["key"] == ["onnxruntime", "fp32"]
    _retrained(model)
    assert recall(choice_key(model, "auto", "auto", "cpu", None, images)) is None


@pytest.mark.slow
def test_a_repeated_predict_opens_the_remembered_runtime_alone(trained_model, tmp_path, photos, without_torch):
    model = shutil.copy(trained_model, tmp_path / "m.safetensors")
    env = {**os.environ, "RESLAB_CACHE": str(tmp_path / "cache")}

    def predict(extra_env: dict[str, str] | None = None) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-m", "reslab", "predict", str(model), str(photos["grace_hopper"])],
                              capture_output=True, text=True, env={**env, **(extra_env or {})}, check=True)
        header, answer = done.stdout.splitlines()[:2]
        return header, answer

    first_header, first_answer = predict()
    assert "fastest of" in first_header and "remembered" not in first_header  # every runtime timed
    stored = json.loads((tmp_path / "cache" / "choices.json").read_text())
    assert len(stored) == 1
    header, answer = predict()
    assert header.endswith("(remembered for this file and machine))") and answer == first_answer
    assert header.split(" (")[0] == first_header.split(" (")[0]  # the same runtime and precision
    if not header.split(": ")[1].startswith("torch"):  # ONNX Runtime or OpenVINO over the cached graph: no torch
        assert predict(without_torch) == (header, answer)
    _retrained(model)
    assert "remembered" not in predict()[0]
    assert len(json.loads((tmp_path / "cache" / "choices.json").read_text())) == 2
