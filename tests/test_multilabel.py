"""Multi-label classification (--task multilabel): the index formats and split rules, the loss, the
thresholds, and the path from training to prediction, export, quantisation and serving on real pictures."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.data.check import check_folder
from reslab.data.datasets import load_dataset
from reslab.data.multilabel import iterative_split, load_multilabel
from reslab.evaluate.multilabel import decisions, mean_average_precision, tune_thresholds
from reslab.infer.predictor import Predictor
from reslab.modelfile import read_model_info
from reslab.train.distill import sigmoid_distillation_loss
from reslab.train.multilabel_loss import multilabel_loss, pos_weights

from .servers import RunningServer, stopped_cleanly


def write_images(folder: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), (10 * i, 100, 200)).save(folder / name)


def write_csv(path: Path, rows: list[list[str]], header=("path", "labels", "split")) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([list(header), *rows])


def test_csv_index_with_a_split_column_and_both_separators(tmp_path):
    names = [f"img/{i}.png" for i in range(6)]
    write_images(tmp_path, names)
    write_csv(tmp_path / "labels.csv", [[names[0], "cat;dog", "train"], [names[1], "dog | sky", "train"],
                                        [names[2], "", "train"], [names[3], "sky", "val"],
                                        [names[4], "cat|sky", "test"], [names[5], "dog", "train"]])
    ds = load_dataset(str(tmp_path), tmp_path, task="multilabel")
    assert ds.task == "multilabel" and ds.classes == ["cat", "dog", "sky"]
    assert [p.name for p in ds.train.paths] == ["0.png", "1.png", "2.png", "5.png"]
    assert np.asarray(ds.train.labels).tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0]]
    assert np.asarray(ds.val.labels).tolist() == [[0, 0, 1]] and np.asarray(ds.test.labels).tolist() == [[1, 0, 1]]
    assert ds.split_file is None  # the split was given, nothing to record


def test_json_index_and_one_index_per_split(tmp_path):
    names = [f"{i}.png" for i in range(4)]
    write_images(tmp_path / "a", names)
    (tmp_path / "a" / "labels.json").write_text(json.dumps({"0.png": ["x"], "1.png": ["x", "y"], "2.png": [],
                                                            "3.png": "y;z"}))
    ds = load_multilabel(str(tmp_path / "a"), hold_out=False)
    every = np.concatenate([np.asarray(s.labels) for s in (ds.train, ds.val, ds.test) if s is not None])
    assert ds.classes == ["x", "y", "z"] and every.sum(0).tolist() == [2, 2, 1] and len(every) == 4
    write_images(tmp_path / "b", names)
    write_csv(tmp_path / "b" / "train.csv", [["0.png", "x"], ["1.png", "x;y"]], header=("path", "labels"))
    write_csv(tmp_path / "b" / "val.csv", [["2.png", "y"]], header=("path", "labels"))
    ds = load_multilabel(str(tmp_path / "b"))
    assert (len(ds.train), len(ds.val), ds.test) == (2, 1, None) and ds.classes == ["x", "y"]


@pytest.mark.parametrize("rows, header, message", [
    ([["0.png", "a;b"]], ("file", "tags"), "expected a header with columns 'path' and 'labels'"),
    ([["0.png", "a"], ["gone.png", "b"]], ("path", "labels"), "1 images of the index are missing, e.g. "),
    ([["0.png", "a", "holdout"], ["1.png", "b", "train"]], ("path", "labels", "split"), "line 2: split 'holdout'"),
    ([["0.png", "a", "train"], ["1.png", "b", ""]], ("path", "labels", "split"), "1 images have no split"),
])
def test_bad_indexes_are_named(tmp_path, rows, header, message):
    write_images(tmp_path, ["0.png", "1.png"])
    write_csv(tmp_path / "labels.csv", rows, header=header)
    with pytest.raises(ValueError, match=message):
        load_multilabel(str(tmp_path))


def test_a_multiclass_run_on_an_index_says_to_pass_the_task(tmp_path):
    write_images(tmp_path, ["0.png"])
    write_csv(tmp_path / "labels.csv", [["0.png", "a;b"]], header=("path", "labels"))
    with pytest.raises(ValueError, match="multi-label index: pass --task multilabel"):
        load_dataset(str(tmp_path), tmp_path)


def test_iterative_stratification_spreads_every_label_like_the_fractions():
    rng = np.random.default_rng(3)
    frequency = np.array([0.5, 0.3, 0.1, 0.04, 0.02, 0.01])  # down to 10 images of 1,000
    targets = (rng.random((1000, 6)) < frequency).astype(np.int64)
    parts = iterative_split(targets, (0.7, 0.2, 0.1), seed=0)
    assert sorted(i for p in parts for i in p) == list(range(1000))  # each image once
    assert parts == iterative_split(targets, (0.7, 0.2, 0.1), seed=0)  # repeatable
    for part, fraction in zip(parts, (0.7, 0.2, 0.1)):
        assert abs(len(part) - fraction * 1000) <= 10
        wanted = fraction * targets.sum(0)
        assert np.abs(targets[part].sum(0) - wanted).max() <= 2  # every label, the rare ones too
    # a seeded random split of the same sizes misses the rare labels' shares by more
    order = rng.permutation(1000)
    random_val = targets[order[700:900]].sum(0)
    assert np.abs(targets[parts[1]].sum(0) - 0.2 * targets.sum(0)).sum() < np.abs(
        random_val - 0.2 * targets.sum(0)).sum()


def test_tuned_thresholds_give_each_label_its_best_f1():
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 4)) < [0.5, 0.2, 0.05, 0.0]).astype(np.int64)
    probabilities = np.clip(targets * 0.3 + rng.random((300, 4)) * 0.7, 0, 1)
    thresholds = tune_thresholds(targets, probabilities)
    assert thresholds[3] == 0.5  # no positive image: the default

    def f1(c: int, cut: float) -> float:
        predicted = probabilities[:, c] >= cut
        tp = (predicted & (targets[:, c] == 1)).sum()
        return 2 * tp / max(1, predicted.sum() + targets[:, c].sum())

    for c in range(3):
        best = max(f1(c, cut) for cut in np.unique(probabilities[:, c]))
        assert f1(c, thresholds[c]) == pytest.approx(best, rel=1e-6)
    assert decisions(probabilities, thresholds).tolist() == (probabilities >= np.array(thresholds)).astype(int).tolist()


def test_map_of_constant_scores_is_the_label_frequency():
    rng = np.random.default_rng(1)
    targets = (rng.random((500, 3)) < [0.4, 0.1, 0.25]).astype(np.int64)
    macro, micro = mean_average_precision(targets, np.full(targets.shape, 0.3))
    assert macro == pytest.approx(targets.mean(0).mean()) and micro == pytest.approx(targets.mean())
    assert mean_average_precision(targets, targets.astype(float))[0] == pytest.approx(1.0)


def test_loss_with_smoothing_and_pos_weight_is_bce_with_logits():
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]] * 2)
    weights = pos_weights(targets.sum(0).tolist(), len(targets), "balanced")
    assert weights.tolist() == pytest.approx([1.0, 1.0, 3.0])  # negatives / positives
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=weights)(logits, targets.float() * 0.9 + 0.05)
    assert multilabel_loss(logits, targets, 0.1, weights).item() == pytest.approx(expected.item(), rel=1e-6)
    assert pos_weights([0, 1], 1000, "balanced").tolist() == pytest.approx([1.0, 100.0])  # none: 1; capped


def test_sigmoid_distillation_pulls_the_student_to_the_teachers_probabilities():
    teacher = torch.tensor([[2.0, -1.0, 0.5]])
    targets = torch.tensor([[1, 0, 0]])
    student = teacher.clone().requires_grad_(True)
    sigmoid_distillation_loss(student, teacher, targets, alpha=1.0, temperature=4.0).backward()
    assert student.grad.abs().max() < 1e-6  # the soft term is smallest where the student agrees
    other = torch.zeros(1, 3, requires_grad=True)
    sigmoid_distillation_loss(other, teacher, targets, alpha=1.0, temperature=4.0).backward()
    assert (other.grad.sign() == -teacher.sign()).all()  # a step against the gradient moves towards the teacher
    assert sigmoid_distillation_loss(other, teacher, targets, 0.0, 4.0).item() == pytest.approx(
        multilabel_loss(other, targets).item())


def test_trained_model_predicts_every_label_over_its_threshold(multilabel_model, mosaic_folder, tmp_path):
    info = read_model_info(multilabel_model)
    assert info.task == "multilabel" and len(info.thresholds) == len(info.classes) == 10
    run = multilabel_model.parent
    assert "val_map" in (run / "metrics.csv").read_text().splitlines()[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "multilabel" and set(summary["thresholds"]) == set(info.classes)
    pictures = sorted((mosaic_folder / "test").glob("*.png"))[:6]
    predictor = Predictor.from_file(multilabel_model, backend="torch", precision="fp32")
    results = predictor.predict_files(pictures, topk=3)
    probabilities = predictor.inference(predictor.preprocess(pictures))
    assert np.all((probabilities > 0) & (probabilities < 1)) and not np.allclose(probabilities.sum(1), 1)
    for result, row in zip(results, probabilities):
        over = {info.classes[i] for i in np.flatnonzero(row >= np.array(info.thresholds))}
        assert set(result["labels"]) == over
        shown = {p["label"] for p in result["predictions"]}
        assert over <= shown and len(shown) >= min(3, 10)
        assert all(p["positive"] == (p["probability"] >= p["threshold"]) for p in result["predictions"])


def test_check_data_reports_label_frequencies_and_co_occurrence(mosaic_folder):
    report = check_folder(mosaic_folder)
    train = report["splits"]["train"]
    rows = list(csv.DictReader((mosaic_folder / "labels.csv").open()))
    counted = sum(len(r["labels"].split(";")) for r in rows if r["split"] == "train")
    assert report["task"] == "multilabel" and train["images"] == 200 and sum(train["per_class"].values()) == counted
    together = np.array(report["co_occurrence"])
    assert together.shape == (10, 10) and (together == together.T).all()
    assert together.diagonal().sum() == sum(len(r["labels"].split(";")) for r in rows)
    assert report["top_pairs"][0]["images"] == max(together[i, j] for i in range(10) for j in range(10) if i != j)


def test_eval_report_of_a_multilabel_model(multilabel_model, mosaic_folder, tmp_path):
    from reslab.evaluate.report import run_eval

    report = run_eval(multilabel_model, str(mosaic_folder), tmp_path, split="test", device="cpu", worst=8)
    assert report.task == "multilabel" and report.metrics["count"] == 60
    for key in ("map", "map_micro", "f1_samples", "exact_match", "precision_micro", "recall_micro", "f1_macro"):
        assert 0.0 <= report.metrics[key] <= 1.0
    per_class = report.per_class
    info = read_model_info(multilabel_model)
    assert [r["threshold"] for r in per_class] == pytest.approx(info.thresholds)
    aps = [r["ap"] for r in per_class if r["ap"] is not None]
    assert report.metrics["map"] == pytest.approx(sum(aps) / len(aps))
    for name in ("pr_curves_png", "worst_png"):
        assert Image.open(report.files[name]).size[0] > 300


@pytest.mark.slow
def test_multilabel_map_is_far_above_the_label_frequency_baseline(tmp_path):
    """On pictures of two CIFAR-10 sample images, a short run ranks labels far better than their
    frequency does (the check of the issue, smaller than `reslab bench multilabel`)."""
    from reslab.config import TrainConfig
    from reslab.data.sample import SAMPLE_PACK, write_mosaics
    from reslab.evaluate.report import run_eval
    from reslab.train.trainer import Trainer

    data = write_mosaics(SAMPLE_PACK, tmp_path / "mosaics", {"train": 1500, "val": 300, "test": 300})
    ds = load_multilabel(str(data))
    test, train = np.asarray(ds.test.labels), np.asarray(ds.train.labels)
    baseline = mean_average_precision(test, np.broadcast_to(train.mean(0), test.shape).astype(float))[0]
    cfg = TrainConfig(data=str(data), task="multilabel", model="resnet20", epochs=8, batch_size=64, lr=0.05,
                      out_dir=str(tmp_path), name="run", device="cpu")
    Trainer(cfg).fit()
    report = run_eval(cfg.run_dir / "best.safetensors", str(data), tmp_path / "eval", split="test", device="cpu")
    assert report.metrics["map"] > 1.5 * baseline and report.metrics["map"] > baseline + 0.1


@pytest.mark.slow
def test_multilabel_serving_quantisation_export_and_cli(multilabel_model, mosaic_folder, tmp_path):
    import subprocess
    import sys

    info = read_model_info(multilabel_model)
    picture = sorted((mosaic_folder / "test").glob("*.png"))[0]
    expected = Predictor.from_file(multilabel_model, backend="torch", precision="fp32").predict_files([picture])[0]
    running = RunningServer(multilabel_model, "--backend", "torch", "--precision", "fp32")
    try:
        body = running.client.post("/predict?topk=2", files={"file": picture.open("rb")}).json()
        assert body["labels"] == expected["labels"]
        assert [p["label"] for p in body["predictions"]][:2] == [p["label"] for p in expected["predictions"]][:2]
        assert all("threshold" in p and "positive" in p for p in body["predictions"])
        assert running.client.get("/info").json()["thresholds"] == pytest.approx(info.thresholds)
        meta = running.client.get(f"/v2/models/{running.client.get('/info').json()['model']}").json()
        assert meta["parameters"]["task"] == "multilabel" and meta["parameters"]["activation"] == "sigmoid"
    finally:
        assert stopped_cleanly(running.stop())
    out = subprocess.run([sys.executable, "-m", "reslab", "quantize", str(multilabel_model), "--calib-data",
                          str(mosaic_folder), "--calib-images", "100", "--out", str(tmp_path / "q.onnx"), "--force"],
                         capture_output=True, text=True, check=True).stdout
    assert "mAP" in out and "top-1" not in out
    check = subprocess.run([sys.executable, "-m", "reslab", "check-data", str(mosaic_folder)], capture_output=True,
                           text=True, check=True).stdout
    assert "most frequent pairs" in check
    # the ONNX export keeps the task and thresholds, and gives the same probabilities
    from reslab.export.run import export_model
    from reslab.formats.onnx import info_from_onnx, load_onnx

    exported = export_model(multilabel_model, "onnx", tmp_path / "m.onnx")
    onnx_info = info_from_onnx(load_onnx(exported.output), exported.output)
    assert (onnx_info.task, onnx_info.thresholds) == ("multilabel", info.thresholds)
    onnx_predictor = Predictor.from_file(exported.output, backend="onnxruntime")
    torch_probabilities = Predictor.from_file(multilabel_model, backend="torch", precision="fp32").inference(
        onnx_predictor.preprocess([picture]))
    assert np.allclose(onnx_predictor.inference(onnx_predictor.preprocess([picture])), torch_probabilities, atol=1e-5)
    # Grad-CAM of the most probable label, with its sigmoid probability
    from reslab.evaluate.explain import Explainer
    from reslab.models import load_model_file

    network, _ = load_model_file(multilabel_model)
    with Image.open(picture) as image:
        explanation = Explainer(network, info, "gradcam").explain([image.convert("RGB")])[0]
    assert explanation.class_name == expected["predictions"][0]["label"]
    assert explanation.probability == pytest.approx(expected["predictions"][0]["probability"], abs=1e-4)
