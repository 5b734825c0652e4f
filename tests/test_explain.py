"""Grad-CAM explanations: the heat-map on the object, `reslab explain`, `eval --explain`, and /explain."""

from __future__ import annotations

import io
import subprocess
import sys
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from reslab.data.datasets import load_dataset
from reslab.evaluate.explain import Explainer, NotExplainableError
from reslab.evaluate.report import run_eval
from reslab.export.run import export_model

from .conftest import SAMPLES
from .servers import RunningServer, stopped_cleanly
from .videos import needs_ffmpeg

# two cats of the shipped CIFAR-10 sample that the demo model classifies correctly, with their boxes
# (left, top, right, bottom in pixels of the 32x32 image) drawn by hand: a framed picture of cats on a
# white wall, and a white cat lying on a shelf; each box is about a third of the image
CATS = {("test", 129): (5, 8, 27, 25), ("val", 229): (8, 11, 32, 23)}


def sample_image(split: str, index: int) -> Image.Image:
    z = np.load(SAMPLES / "cifar10-sample.npz")
    offsets = z[f"{split}_offsets"]
    return Image.open(io.BytesIO(z[f"{split}_jpeg"][offsets[index] : offsets[index + 1]].tobytes())).convert("RGB")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_the_heat_map_lies_on_the_cat(trained_model, method):
    explainer = Explainer.from_file(trained_model, method)
    for (split, index), (left, top, right, bottom) in CATS.items():
        (explanation,) = explainer.explain([sample_image(split, index)])
        assert explanation.class_name == "cat" and explanation.probability > 0.5
        heat = explanation.heatmap
        assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1
        mass = heat[top:bottom, left:right].sum() / heat.sum()
        area = (right - left) * (bottom - top) / heat.size
        # most of the mass on the cat, and far more than a map spread evenly (or elsewhere) would put there
        assert mass > 0.5 and mass > 1.5 * area, (split, index, mass, area)


@pytest.fixture(scope="module")
def still_cat_videos(trained_model, tmp_path_factory):
    """The demo model inflated to 3D (a clip of one frame repeated gives the 2D answer: tests/test_video.py) as a
    video model file, and H.264 videos of each hand-boxed cat held still."""
    from dataclasses import replace

    import torch

    from reslab.data.moving import write_video
    from reslab.data.preprocess import Clip
    from reslab.modelfile import read_model_info, save_model_file
    from reslab.models import ModelSpec, create_model

    folder = tmp_path_factory.mktemp("video")
    info = read_model_info(trained_model)
    deep = create_model("resnet20-3d", num_classes=len(info.classes), weights=trained_model).eval()
    video_info = replace(info, spec=ModelSpec("resnet20-3d", len(info.classes)), task="video",
                         clip=Clip(frames=4, stride=2, clips=3))
    model_file = save_model_file(folder / "cat-3d.safetensors", deep, video_info)
    videos = {}
    for (split, index), box in CATS.items():
        photo = torch.from_numpy(np.array(sample_image(split, index))).permute(2, 0, 1)
        videos[write_video(photo[None].expand(12, -1, -1, -1).clone(), folder / f"{split}-{index}.mp4", 4)] = box
    return model_file, videos


@needs_ffmpeg
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_the_heat_map_of_a_video_lies_on_the_cat_in_every_frame(still_cat_videos, method):
    from reslab.data.splits import VideoSource
    from reslab.infer.predictor import Predictor

    model_file, videos = still_cat_videos
    explainer = Explainer.from_file(model_file, method)
    predictor = Predictor.from_file(model_file, backend="torch", precision="fp32")
    for video, (left, top, right, bottom) in videos.items():
        explanation = explainer.explain_video(VideoSource(video))
        top_class = predictor.predict_files([video], topk=1)[0]["predictions"][0]
        # the class and probability of the whole video (its 3 clips), as `reslab predict` answers
        assert explanation.class_name == top_class["label"] == "cat"
        assert explanation.probability == pytest.approx(top_class["probability"], abs=1e-5)
        assert explanation.heatmap.shape == (4, 32, 32) and explanation.view.shape == (4, 32, 32, 3)
        for heat in explanation.heatmap:  # a map over time too: each frame's share lies on the cat
            mass = heat[top:bottom, left:right].sum() / heat.sum()
            area = (right - left) * (bottom - top) / heat.size
            assert mass > 0.5 and mass > 1.5 * area, (video.name, mass, area)
        assert explanation.overlay().size == (4 * 224, 224)  # a strip of its 4 frames, each enlarged
    chosen = explainer.explain_video(VideoSource(next(iter(videos))), "truck")
    assert chosen.class_name == "truck" and chosen.probability < 0.5


