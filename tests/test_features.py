"""Features without the classifier: the kNN classifier of self-supervised benchmarks, `reslab probe` and
`reslab embed`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from reslab.features.knn import knn_top1
from reslab.features.probe import run_probe

pytest.importorskip("lightly")


def test_knn_votes_by_cosine_similarity_weighted_by_the_temperature():
    # the test point lies along x: one training point of class 0 close to it, two of class 1 further off
    train = np.array([[1.0, 0.05], [1.0, 0.6], [1.0, -0.6], [-1.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 2])
    test, truth = np.array([[3.0, 0.0]], dtype=np.float32), np.array([0])  # the norm does not count: cosine
    # a cold vote: the nearest neighbour's weight exp(0.999 / t) outweighs both others' (exp(0.857 / t) each)
    assert knn_top1(train, labels, test, truth, 3, k=3, temperature=0.05) == 1.0
    # a hot vote: every weight near 1, so two neighbours outvote one
    assert knn_top1(train, labels, test, truth, 3, k=3, temperature=100.0) == 0.0
    # one neighbour: the nearest alone
    assert knn_top1(train, labels, test, truth, 3, k=1, temperature=100.0) == 1.0
    assert knn_top1(train, labels, -test, np.array([2]), 3, k=1) == 1.0
    with pytest.raises(ValueError, match="k is at least 1 and the temperature positive"):
        knn_top1(train, labels, test, truth, 3, k=0)


def test_probe_of_a_trained_model_is_far_above_chance(trained_model, tiny_folder, tmp_path):
    """The demo model's features separate CIFAR-10's classes (its own top-1 is about 0.65; chance: 0.1)."""
    report = run_probe(trained_model, str(tiny_folder), torch.device("cpu"), k=20)
    assert report.split == "test" and report.features == 64
    assert (report.train_images, report.test_images) == (160, 40)
    assert report.knn_top1 >= 0.35 and report.linear_top1 >= 0.35, report
    assert report.knn_k == 20 and report.linear_c in (0.01, 0.1, 1.0, 10.0)
    assert "kNN (k=20, cosine" in report.text() and json.loads(report.to_json())["linear_top1"] == report.linear_top1


def test_embed_writes_what_the_classifier_reads(trained_model, photos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reslab.infer.predictor import Predictor
    from reslab.models import load_model_file

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "emb.parquet"
    done = subprocess.run([sys.executable, "-m", "reslab", "embed", str(trained_model), str(photos["chelsea"]),
                           str(photos["grace_hopper"]), str(broken), "--out", str(out), "--device", "cpu", "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["images"] == 2 and report["dimension"] == 64 and report["failed"][0]["file"] == str(broken)
    table = pq.read_table(out)
    assert table.column_names == ["path", "embedding", "error", "model", "version"]
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 64 and kind.value_type == pa.float32()
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [str(broken), str(photos["chelsea"]), str(photos["grace_hopper"])]
    assert rows[0]["embedding"] is None and "broken.jpg" in rows[0]["error"]
    assert {r["model"] for r in rows} == {"resnet20"} and len(rows[1]["version"]) == 12
    # the network's own head on the embedding gives the predictor's probabilities
    network, _ = load_model_file(trained_model)
    embedded = torch.tensor([rows[1]["embedding"], rows[2]["embedding"]])
    with torch.no_grad():
        probabilities = network.fc(embedded).softmax(1)
    answers = Predictor.from_file(trained_model, backend="torch", precision="fp32").predict_files(
        [photos["chelsea"], photos["grace_hopper"]], topk=1)
    for row, answer in zip(probabilities, answers):
        top = answer["predictions"][0]
        assert network_label(trained_model, int(row.argmax())) == top["label"]
        assert float(row.max()) == pytest.approx(top["probability"], abs=1e-5)


def network_label(model_file, index: int) -> str:
    from reslab.modelfile import read_model_info

    return read_model_info(model_file).classes[index]
