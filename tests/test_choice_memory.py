"""`auto` times and checks the runtimes once per model file and machine, then reuses the choice."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from reslab.infer.background import _take_lock, choosing, lock_path
from reslab.infer.memory import choice_key, recall, remember
from reslab.infer.reference import reference_batch
from reslab.infer.selection import load_backend
from reslab.modelfile import save_model_file
from reslab.models import load_model_file

from .servers import RunningServer

CHOICE_TIMEOUT_S = 300  # timing every runtime and precision at a low priority, beside other tests, on 2 cores


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


def test_a_first_run_answers_in_fp32_and_leaves_the_timing_for_later(trained_model, tmp_path, monkeypatch, photos):
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))
    model = shutil.copy(trained_model, tmp_path / "m.safetensors")
    images = [photos["grace_hopper"]]
    first = load_backend(model, verify_images=images, timing="later")
    assert first.label == "torch fp32" and "first run" in first.reason  # no ONNX graph yet: torch opens fastest
    assert first.pending is not None and first.pending.key == choice_key(model, "auto", "auto", "cpu", None, images)
    assert recall(first.pending.key) is None and not first.timings_ms  # nothing timed, nothing remembered
    reference = load_backend(model, "torch", precision="fp32")
    batch = reference_batch(first.info.preprocess, images)
    np.testing.assert_allclose(first.backend.run(batch), reference.backend.run(batch), rtol=1e-5, atol=1e-5)
    load_backend(model, "onnxruntime", precision="fp32")  # exports and caches the file's ONNX graph
    assert load_backend(model, verify_images=images, timing="later").label == "onnxruntime fp32"
    assert load_backend(model, "torch", precision="auto", verify_images=images, timing="later").label == "torch fp32"


def test_one_timing_process_per_choice_and_a_dead_ones_lock_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))
    assert _take_lock("k") and choosing("k")
    assert not _take_lock("k")  # another process is timing it
    old = time.time() - 3600
    os.utime(lock_path("k"), (old, old))  # its process died an hour ago
    assert _take_lock("k") and not _take_lock("k")


def _wait_for_choice(cache) -> dict:
    deadline = time.monotonic() + CHOICE_TIMEOUT_S
    while not (cache / "choices.json").is_file() or any((cache / "choosing").glob("*.lock")):
        assert time.monotonic() < deadline, f"no choice remembered in {CHOICE_TIMEOUT_S} s"
        time.sleep(0.5)
    return json.loads((cache / "choices.json").read_text())


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
    assert "first run: torch fp32" in first_header  # answered before any timing
    stored = _wait_for_choice(tmp_path / "cache")  # timed after the answer, in the background
    assert len(stored) == 1 and not list((tmp_path / "cache" / "choosing").iterdir())  # no lock, order or log left
    header, answer = predict()
    assert "fastest of" in header and header.endswith("(remembered for this file and machine))")
    assert answer.split()[0] == first_answer.split()[0]  # the same top-1 class, whichever runtime and precision
    assert predict() == (header, answer)
    if not header.split(": ")[1].startswith("torch"):  # ONNX Runtime or OpenVINO over the cached graph: no torch
        assert predict(without_torch) == (header, answer)
    _retrained(model)
    assert "first run" in predict()[0]
    assert len(_wait_for_choice(tmp_path / "cache")) == 2


@pytest.mark.slow
def test_a_first_serve_is_ready_at_once_and_switches_to_the_runtime_chosen(trained_model, tmp_path, photos):
    model = shutil.copy(trained_model, tmp_path / "m.safetensors")
    cache = tmp_path / "cache"
    server = RunningServer(model, env={"RESLAB_CACHE": str(cache)})

    def top1() -> str:
        with open(photos["grace_hopper"], "rb") as f:
            response = server.client.post("/predict", files={"file": ("g.jpg", f, "image/jpeg")})
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]["label"]

    try:
        assert "first run: torch fp32" in server.client.get("/info").json()["precision_choice"]
        answer = top1()
        deadline = time.monotonic() + CHOICE_TIMEOUT_S
        while "remembered" not in (info := server.client.get("/info").json())["precision_choice"]:
            assert time.monotonic() < deadline, f"still serving with {info['precision_choice']}"
            assert top1() == answer  # answered throughout the switch
            time.sleep(0.5)
        assert top1() == answer
    finally:
        log = server.stop()
    assert "timing the runtimes failed" not in log