@needs_ffmpeg
def test_a_video_model_is_explained_from_the_command_line_and_refuses_2d_only_methods(still_cat_videos, tmp_path):
    model_file, videos = still_cat_videos
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    out = tmp_path / "why"
    done = reslab("explain", str(model_file), *map(str, videos), str(broken), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{v.stem}-cat-gradcam.png" for v in videos)
    assert Image.open(out / f"{next(iter(videos)).stem}-cat-gradcam.png").size == (4 * 224, 224)
    assert "broken.mp4: skipped" in done.stdout and "not a decodable video" in done.stdout
    with pytest.raises(ValueError, match="'scorecam' draws 2D maps only: a video model is explained with gradcam"):
        Explainer.from_file(model_file, "scorecam")


def test_a_named_class_and_the_overlay(trained_model, photos):
    explainer = Explainer.from_file(trained_model)
    image = Image.open(photos["chelsea"]).convert("RGB")
    top, = explainer.explain([image])
    chosen, = explainer.explain([image], "truck")
    assert chosen.class_name == "truck" and chosen.probability < top.probability
    assert not np.allclose(chosen.heatmap, top.heatmap)  # another class, another map
    overlay = top.overlay()
    assert overlay.size == (224, 224)  # the 32 px view, enlarged
    assert Image.open(io.BytesIO(top.png())).size == (224, 224)
    with pytest.raises(ValueError, match="'lion' is not one of the model's classes"):
        explainer.explain([image], "lion")


def reslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reslab", *args], capture_output=True, text=True)


def test_explain_command(trained_model, photos, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    out = tmp_path / "why"
    done = reslab("explain", str(trained_model), str(photos["chelsea"]), str(photos["camera"]), str(notes),
                  "--out", str(out), "--method", "gradcam++", "--class", "cat")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["camera-cat-gradcam++.png", "chelsea-cat-gradcam++.png"]
    assert "notes.jpg: skipped" in done.stdout and "not an image" in done.stdout


def test_target_layers(trained_model, photos):
    image = Image.open(photos["chelsea"]).convert("RGB")
    last, = Explainer.from_file(trained_model).explain([image])
    earlier, = Explainer.from_file(trained_model, layer="layer2").explain([image])
    assert earlier.class_name == last.class_name and not np.allclose(earlier.heatmap, last.heatmap)
    with pytest.raises(ValueError, match="'layer9' is not a module of this network.*layer1, layer2, layer3"):
        Explainer.from_file(trained_model, layer="layer9")


@pytest.fixture(scope="module")
def onnx_file(trained_model, tmp_path_factory):
    return export_model(trained_model, "onnx", tmp_path_factory.mktemp("onnx") / "cifar.onnx").output


def test_forward_only_files_are_refused_with_the_reason(onnx_file, tmp_path):
    with pytest.raises(NotExplainableError, match=r"cifar\.onnx: heat-maps need the network's layers and gradients"):
        Explainer.from_file(onnx_file)
    with pytest.raises(NotExplainableError, match="use the reslab model file"):
        run_eval(onnx_file, str(SAMPLES / "cifar10-sample.npz"), tmp_path / "eval", explain="gradcam")
    assert not (tmp_path / "eval").exists()  # refused before any work


def test_eval_draws_the_worst_images_with_their_heat_maps(trained_model, tmp_path):
    report = run_eval(trained_model, str(SAMPLES / "cifar10-sample.npz"), tmp_path / "eval", split="test",
                      worst=8, explain="gradcam")
    picture = Image.open(report.files["worst_explained_png"])
    assert picture.size[0] > 600
    assert len(load_dataset(str(SAMPLES / "cifar10-sample.npz"), tmp_path).test) == report.metrics["count"]


@pytest.mark.slow
def test_explain_endpoint(trained_model, onnx_file, photos):
    running = RunningServer([f"cifar={trained_model}", f"forward={onnx_file}"], "--backend", "onnxruntime")
    try:
        data = photos["chelsea"].read_bytes()
        answer = running.client.post("/explain?model=cifar", files={"file": ("chelsea.png", data)})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        served = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"), dtype=np.float64)
        local, = Explainer.from_file(trained_model).explain([Image.open(photos["chelsea"]).convert("RGB")])
        assert unquote(answer.headers["x-class"]) == local.class_name
        assert float(answer.headers["x-probability"]) == pytest.approx(local.probability, abs=1e-4)
        # the same map, up to the float rounding of another thread count (fp32 gradients)
        assert np.abs(served - np.asarray(local.overlay(), dtype=np.float64)).mean() < 1.0

        named = running.client.post("/explain?model=cifar&class=cat&method=gradcam%2B%2B", content=data)
        assert named.status_code == 200 and named.headers["x-class"] == "cat"
        assert running.client.get("/info?model=cifar").json()["explain"] is True
        assert running.client.get("/info?model=forward").json()["explain"] is False

        refusals = [("/explain?model=forward", data, 501, "cannot give (ONNX, OpenVINO"),
                    ("/explain?model=cifar&class=lion", data, 400, "'lion' is not one of model cifar's classes"),
                    ("/explain?model=cifar", b"", 400, "empty body"),
                    ("/explain?model=cifar", b"plain text", 415, "not an image"),
                    ("/explain?model=cifar&method=lime", data, 422, ""),
                    ("/explain?model=cifar&class=", data, 422, "at least 1 character")]
        for url, body, status, message in refusals:
            response = running.client.post(url, content=body)
            assert response.status_code == status and message in response.text, (url, response.text)
        declared = running.client.get("/openapi.json").json()["paths"]["/explain"]["post"]["parameters"]
        declared_class = next(p for p in declared if p["name"] == "class")["schema"]["anyOf"][0]
        assert declared_class["minLength"] == 1
        assert declared_class["enum"] == sorted(running.client.get("/info?model=cifar").json()["classes"])
        assert running.client.post("/predict?model=cifar", content=data).status_code == 200  # still serving
    finally:
        assert stopped_cleanly(running.stop())
