import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reslab.bench.peak import measure_gemm_peak
from reslab.bench.time_to_accuracy import time_to_targets
from reslab.cli import main


@pytest.mark.slow
def test_bench_train_runs_both_paths_on_the_same_data(cifar_folder):
    out = subprocess.run([sys.executable, "-m", "reslab", "bench", "train", "--data", str(cifar_folder),
                          "--model", "resnet20", "--images", "64", "--batch-size", "32", "--epochs", "2", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    baseline, ours, *bf16 = result["rows"]
    assert baseline["path"].startswith("baseline") and ours["path"].startswith("reslab fp32")
    assert len(bf16) == (result["bf16_left_out"] is None) and result["hardware"].startswith("CPU ")
    if bf16:  # fp32 and bf16 side by side where bf16 is native
        assert result["bf16_vs_fp32"] == bf16[0]["images_per_s"] / ours["images_per_s"]
    # and what --amp auto picks for the same run: measured where bf16 is native
    assert result["auto_choice"]["how"] in (("measured", "remembered") if bf16 else ("not native",))
    for row in (baseline, ours, *bf16):
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
    every = {"baseline", "torch", "torch-bf16", "onnxruntime", "openvino", "openvino-bf16", "onnxruntime-int8",
             "openvino-int8"}
    assert paths | set(result["left_out"]) == every and not paths & set(result["left_out"])
    assert {p for p, precision in result["precisions"].items() if precision == "bf16"} == {
        "torch-bf16", "openvino-bf16"} & paths
    for r in result["rows"]:
        assert r["p99_ms"] >= r["p50_ms"] > 0 and r["calls"] >= 9
        assert r["batch"] in (1, 4) if r["photos"] == "photos" else r["batch"] == 4
        assert abs(r["images_per_s"] - 1000 * r["batch"] / r["p50_ms"]) < 1e-6 * r["images_per_s"]
    network = result["network_rows"]
    assert {(r["path"], r["batch"]) for r in network} == {(p, b) for p in paths for b in (1, 4)}
    for stages in result["stages_ms_per_image"].values():  # the photos and their 12 MP re-encodings
        assert list(stages) == ["read", "decode", "resize/crop", "normalise", "network", "postprocess"]
        assert all(ms > 0 for ms in stages.values())
    phone, photos = result["stages_ms_per_image"]["phone 12 MP"], result["stages_ms_per_image"]["photos"]
    assert phone["decode"] > photos["decode"]  # 12 megapixels cost more to decode, even at a reduced scale
    for r in network:
        assert abs(r["fraction_of_peak"] - r["gflops"] / result["gemm_peak_gflops"]) < 1e-9
        if r["path"] == "baseline":
            assert r["speedup"] == 1.0
    assert result["auto_choice"]["model file"].startswith("auto: ")
    assert result["auto_choice"]["INT8 ONNX"].split(";")[0].endswith(" int8")  # an INT8 file runs in int8


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


def run_json(capsys, *argv: str) -> dict:
    """The command run in this process (its own code, no second interpreter start); its JSON answer."""
    main([*argv, "--json"])
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def test_each_target_is_timed_at_the_first_evaluation_that_reaches_it():
    history = [{"epoch": 1, "elapsed_s": 10.0}, {"epoch": 2, "val_top1": 0.5, "elapsed_s": 25.0},
               {"epoch": 3, "val_top1": 0.8, "elapsed_s": 38.0}, {"epoch": 4, "val_top1": 0.7, "elapsed_s": 51.0}]
    low, reached, missed = time_to_targets(history, [0.4, 0.8, 0.9])
    assert (low["reached"], low["epoch"], low["seconds"]) == (True, 2, 25.0)
    assert (reached["reached"], reached["epoch"], reached["seconds"], reached["top1"]) == (True, 3, 38.0, 0.8)
    assert (missed["reached"], missed["epoch"], missed["top1"]) == (False, 3, 0.8)  # the best, and its time


@pytest.mark.slow
def test_time_to_accuracy_times_each_target_or_reports_the_best(tmp_path, capsys):
    recipe = {**yaml.safe_load(Path("configs/cifar10-resnet20-cpu-fast.yaml").read_text()), "eval_every": 2}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))  # the CPU recipe, evaluated every second epoch
    result = run_json(capsys, "bench", "time-to-accuracy", "--config", str(tmp_path / "recipe.yaml"),
                      "--data", "samples/cifar10-sample.npz", "--epochs", "3", "--targets", "5,99.9",
                      "--device", "cpu", "--out-dir", str(tmp_path))
    epochs = result["epochs_run"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and [e["image_size"] for e in epochs] == [20, 20, 24]
    # the recipe evaluates every second epoch and after the last one
    assert epochs[0]["val_top1"] is None and None not in (epochs[1]["val_top1"], epochs[2]["val_top1"])
    assert 0 < epochs[0]["elapsed_s"] < epochs[1]["elapsed_s"] < epochs[2]["elapsed_s"]
    assert epochs[1]["elapsed_s"] >= epochs[0]["seconds"] + epochs[1]["seconds"]  # evaluation is on the clock
    low, high = result["targets"]
    assert low["reached"] and low["epoch"] == 2 and low["seconds"] == epochs[1]["elapsed_s"]
    best = max(epochs[1:], key=lambda e: e["val_top1"])
    assert not high["reached"] and high["top1"] == best["val_top1"] and high["seconds"] == best["elapsed_s"]
    assert "samples/cifar10-sample.npz" in result["data"]
    # the test split (400 images), not a holdout, is what was evaluated: its size shows in the accuracies
    assert all(round(e["val_top1"] * 400, 6).is_integer() for e in epochs[1:])


@pytest.mark.parametrize("kind", [pytest.param("train", marks=pytest.mark.slow), "infer"])
def test_mode_comparison_runs_each_mode_side_by_side(kind, capsys):
    if kind == "train":
        result = run_json(capsys, "bench", "train", "--device", "cpu", "--modes", "eager,channels_last+amp",
                          "--model", "resnet18", "--mode-batch-sizes", "4,2", "--rounds", "2", "--steps", "1")
        tables = result["tables"]
        assert [(t["image_size"], t["batch"]) for t in tables] == [(32, 4), (224, 2)]
    else:
        result = run_json(capsys, "bench", "infer", "--device", "cpu", "--modes", "eager,channels_last+amp",
                          "--gpu-models", "resnet18", "--gpu-batch", "2", "--image-size", "64", "--rounds", "2",
                          "--steps", "1")
        tables = result["tables"]
        assert [t["model"] for t in tables] == ["resnet18"]
    for table in tables:
        assert [r["mode"] for r in table["rows"]] == ["eager", "channels_last+amp"]
        eager, amp = table["rows"]
        assert eager["vs_first"] == 1.0 and amp["vs_first"] == amp["images_per_s"] / eager["images_per_s"]
        assert all(r["images_per_s"] > 0 and r["warmup_s"] > 0 for r in table["rows"])


@pytest.mark.slow
def test_bench_data_times_each_path_side_by_side(tmp_path, photos):
    folder = tmp_path / "photos"
    for c, name in (("a", "chelsea"), ("b", "camera")):
        (folder / c).mkdir(parents=True)
        (folder / c / photos[name].name).write_bytes(photos[name].read_bytes())
    out = subprocess.run([sys.executable, "-m", "reslab", "bench", "data", "--data", str(folder), "--twelve-mp", "4",
                          "--photos", str(photos["grace_hopper"]), "--batch-size", "2", "--epochs", "2",
                          "--image-size", "64", "--device", "cpu", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    rows = {r["path"]: r for r in result["rows"]}
    assert set(rows) == {"torchvision", "cpu", "pack-cpu"} and set(result["left_out"]) == {"gpu", "pack-gpu"}
    for r in rows.values():
        assert r["images"] == 3 and len(r["epochs"]) == 2 and r["images_per_s"] > 0
        assert r["vs_torchvision"] == r["images_per_s"] / rows["torchvision"]["images_per_s"]
    assert result["pack"]["bytes_after"] < result["pack"]["bytes_before"]


@pytest.mark.slow
def test_bench_train_against_raw_steps(tmp_path, photos):
    folder = tmp_path / "photos"
    for c, names in (("a", ["chelsea", "camera"]), ("b", ["grace_hopper"])):
        (folder / "train" / c).mkdir(parents=True)
        for k in range(8):
            name = names[k % len(names)]
            (folder / "train" / c / f"{name}{k}{photos[name].suffix}").write_bytes(photos[name].read_bytes())
    out = subprocess.run([sys.executable, "-m", "reslab", "bench", "train", "--data", str(folder), "--vs-steps",
                          "--model", "resnet18", "--image-size", "72", "--batch-size", "4", "--epochs", "2",
                          "--rounds", "1", "--steps", "2", "--device", "cpu", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["path"] == "cpu" and len(result["epochs"]) == 2
    assert result["ratio"] == result["trainer_images_per_s"] / result["raw_steps_images_per_s"]


def test_the_fp32_peak_is_the_fastest_of_several_libraries_products():
    peak = measure_gemm_peak()
    assert peak.gflops == max(peak.kernels.values()) == peak.kernels[peak.kernel] > 0
    assert any(k.startswith("torch.mm") for k in peak.kernels) and any(k.startswith("oneDNN") for k in peak.kernels)
    assert ("ONNX Runtime MatMul 2048x2048" in peak.kernels) == (importlib.util.find_spec("onnxruntime") is not None)
    assert peak.kernel in peak.describe()


def _flag(command: list[str], *names: str) -> str:
    return next(command[i + 1] for i, arg in enumerate(command) if arg in names)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_vs_timm_gives_both_trainers_the_same_images_model_and_run(tmp_path, precision):
    from reslab.bench.options import VsTimmBench
    from reslab.bench.vs_timm import reslab_command, timm_command
    from reslab.options import add_flags, from_args

    parser = argparse.ArgumentParser()
    add_flags(parser, VsTimmBench)
    args = from_args(parser.parse_args(["--data", str(tmp_path), "--model", "resnet34", "--image-size", "128",
                                        "--batch-size", "48", "--epochs", "4", "--workers", "3", "--precision",
                                        precision]), VsTimmBench)
    ours = reslab_command(args, seed=1, out=tmp_path / "out")
    theirs = timm_command(args, Path("train.py"), 1, tmp_path / "out", classes=7, device="cpu",
                          amp_dtype="bfloat16" if precision == "bf16" else None)
    shared = {("--data",): ("--data-dir",), ("--model",): ("--model",), ("--image-size",): ("--img-size",),
              ("--batch-size",): ("-b",), ("--epochs",): ("--epochs",), ("--workers",): ("-j",),
              ("--seed",): ("--seed",)}
    for mine, timms in shared.items():
        assert _flag(ours, *mine) == _flag(theirs, *timms)
    assert ("--amp" in theirs) == ("--amp" in ours) == (precision == "bf16")
    assert ("--no-amp" in ours) == (precision == "fp32") and _flag(theirs, "--num-classes") == "7"
    assert not {"--lr", "--warmup-epochs", "--sched", "--smoothing"} & set(ours + theirs)  # each its own defaults


def test_vs_timm_needs_the_two_splits_and_says_where_train_py_comes_from(tmp_path, monkeypatch):
    from reslab.bench.vs_timm import class_count, timm_train_script

    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(SystemExit, match="needs val/"):
        class_count(tmp_path)
    (tmp_path / "val").mkdir()
    assert class_count(tmp_path) == 1
    monkeypatch.delenv("TIMM_TRAIN", raising=False)
    if importlib.util.find_spec("timm") is None:
        with pytest.raises(SystemExit, match=r"pip install 'reslab\[bench\]'"):
            timm_train_script(None)
        return
    with pytest.raises(SystemExit, match="git clone --branch v.* pytorch-image-models"):
        timm_train_script(None)
    with pytest.raises(SystemExit, match="no such file"):
        timm_train_script(str(tmp_path / "train.py"))
