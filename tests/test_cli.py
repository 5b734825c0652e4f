import json
import subprocess
import sys

from reslab.cli import main


def reslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reslab", *args], capture_output=True, text=True, timeout=300)


def test_models_lists_every_architecture_with_counts(capsys):
    main(["models", "--json"])  # in-process: the command's own code, without a second interpreter start
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 33  # 10 image networks, their -3d and -frames video twins, torchvision's 3 video ResNets
    # torchvision's published 40.70 GFLOPS (MACs) of a 16-frame 112 px clip; its 33.4 M parameters at 400 classes
    assert round(rows["r3d_18"]["macs"] / 1e9, 1) == 40.7 and rows["r3d_18"]["frames"] == 16
    assert rows["r3d_18"]["params"] - 600 * 513 == 33_371_472
    assert rows["resnet50"]["params"] == 25_557_032 and round(rows["resnet50"]["macs"] / 1e9, 2) == 4.09
    assert rows["resnet20"]["params"] == 269_722 and rows["resnet20"]["image_size"] == 32
    main(["models"])
    table = capsys.readouterr().out
    assert "resnet152" in table and "60,192,808" in table


def test_check_data_prints_counts_and_problems(cifar_folder):
    out = reslab("check-data", str(cifar_folder))
    assert out.returncode == 0, out.stderr
    assert "10 classes" in out.stdout and "train: 600 images" in out.stdout and "unreadable: 0 files" in out.stdout


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    out = reslab("train", "--resume", "--name", "nothing", "--out-dir", str(tmp_path))
    assert out.returncode == 2 and "no run to resume" in out.stderr
