"""`auto` times and checks the runtimes once per model file and machine, then reuses the choice."""

import json
import shutil

import numpy as np

from reslab.infer.selection import load_backend
from reslab.modelfile import save_model_file
from reslab.models import load_model_file


def test_the_choice_is_remembered_per_file_and_made_again_for_another(trained_model, tmp_path, monkeypatch, photos):
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))
    model = shutil.copy(trained_model, tmp_path / "m.safetensors")
    first = load_backend(model, "auto", precision="fp32")
    assert first.timings_ms and "remembered" not in first.reason  # timed every runtime
    stored = json.loads((tmp_path / "cache" / "choices.json").read_text())
    assert [entry["key"] for entry in stored.values()] == [[first.backend.name, "fp32"]]
    again = load_backend(model, "auto", precision="fp32")
    assert again.label == first.label and again.reason.endswith("(remembered for this file and machine)")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(again.backend.run(x), first.backend.run(x), rtol=1e-5, atol=1e-5)
    network, info = load_model_file(model)  # another file (the same weights, other metadata): chosen afresh
    info.training["note"] = "retrained"
    save_model_file(model, network, info)
    assert "remembered" not in load_backend(model, "auto", precision="fp32").reason
    assert len(json.loads((tmp_path / "cache" / "choices.json").read_text())) == 2
