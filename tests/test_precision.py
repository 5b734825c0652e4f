"""Precision is explicit, refused where the hardware lacks it, checked against fp32 where it runs, and
``auto`` never picks a precision that failed (or had no) check. Tolerances come from ``reslab.precision``."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reslab.cli import main
from reslab.export.run import export_model
from reslab.hardware import cpu_info
from reslab.infer.predictor import Predictor
from reslab.infer.reference import default_images, reference_batch
from reslab.infer.selection import load_backend
from reslab.modelfile import read_model_info, save_model_file
from reslab.models import load_model_file
from reslab.precision import FP32_RTOL, VerificationError, bf16_rtol

NATIVE_BF16 = cpu_info().native_bf16
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16")


def test_tolerances_follow_the_arithmetic():
    assert FP32_RTOL == 1e-3
    assert bf16_rtol(20) == pytest.approx(3 * 20**0.5 * 2**-8)  # ResNet-20: 5.2% of the largest logit
    assert bf16_rtol(50) > bf16_rtol(20)  # deeper networks round more times


def test_fp32_means_fp32_on_every_runtime(trained_model):
    """OpenVINO would run an fp32 model in bf16 on CPUs with native bf16; asked for fp32, it must not."""
    info = read_model_info(trained_model)
    batch = reference_batch(info.preprocess, default_images())
    model, _ = load_model_file(trained_model)
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch)).numpy()
    for runtime in ("torch", "onnxruntime", "openvino"):
        selection = load_backend(trained_model, runtime, precision="fp32")
        assert selection.backend.precision == "fp32" and selection.verification is None
        if runtime == "openvino":
            hint = selection.backend.compiled.get_property("INFERENCE_PRECISION_HINT")
            assert str(hint) in ("<Type: 'float32'>", "f32"), hint
        diff = np.abs(selection.backend.run(batch) - reference).max()
        assert diff <= FP32_RTOL * max(1.0, np.abs(reference).max()), (runtime, diff)


def test_bf16_is_refused_with_the_reason_where_a_runtime_lacks_it(trained_model, tmp_path):
    with pytest.raises(ValueError, match="ONNX Runtime's CPU provider has no bf16 kernels"):
        load_backend(trained_model, "onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="needs an INT8-quantised model"):
        load_backend(trained_model, "onnxruntime", precision="int8")
    with pytest.raises(ValueError, match="only --format openvino writes a bf16 IR"):
        export_model(trained_model, "onnx", tmp_path / "m.onnx", precision="bf16")
    assert list(tmp_path.iterdir()) == []


def test_bf16_is_refused_on_a_cpu_without_native_bf16(trained_model, photos):
    """Run as an AVX2 CPU (oneDNN capped): the command says why and exits 2."""
    run = subprocess.run([sys.executable, "-m", "reslab", "predict", str(trained_model), str(photos["chelsea"]),
                          "--backend", "torch", "--precision", "bf16"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert run.returncode == 2 and "ONEDNN_MAX_CPU_ISA=AVX2" in run.stderr, run.stderr
    assert run.stderr.strip().count("\n") == 0


@needs_bf16
@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_bf16_runs_where_native_and_is_checked_against_fp32(trained_model, runtime):
    selection = load_backend(trained_model, runtime, precision="bf16")
    check = selection.verification
    assert selection.backend.precision == "bf16" and check is not None and check.passed
    assert check.images == 2 * len(default_images()) and check.top1_agreement == 1.0
    assert 0 < check.max_abs_diff <= check.tolerance  # really bf16: not bit-identical to fp32
    assert "bf16 checked against fp32" in selection.reason


@pytest.fixture(scope="module")
def near_tie_model(trained_model, tmp_path_factory):
    """A real network whose two top classes differ by 1e-4 of their weights: fp32 tells them apart,
    bf16 (8 significant bits) cannot, so every top-1 changes in bf16."""
    model, info = load_model_file(trained_model)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(-100.0)
        model.fc.bias[:2] = 0.0
        model.fc.weight[0] = 1.0 + torch.rand(model.fc.weight.shape[1], generator=torch.Generator().manual_seed(0))
        model.fc.weight[1] = model.fc.weight[0] * (1 + 1e-4)
    return save_model_file(tmp_path_factory.mktemp("tie") / "tie.safetensors", model, info)


def test_auto_never_picks_a_precision_that_failed_its_check(near_tie_model):
    chosen = load_backend(near_tie_model, "auto", precision="auto")
    assert chosen.backend.precision == "fp32" or chosen.verification.passed
    assert chosen.backend.precision == "fp32" or chosen.backend.name == "openvino"  # torch rounds the head too
    torch_auto = load_backend(near_tie_model, "torch", precision="auto")
    assert torch_auto.backend.precision == "fp32"
    if NATIVE_BF16:  # bf16 is checked when it is the faster: here it fails, and fp32 is kept
        timings = torch_auto.timings_ms
        assert ("torch bf16 failed the check" in torch_auto.reason) == (timings["torch bf16"] < timings["torch fp32"])
        with pytest.raises(VerificationError, match="top-1 agreement 0.0%"):
            load_backend(near_tie_model, "torch", precision="bf16")


def test_auto_without_images_to_check_on_stays_fp32(trained_model):
    for runtime in ("torch", "openvino"):
        assert load_backend(trained_model, runtime, precision="auto", verify_images=[]).backend.precision == "fp32"


@needs_bf16
def test_a_bf16_openvino_export_is_checked_with_the_bf16_tolerance(trained_model, tmp_path):
    report = export_model(trained_model, "openvino", tmp_path / "m.xml", precision="bf16")
    a = report.agreement
    assert a.precision == "bf16" and a.passed and a.top1_agreement == 1.0
    assert a.max_abs_diff <= a.tolerance and a.tolerance >= bf16_rtol(20)
    predictor = Predictor.from_file(tmp_path / "m.xml", precision="bf16")
    assert predictor.info.precision == "bf16" and predictor.precision == "bf16"


def test_the_precision_is_shown_where_users_look(trained_model, photos, capsys):
    main(["predict", str(trained_model), str(photos["chelsea"]), "--backend", "openvino", "--precision", "fp32"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"# {trained_model}: openvino fp32 (asked for: openvino fp32")
