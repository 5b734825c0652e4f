import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_train_runs_both_paths_on_the_same_data(cifar_folder):
    out = subprocess.run([sys.executable, "-m", "reslab", "bench", "train", "--data", str(cifar_folder),
                          "--model", "resnet20", "--images", "64", "--batch-size", "32", "--epochs", "2", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    baseline, ours = result["rows"]
    assert baseline["path"].startswith("baseline") and ours["path"].startswith("reslab")
    for row in (baseline, ours):
        assert len(row["epochs"]) == 2 and row["images_per_s"] > 0
        assert row["fraction_of_peak"] == row["images_per_s"] * result["train_gflop_per_image"] / result[
            "gemm_peak_gflops"]
    assert result["speedup"] == ours["images_per_s"] / baseline["images_per_s"]
    assert result["gemm_peak_gflops"] > 1


@pytest.mark.slow
def test_bench_infer_times_every_backend_on_real_images(photos):
    out = subprocess.run([sys.executable, "-m", "reslab", "bench", "infer", "--images", *map(str, photos.values()),
                          "--image-size", "64", "--batch-sizes", "1,4", "--seconds", "0.2", "--json"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    paths = {r["path"] for r in result["rows"]}
    assert paths == {"baseline", "torch", "onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8"}
    for r in result["rows"]:
        assert r["batch"] in (1, 4) and r["p99_ms"] >= r["p50_ms"] > 0 and r["calls"] >= 9
        assert abs(r["images_per_s"] - 1000 * r["batch"] / r["p50_ms"]) < 1e-6 * r["images_per_s"]
    network = result["network_rows"]
    assert {(r["path"], r["batch"]) for r in network} == {(p, b) for p in paths for b in (1, 4)}
    for r in network:
        assert abs(r["fraction_of_peak"] - r["gflops"] / result["gemm_peak_gflops"]) < 1e-9
        if r["path"] == "baseline":
            assert r["speedup"] == 1.0
    assert result["auto_backend"]["model file"] in ("torch", "onnxruntime", "openvino")
    assert result["auto_backend"]["INT8 ONNX"] in ("onnxruntime", "openvino")


@pytest.mark.slow
def test_bench_serve_loads_both_servers_without_errors(trained_model, photos):
    out = subprocess.run([sys.executable, "-m", "reslab", "bench", "serve", "--model-file", str(trained_model),
                          "--images", *map(str, photos.values()), "--concurrency", "1,4", "--requests", "24",
                          "--port", "8793", "--json"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["offline_images_per_s"] > 0 and result["errors"] == 0
    for side in ("reslab", "baseline"):
        rows = result[side]
        assert [r["concurrency"] for r in rows] == [1, 4]
        for r in rows:
            assert r["requests"] == 24 and r["statuses"] == {"200": 24} and r["p99_ms"] >= r["p50_ms"] > 0
    top = result["reslab"][-1]
    assert result["fraction_of_offline_at_max_concurrency"] == top["requests_per_s"] / result["offline_images_per_s"]
