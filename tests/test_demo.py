import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_trains_evaluates_and_predicts_far_above_chance(tmp_path):
    for name in ("samples", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    out = subprocess.run([sys.executable, "-m", "reslab.demo"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    top1 = float(re.search(r"Test top-1 ([\d.]+)% on 400 held-out images", out.stdout)[1])
    assert top1 >= 40.0  # chance is 10%
    run = tmp_path / ".demo" / "runs" / "demo"
    for picture in ("curves.png", "eval-test/confusion.png", "eval-test/worst.png", "eval-test/feature_maps.png"):
        assert (run / picture).stat().st_size > 10_000, picture
    assert "$ reslab predict" in out.stdout and "ERROR" not in out.stdout
    assert (run / "best.onnx").is_file() and (run / "best-int8.onnx").is_file()
    drop = float(re.search(r"top-1 drop (-?[\d.]+) points", out.stdout)[1])
    assert drop <= 1.0
