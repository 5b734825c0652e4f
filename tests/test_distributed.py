"""Multi-process training under torchrun with Gloo on this CPU: two processes train the same model as
one process accumulating the same global batch, evaluate every val image once, and resume; and so for clips."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reslab.config import TrainConfig
from reslab.data.sampling import shard_size
from reslab.evaluate.report import run_eval
from reslab.train.distributed import Runtime
from reslab.train.trainer import Trainer

from .order import epoch_order
from .test_train import read_metrics
from .videos import motion_clips, needs_ffmpeg

PER_RANK_BATCH = 10  # 600 training images: 30 global batches of 20, no tail
RECIPE = dict(model="resnet20", lr=0.05, schedule="onecycle", label_smoothing=0.1, seed=0, device="cpu",
              ema=True, ema_decay=0.9)


def train_command(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
             for k, v in RECIPE.items()]
    # --no-amp: compared within fp32's tolerance, on AMX CPUs too (where bf16 would be the default)
    return ["-m", "reslab", "train", f"--data={data}", f"--out-dir={out}", "--name=run", f"--epochs={epochs}",
            f"--batch-size={PER_RANK_BATCH}", "--no-amp", *flags, *extra]


def torchrun(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            *train_command(data, out, epochs, *extra)]


def one_process_reference(data: Path, out: Path, epochs: int, *extra: str) -> Path:
    """One process, micro-batches of the per-rank size, accumulated into the same global batch;
    one thread, as each torchrun worker (a convolution's gradient sums in another order on two)."""
    subprocess.run([sys.executable, *train_command(data, out, epochs, "--accumulate=2", *extra)], env=env(),
                   check=True, capture_output=True)
    return out / "run"


def assert_same_weights(a: Path, b: Path) -> None:
    """The parameters agree within float tolerance (all-reducing gradients sums in another order).
    BatchNorm's running statistics are not compared: one process folds both micro-batches into them
    in turn, two processes each fold in their own and average, so they are other estimates."""
    one = torch.load(a / "last.pt", weights_only=True)["model"]
    two = torch.load(b / "last.pt", weights_only=True)["model"]
    assert one.keys() == two.keys()
    parameters = [k for k in one if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(parameters) == 59  # ResNet-20: 19 convs, 19 BatchNorms (weight, bias), fc (weight, bias)
    for key in parameters:
        value = one[key]
        assert torch.allclose(value, two[key], rtol=1e-3, atol=1e-4), (key, (value - two[key]).abs().max())


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def interrupted(command: list[str], out: Path) -> None:
    """Start ``command``, kill -9 its whole process group once the first epoch is written; it must not have
    finished."""
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    while not (out / "run" / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and every worker, as a lost machine would
    process.wait()
    assert len(read_metrics(out / "run")) < 4, "the run finished before it could be killed"


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [24, 25, 37, 60])
def test_global_batches_do_not_depend_on_the_number_of_processes(world_size, n):
    batch = 3
    shards = [epoch_order(n, 7, 1, True, rank, world_size, batch).tolist() for rank in range(world_size)]
    # evaluation (no drop_last): every sample exactly once, in shards of the announced sizes
    assert sorted(sum(shards, [])) == list(range(n))
    assert [len(s) for s in shards] == [shard_size(n, r, world_size, batch) for r in range(world_size)]
    # step k's global batch is the k-th slice of one process's order, whatever the world size
    order = epoch_order(n, 7, 1, True).tolist()
    for step in range(n // (batch * world_size)):
        together = sum((s[step * batch : (step + 1) * batch] for s in shards), [])
        assert together == order[step * batch * world_size : (step + 1) * batch * world_size]
    trained = [epoch_order(n, 7, 1, True, rank, world_size, batch, drop_last=True) for rank in range(world_size)]
    assert {len(t) for t in trained} == {n // (batch * world_size) * batch}


@pytest.mark.slow
def test_two_processes_train_the_model_one_process_trains(cifar_folder, tmp_path):
    reference = one_process_reference(cifar_folder, tmp_path / "one", epochs=2)
    done = subprocess.run(torchrun(cifar_folder, tmp_path / "two", 2), env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "two" / "run"
    assert_same_weights(reference, run)
    one, two = read_metrics(reference), read_metrics(run)
    for a, b in zip(one, two):  # the whole dataset's figures, not rank 0's half
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-3)
        assert float(a["train_top1"]) == pytest.approx(float(b["train_top1"]), abs=2 / 600)
    assert done.stdout.count("epoch 1/2") == 1, "only rank 0 reports"
    # the val figures count each of the 120 val images once: the saved model, evaluated in one
    # process, gives the top-1 the two processes reported for its epoch
    best = max(two, key=lambda r: float(r["val_top1"]))
    report = run_eval(run / "best.safetensors", str(cifar_folder), tmp_path / "eval", split="val", device="cpu")
    assert report.metrics["count"] == 120
    assert report.metrics["top1"] == pytest.approx(float(best["val_top1"]), abs=1e-9)
    assert report.metrics["loss"] == pytest.approx(float(best["val_loss"]), rel=1e-4)


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes(cifar_folder, tmp_path):
    reference = one_process_reference(cifar_folder, tmp_path / "one", epochs=4)
    out = tmp_path / "two"
    interrupted(torchrun(cifar_folder, out, 4), out)
    done = subprocess.run(torchrun(cifar_folder, out, 4, "--resume"), env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(read_metrics(out / "run")) == 4
    assert_same_weights(reference, out / "run")


# a video run: 40 training clips (20 photos panned left and right), 4 frames each: 2 global batches of 20
VIDEO = ("--task=video", "--model=resnet20-3d", "--clip-frames=4", "--frame-stride=1", "--eval-clips=1", "--no-flip")


@pytest.fixture(scope="module")
def motion_folder(tmp_path_factory) -> Path:
    return motion_clips(tmp_path_factory.mktemp("motion"), train=20, val=6, test=2, frames=6)


@needs_ffmpeg
@pytest.mark.slow
def test_two_processes_train_a_video_model_as_one_and_resume_after_kill_9(motion_folder, tmp_path):
    """Clips are drawn by (seed, epoch, index), so the two ranks' shards of clips are one process's global
    batches; a killed two-process video run resumes to the same weights."""
    reference = one_process_reference(motion_folder, tmp_path / "one", 4, *VIDEO)
    out = tmp_path / "two"
    interrupted(torchrun(motion_folder, out, 4, *VIDEO), out)
    done = subprocess.run(torchrun(motion_folder, out, 4, *VIDEO, "--resume"), env=env(), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = out / "run"
    assert len(read_metrics(run)) == 4
    assert_same_weights(reference, run)
    for a, b in zip(read_metrics(reference), read_metrics(run)):  # both ranks' clips in the training loss
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-3)
    # each of the 12 val videos counted once (its middle clip): the saved model, evaluated in one process, gives
    # what the two processes reported for its epoch
    best = max(read_metrics(run), key=lambda r: float(r["val_top1"]))
    report = run_eval(run / "best.safetensors", str(motion_folder), tmp_path / "eval", split="val", device="cpu")
    assert report.metrics["count"] == 12 and report.metrics["clips"] == 12
    assert report.metrics["top1"] == pytest.approx(float(best["val_top1"]), abs=1e-9)
    assert report.metrics["loss"] == pytest.approx(float(best["val_loss"]), rel=1e-4)


def test_sync_bn_on_cpu_is_refused_with_the_reason(tiny_folder, tmp_path):
    cfg = TrainConfig(data=str(tiny_folder), out_dir=str(tmp_path), name="run", epochs=1, batch_size=8, sync_bn=True,
                      **RECIPE)
    with pytest.raises(ValueError, match="sync_bn needs GPUs"):  # rank 0 of two, as torchrun would start it
        Trainer(cfg, Runtime(torch.device("cpu"), rank=0, world_size=2))
    assert not (tmp_path / "run").exists()
