"""reslab predict-batch: input listing, the Parquet parts and resume, the rows of a batch; on a real local Ray
instance (slow): the same answers as reslab predict, two nodes, and a worker killed mid-job."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reslab.cli import main
from reslab.formats import model_digest
from reslab.infer.predictor import Predictor
from reslab.scale.inputs import list_inputs
from reslab.scale.parts import done_paths, remove_strays, schema, write_part
from reslab.scale.rows import BatchRows

from .test_distributed import env


def test_inputs_are_a_folder_a_list_or_a_uri_each_once(cifar_folder, tmp_path):
    folder = cifar_folder / "test"
    images = sorted(str(p) for p in folder.rglob("*.jpg"))
    assert list_inputs(str(folder)) == images
    assert list_inputs(f"file://{folder}") == images  # pyarrow's filesystems: s3://, gs://, hdfs:// alike
    (tmp_path / "list.txt").write_text(f"# two of them, one twice\n{images[3]}\n\n{images[1]}\n{images[3]}\n")
    assert list_inputs(str(tmp_path / "list.txt")) == [images[3], images[1]]
    pq.write_table(pa.table({"path": images[:5], "other": list(range(5))}), tmp_path / "list.parquet")
    assert list_inputs(str(tmp_path / "list.parquet")) == images[:5]
    pq.write_table(pa.table({"file": images[:5]}), tmp_path / "wrong.parquet")
    with pytest.raises(ValueError, match="needs a 'path' column, found file"):
        list_inputs(str(tmp_path / "wrong.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        list_inputs(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no such file or folder"):
        list_inputs(str(tmp_path / "absent"))


def test_rows_are_reslab_predict_s_answers_and_errors(trained_model, cifar_folder, tmp_path):
    files = sorted((cifar_folder / "test").rglob("*.jpg"))[:12]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [str(p) for p in files[:6]] + [str(broken)] + [str(p) for p in files[6:]]
    rows = BatchRows(trained_model, "resnet20", "v1", backend="onnxruntime", topk=3, embeddings=True)
    table = rows.table(paths, [Path(p).read_bytes() for p in paths])
    assert table.schema == schema(64) and table.column("path").to_pylist() == paths
    expected = Predictor.from_file(trained_model, backend="onnxruntime").predict_files(paths, topk=3)
    for row, answer in zip(table.to_pylist(), expected):
        if "error" in answer:
            assert row["labels"] is None and row["embedding"] is None and "not an image" in row["error"]
            continue
        assert row["error"] is None and row["predicted"] is None  # one class per image: no labels over thresholds
        assert row["labels"] == [p["label"] for p in answer["predictions"]]
        assert np.allclose(row["probabilities"], [p["probability"] for p in answer["predictions"]], atol=1e-6)
        assert len(row["embedding"]) == 64 and (row["model"], row["version"]) == ("resnet20", "v1")


def test_parts_are_whole_and_say_what_is_done(tmp_path):
    table = pa.table({"path": ["a", "b"], "error": [None, "x"]})
    write_part(tmp_path, table)
    write_part(tmp_path, pa.table({"path": ["c"], "error": [None]}))
    (tmp_path / ".part-0123.parquet.tmp-99").write_bytes(b"cut short by kill -9")
    assert done_paths(tmp_path) == {"a", "b", "c"}
    remove_strays(tmp_path)
    assert sorted(p.name.startswith("part-") for p in tmp_path.iterdir()) == [True, True]


def test_a_file_in_place_of_the_output_folder_is_refused(trained_model, cifar_folder, tmp_path, capsys):
    (tmp_path / "out.parquet").write_bytes(b"someone's file")
    with pytest.raises(SystemExit):
        main(["predict-batch", str(trained_model), str(cifar_folder / "test"), "--out", str(tmp_path / "out.parquet")])
    assert "is not a folder" in capsys.readouterr().err
    assert (tmp_path / "out.parquet").read_bytes() == b"someone's file"


def test_without_ray_one_line_says_how_to_install_it(trained_model, cifar_folder, tmp_path):
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["ray"] = None\n')
    run = subprocess.run([sys.executable, "-m", "reslab", "predict-batch", str(trained_model),
                          str(cifar_folder / "test"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == ("reslab predict-batch: error: this needs ray, which is not "
                                                    "installed: pip install 'reslab[ray]'")


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    """The whole shipped sample as files: 4,000 real JPEGs, enough for a job to be caught mid-way."""
    from reslab.data.sample import materialize

    from .conftest import SAMPLES

    return materialize(SAMPLES / "cifar10-sample.npz", tmp_path_factory.mktemp("many"),
                       per_class={"train": 300, "val": 60, "test": 40})


def predict_batch_command(model: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reslab", "predict-batch", str(model), str(images), "--out", str(out), "--json",
            *extra]


def report_of(stdout: str) -> dict:
    """The --json report among Ray's own lines about a dead worker, which it may print before or after it."""
    start = stdout.rindex("\n{\n") + 1 if not stdout.startswith("{\n") else 0
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def rows_of(out: Path) -> list[dict]:
    return pq.read_table(out).to_pylist()


