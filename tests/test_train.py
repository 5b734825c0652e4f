import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reslab.config import TrainConfig
from reslab.hardware import cpu_info
from reslab.models import create_model, load_model_file
from reslab.train.optim import build_scheduler, lr_factor, parameter_groups
from reslab.train.trainer import RunFolderError, Trainer

from .images import write_broken_images


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    options = dict(data=str(data), model="resnet20", epochs=2, batch_size=32, lr=0.05, out_dir=str(out),
                   name="run", schedule="onecycle", label_smoothing=0.1, seed=0, device="cpu",
                   amp=False)  # fp32 on every CPU: AMX ones would default to bf16
    options.update(overrides)
    return TrainConfig(**options)


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_training_on_real_images_beats_chance(cifar_folder, tmp_path):
    summary = Trainer(tiny_config(cifar_folder, tmp_path, epochs=8, lr=0.1)).fit()
    run = Path(summary["run_dir"])
    rows = read_metrics(run)
    assert len(rows) == 8
    # 10 classes: chance is 0.10. Measured over seeds 0-4 on an AVX512-BF16 Xeon, natively and as an AVX2 CPU
    # (ONEDNN_MAX_CPU_ISA=AVX2): 0.34-0.43, mean 0.38, spread 0.03; 0.25 is four spreads below the mean
    assert summary["best_val_top1"] >= 0.25
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    for name in ("config.yaml", "metrics.csv", "last.pt", "best.safetensors", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())


def test_best_model_file_is_self_describing(cifar_folder, tmp_path):
    trainer = Trainer(tiny_config(cifar_folder, tmp_path, epochs=1))
    trainer.fit()
    model, info = load_model_file(tmp_path / "run" / "best.safetensors")
    assert info.classes == sorted(p.name for p in (cifar_folder / "train").iterdir())
    assert info.spec.arch == "resnet20" and info.preprocess.image_size == 32
    assert info.training["epochs"] == 1 and info.training["dataset"] == cifar_folder.name
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), trainer.model.eval()(x), atol=1e-5)


def test_an_existing_run_is_not_overwritten(tiny_folder, tmp_path):
    Trainer(tiny_config(tiny_folder, tmp_path, epochs=1)).fit()
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(RunFolderError, match="--resume"):
        Trainer(tiny_config(tiny_folder, tmp_path, epochs=1))
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def _train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reslab", "train", "--data", str(data), "--model", "resnet20", "--epochs", "3",
            "--batch-size", "32", "--lr", "0.05", "--schedule", "cosine", "--warmup-epochs", "1", "--ema",
            "--ema-decay", "0.9", "--dropout", "0.1", "--out-dir", str(out), "--name", "run", *extra]


