"""Prediction on real photos, evaluation reports, and the commands around them."""

import json
import subprocess
import sys

import pytest
import torch

from reslab.data.preprocess import Preprocess
from reslab.evaluate.metrics import per_class_report
from reslab.evaluate.report import run_eval
from reslab.infer.predictor import Predictor
from reslab.modelfile import ModelInfo, save_model_file
from reslab.models import ModelSpec, create_model

from .images import write_broken_images, write_odd_images


def test_predict_real_photos_gives_valid_probabilities(model_file, photos):
    predictor = Predictor.from_file(model_file)
    results = predictor.predict([photos["chelsea"], photos["grace_hopper"], photos["camera"]], topk=3)
    assert len(results) == 3
    for preds in results:
        probs = [p.probability for p in preds]
        assert len(preds) == 3 and probs == sorted(probs, reverse=True)
        assert all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
        assert all(p.label == predictor.classes[p.index] for p in preds)
    full = predictor.inference(predictor.preprocess([photos["chelsea"]]))
    assert abs(float(full.sum()) - 1) < 1e-5


def test_predict_files_reports_errors_and_goes_on(model_file, photos, tmp_path):
    broken = write_broken_images(tmp_path / "broken")
    odd = write_odd_images(tmp_path / "odd")
    inputs = [photos["chelsea"], *broken.values(), *odd.values(), tmp_path / "missing.jpg"]
    results = Predictor.from_file(model_file).predict_files(inputs, topk=2, batch_size=4)
    assert [r["file"] for r in results] == [str(p) for p in inputs]
    errors = {r["file"]: r["error"] for r in results if "error" in r}
    assert set(errors) == {str(p) for p in broken.values()} | {str(tmp_path / "missing.jpg")}
    assert "not an image" in errors[str(broken["text"])]
    assert sum("predictions" in r for r in results) == 1 + len(odd)


def test_predict_command_json(model_file, photos):
    out = subprocess.run([sys.executable, "-m", "reslab", "predict", str(model_file), str(photos["chelsea"]),
                          "--topk", "2", "--json"], capture_output=True, text=True, check=True)
    (entry,) = json.loads(out.stdout)
    assert entry["file"] == str(photos["chelsea"]) and len(entry["predictions"]) == 2


def test_eval_report_is_consistent(model_file, cifar_folder, tmp_path):
    report = run_eval(model_file, str(cifar_folder), tmp_path / "eval", split="test", worst=8)
    assert report.metrics["count"] == 100 and 0 <= report.metrics["top1"] <= report.metrics["top5"] <= 1
    for name in ("confusion_csv", "confusion_png", "worst_png", "report"):
        assert report.files[name].parent == tmp_path / "eval" and report.files[name].stat().st_size > 0
    rows = (tmp_path / "eval" / "confusion.csv").read_text().strip().splitlines()
    matrix = [[int(v) for v in row.split(",")[1:]] for row in rows[1:]]
    assert sum(map(sum, matrix)) == 100
    assert sum(matrix[i][i] for i in range(10)) == round(report.metrics["top1"] * 100)
    assert [r["support"] for r in report.per_class] == [10] * 10
    assert json.loads(report.files["report"].read_text()) == json.loads(str(report))  # report.json = --json
    flipped = run_eval(model_file, str(cifar_folder), tmp_path / "tta", split="test", tta=True)
    assert flipped.metrics["count"] == 100 and flipped.tta


def test_per_class_report_on_a_hand_computed_case():
    # true rows, predicted columns: class a: 3 right, 1 called b; class b: 2 right, 2 called a
    confusion = torch.tensor([[3, 1], [2, 2]])
    a, b = per_class_report(confusion, ["a", "b"])
    assert a["precision"] == pytest.approx(3 / 5) and a["recall"] == pytest.approx(3 / 4)
    assert a["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == pytest.approx(1 / 2)
    assert (a["support"], b["support"]) == (4, 4)


def test_eval_with_feature_maps_and_wrong_classes(model_file, cifar_folder, photos, tmp_path):
    out = subprocess.run([sys.executable, "-m", "reslab", "eval", str(model_file), "--data", str(cifar_folder),
                          "--out", str(tmp_path), "--feature-maps", str(photos["chelsea"])],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "feature_maps.png").stat().st_size > 0 and "top-1" in out.stdout

    other = create_model("resnet20", num_classes=3)
    info = ModelInfo(ModelSpec("resnet20", 3), ["x", "y", "z"], Preprocess(32, 32, (0.5,) * 3, (0.2,) * 3))
    save_model_file(tmp_path / "other.safetensors", other, info)
    with pytest.raises(ValueError, match="differ from the model's"):
        run_eval(tmp_path / "other.safetensors", str(cifar_folder), tmp_path / "e")


def test_cli_errors_are_one_clear_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "reslab", "train", "--data", str(tmp_path / "nope"),
                          "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == f"reslab train: error: {tmp_path / 'nope'}: dataset folder not found"
    assert list(tmp_path.iterdir()) == []  # no half-made run folder


def test_eval_defaults_to_the_runs_own_data_and_split(tiny_folder, tmp_path):
    import json
    import shutil

    from reslab.config import TrainConfig
    from reslab.train.trainer import Trainer

    flat = tmp_path / "flat"
    shutil.copytree(tiny_folder / "train", flat)
    Trainer(TrainConfig(data=str(flat), model="resnet20", epochs=1, batch_size=32, out_dir=str(tmp_path / "runs"),
                        name="r", seed=7, device="cpu")).fit()
    split = json.loads((tmp_path / "runs" / "r" / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 160
    # no --data: the model file remembers its training data; the run's split.json is found beside it
    report = run_eval(tmp_path / "runs" / "r" / "best.safetensors", None, tmp_path / "e", split="test")
    assert report.metrics["count"] == len(split["test"]) and report.data == str(flat.resolve())