@pytest.mark.slow
def test_on_local_ray_every_image_is_answered_once_as_reslab_predict_answers(trained_model, cifar_folder, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(cifar_folder / "test", images)
    (images / "airplane" / "zz-broken.jpg").write_bytes(b"not a jpeg")
    run = subprocess.run(predict_batch_command(trained_model, images, tmp_path / "out", "--workers", "2",
                                               "--backend", "onnxruntime", "--batch-size", "16"),
                         capture_output=True, text=True, env=env(), check=True)
    report = report_of(run.stdout)
    expected = Predictor.from_file(trained_model, backend="onnxruntime").predict_files(list_inputs(str(images)))
    rows = {row["path"]: row for row in rows_of(tmp_path / "out")}
    assert len(rows) == len(expected) == report["images"] == 101 and report["errors"] == 1
    for answer in expected:
        row = rows[answer["file"]]
        if "error" in answer:
            assert row["error"] == answer["error"]
            continue
        assert row["labels"] == [p["label"] for p in answer["predictions"]]
        assert np.allclose(row["probabilities"], [p["probability"] for p in answer["predictions"]], atol=1e-6)
        assert row["version"] == model_digest(trained_model, length=12)
    again = report_of(subprocess.run(predict_batch_command(trained_model, images, tmp_path / "out"),
                                      capture_output=True, text=True, env=env(), check=True).stdout)
    assert again["images"] == 0 and again["skipped"] == 101 and len(rows_of(tmp_path / "out")) == 101
    (images / "dog" / "new.jpg").write_bytes(sorted((images / "dog").iterdir())[0].read_bytes())  # one more since
    third = report_of(subprocess.run(predict_batch_command(trained_model, images, tmp_path / "out"),
                                      capture_output=True, text=True, env=env(), check=True).stdout)
    assert third["images"] == 1 and len(rows_of(tmp_path / "out")) == 102


def _workers() -> list[int]:
    """The process ids of predict-batch's Ray actors (their process title names the callable class)."""
    found = subprocess.run(["pgrep", "-f", "MapBatches\\(BatchPredictor\\)"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_and_repeats_nothing(trained_model, many_images, tmp_path):
    out = tmp_path / "out"
    job = subprocess.Popen(predict_batch_command(trained_model, many_images, out, "--workers", "2", "--backend",
                                                 "torch", "--batch-size", "8", "--threads-per-worker", "1"),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    deadline = time.time() + 180
    while len(_workers()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # both workers well into their batches
    victim = _workers()[0]
    os.kill(victim, signal.SIGKILL)
    assert job.poll() is None, "the job finished before a worker could be killed"
    stdout, _ = job.communicate(timeout=600)
    assert job.returncode == 0
    report = report_of(stdout)
    paths = [row["path"] for row in rows_of(out)]
    assert len(paths) == len(set(paths)) == report["images"] == 4000  # every input, once
    assert set(paths) == set(list_inputs(str(many_images)))
    assert report["errors"] == 0  # the killed worker's batches were retried, not given up