@pytest.mark.slow
# fp32, bf16 autocast (native or not, still exact), and what --amp auto measured (remembered: both runs agree)
@pytest.mark.parametrize("amp", ["--no-amp", "--amp", "--amp=auto"])
def test_resume_after_kill_9_equals_an_uninterrupted_run(cifar_folder, tmp_path, amp):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(_train_command(cifar_folder, tmp_path / "straight", amp), check=True, env=env, capture_output=True)

    interrupted = tmp_path / "killed"
    process = subprocess.Popen(_train_command(cifar_folder, interrupted, amp), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (interrupted / "run" / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well into the second epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(read_metrics(interrupted / "run")) < 3, "the run finished before it could be killed"
    subprocess.run([sys.executable, "-m", "reslab", "train", "--resume", "--out-dir", str(interrupted),
                    "--name", "run"], check=True, env=env, capture_output=True)

    straight = torch.load(tmp_path / "straight" / "run" / "last.pt", weights_only=True)
    resumed = torch.load(interrupted / "run" / "last.pt", weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for key, value in straight["ema"].items():
        assert torch.equal(value, resumed["ema"][key]), key
    figures = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr")
    a, b = read_metrics(tmp_path / "straight" / "run"), read_metrics(interrupted / "run")
    assert [[r[k] for k in figures] for r in a] == [[r[k] for k in figures] for r in b]
    best_a = load_file(str(tmp_path / "straight" / "run" / "best.safetensors"))
    best_b = load_file(str(interrupted / "run" / "best.safetensors"))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_broken_files_are_skipped_and_counted_when_reading_from_disk(cifar_folder, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(cifar_folder, data)
    broken = write_broken_images(data / "train" / "cat")
    # 603 images in 9 batches of 67: every file is read in the first epoch
    cfg = tiny_config(data, tmp_path / "runs", epochs=1, in_memory=False, workers=0, batch_size=67)
    with pytest.warns(UserWarning, match="skipping unreadable image") as caught:
        summary = Trainer(cfg).fit()
    messages = " ".join(str(w.message) for w in caught)
    assert "empty.png: empty file" in messages and "notes.jpg: not an image" in messages
    assert summary["skipped_images"] == 3
    assert sorted(summary["skipped_files"]) == sorted(str(p) for p in broken.values())


def test_early_stopping_stops_when_val_stops_improving(tiny_folder, tmp_path):
    # lr 0 and frozen BatchNorm statistics: the model never changes, so val top-1 never improves
    cfg = tiny_config(tiny_folder, tmp_path, epochs=6, lr=0.0, schedule="constant", patience=2,
                      freeze=["all-but-head"])
    summary = Trainer(cfg).fit()
    assert summary["epochs"] == 3 and summary["best_epoch"] == 1


def test_amp_accumulation_clipping_and_adamw_run(tiny_folder, tmp_path):
    cfg = tiny_config(tiny_folder, tmp_path, epochs=1, amp=True, accumulate=3, clip_grad=1.0, optimizer="adamw",
                      lr=1e-3, weight_decay=0.05, schedule="cosine", ema=True)
    trainer = Trainer(cfg)
    trainer.fit()
    batches = len(trainer.data.train)
    assert trainer.scheduler.last_epoch == -(-batches // 3)  # one scheduler step per optimizer step
    assert torch.isfinite(torch.tensor(trainer.history[0]["train_loss"]))


def test_no_weight_decay_on_norms_and_biases():
    model = create_model("resnet20", num_classes=10)
    decay, no_decay = parameter_groups(model, 5e-4, decay_norm_and_bias=False, lr=0.1)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0
    assert len(parameter_groups(model, 5e-4, decay_norm_and_bias=True, lr=0.1)) == 1


def test_schedules_with_warmup():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    f = lr_factor(cfg, steps_per_epoch=10)
    assert f(0) == pytest.approx(0.05) and f(19) == pytest.approx(1.0)
    assert f(20) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(99) < 0.01
    step = lr_factor(TrainConfig(epochs=10, schedule="step", step_size=3, gamma=0.1, warmup_epochs=0), 10)
    assert [step(s) for s in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])
    multi = lr_factor(TrainConfig(epochs=10, schedule="multistep", milestones=[5, 8], warmup_epochs=0), 10)
    assert [multi(s) for s in (49, 50, 80)] == pytest.approx([1, 0.1, 0.01])
    model = create_model("resnet20", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    onecycle = build_scheduler(optimizer, TrainConfig(epochs=4, lr=0.2, schedule="onecycle", warmup_epochs=1), 10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        onecycle.step()
    assert max(lrs) == pytest.approx(0.2, rel=1e-3) and lrs.index(max(lrs)) in (9, 10) and lrs[-1] < 0.01


def test_grayscale_imagenet_preset_from_disk(tiny_folder, tmp_path):
    """The other data path: per-image transforms in a DataLoader, RandomResizedCrop, RandAugment,
    random erasing, one input channel, the ImageNet stem."""
    cfg = tiny_config(tiny_folder, tmp_path, model="resnet18", epochs=1, image_size=72, preset="imagenet",
                      in_memory=False, workers=2, in_chans=1, auto_augment="randaugment", random_erasing=0.25,
                      stem="imagenet", batch_size=40)
    trainer = Trainer(cfg)
    trainer.fit()
    _, info = load_model_file(tmp_path / "run" / "best.safetensors")
    assert info.spec.in_chans == 1 and len(info.preprocess.mean) == 1
    assert (info.preprocess.image_size, info.preprocess.resize_size) == (72, 82)  # 256/224 of the size
    assert trainer.model.conv1.weight.shape == (64, 1, 7, 7)


def test_progressive_resizing_and_flip_tta_evaluation(tiny_folder, tmp_path):
    from reslab.evaluate.report import run_eval

    Trainer(tiny_config(tiny_folder, tmp_path, epochs=3, batch_size=16, progressive_sizes=[16, 24], tta=True)).fit()
    rows = read_metrics(tmp_path / "run")
    assert [int(r["image_size"]) for r in rows] == [16, 24, 32]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= sum(float(r["seconds"]) for r in rows)
    best = max(rows, key=lambda r: float(r["val_top1"]))
    assert load_model_file(tmp_path / "run" / "best.safetensors")[1].preprocess.image_size == 32
    # the reported figures are those of flip TTA: evaluating the saved model with TTA gives them again
    report = run_eval(tmp_path / "run" / "best.safetensors", str(tiny_folder), tmp_path / "eval", tta=True)
    assert report.metrics["top1"] == pytest.approx(float(best["val_top1"]))
    assert report.metrics["loss"] == pytest.approx(float(best["val_loss"]), rel=1e-5)


def test_a_progressive_size_above_the_image_size_is_refused(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="progressive_sizes.*40"):
        Trainer(tiny_config(tiny_folder, tmp_path, progressive_sizes=[40]))
    assert not (tmp_path / "run").exists()


def test_an_fp32_run_records_its_precision_and_hardware(tiny_folder, tmp_path):
    Trainer(tiny_config(tiny_folder, tmp_path, epochs=1, amp=False)).fit()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["amp"] is False
    assert summary["precision_choice"]["how"] == "asked"
    assert summary["hardware"]["cpu"]["isa"] == cpu_info().isa
    _, info = load_model_file(tmp_path / "run" / "best.safetensors")
    assert info.training["precision"] == "fp32" and info.training["hardware"]["cpu"]["level"] == cpu_info().level


def test_eval_every_skips_evaluations_but_always_evaluates_the_last_epoch(tiny_folder, tmp_path):
    summary = Trainer(tiny_config(tiny_folder, tmp_path, epochs=3, batch_size=16, eval_every=2)).fit()
    rows = read_metrics(tmp_path / "run")
    assert [r["val_top1"] != "" for r in rows] == [False, True, True]
    assert summary["best_epoch"] in (2, 3) and (tmp_path / "run" / "curves.png").stat().st_size > 0
