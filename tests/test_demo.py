import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_trains_evaluates_predicts_exports_and_serves(tmp_path):
    for name in ("samples", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    process = subprocess.Popen([sys.executable, "-m", "reslab.demo"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # the demo ends by serving its web page: read until it says where
        lines.append(line)
        if line.startswith("Web page:"):
            break
    url = re.search(r"http://\S+/", lines[-1])
    assert url, "".join(lines[-40:])
    page = None
    for _ in range(240):
        try:
            page = httpx.get(url[0], timeout=2)
            if httpx.get(url[0] + "readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    ready = httpx.get(url[0] + "readyz", timeout=2).status_code
    process.terminate()
    process.wait(timeout=60)
    assert page is not None and page.status_code == 200 and ready == 200
    stdout = "".join(lines)
    top1 = float(re.search(r"Test top-1 ([\d.]+)% on 400 held-out images", stdout)[1])
    assert top1 >= 40.0  # chance is 10%
    run = tmp_path / ".demo" / "runs" / "demo"
    for picture in ("curves.png", "eval-test/confusion.png", "eval-test/worst.png", "eval-test/feature_maps.png"):
        assert (run / picture).stat().st_size > 10_000, picture
    assert "$ reslab predict" in stdout and "ERROR" not in stdout
    assert (run / "best.onnx").is_file() and (run / "best-int8.onnx").is_file()
    drop = float(re.search(r"top-1 drop (-?[\d.]+) points", stdout)[1])
    assert drop <= 1.0
