"""One place answers what this machine has: devices, instruction sets, native precisions; every command
resolves its device through it and fails with the same one line."""

import os
import re
import subprocess
import sys

import pytest
import torch

from reslab.cli import main
from reslab.hardware import (
    DeviceError,
    autocast_dtype,
    bf16_refusal,
    cpu_info,
    hardware_line,
    hardware_report,
    openvino_config,
    resolve_device,
    training_amp_default,
)

NO_GPU = not torch.cuda.is_available()


def test_the_report_is_torchs_own_answer():
    info = cpu_info()
    assert info.isa == torch.backends.cpu.get_cpu_capability()
    assert info.amx == torch.cpu._is_amx_tile_supported()
    assert info.avx512_bf16 == torch.cpu._is_avx512_bf16_supported()
    assert info.native_bf16 == ((info.amx or info.avx512_bf16) and not os.environ.get("ONEDNN_MAX_CPU_ISA"))
    assert info.cores >= 1 and info.model
    assert (bf16_refusal(torch.device("cpu")) is None) == info.native_bf16
    # where bf16 is native only a measurement tells whether it trains faster
    assert training_amp_default(torch.device("cpu")) == ("measure" if info.native_bf16 else "off")
    report = hardware_report()
    assert report["cpu"]["isa"] == info.isa and report["torch"] == torch.__version__
    assert info.isa in hardware_line() and f"{info.cores} cores" in hardware_line()


def test_an_avx2_cap_makes_bf16_not_native_on_any_cpu():
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN compute as on an AVX2 CPU: bf16 is then emulated, never native."""
    code = ("from reslab.hardware import cpu_info, bf16_refusal, training_amp_default; import torch; c = cpu_info(); "
            "print(c.native_bf16, c.level in ('AVX2', 'AVX512', 'DEFAULT'), bool(bf16_refusal(torch.device('cpu'))), "
            "training_amp_default(torch.device('cpu')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True", "True", "off"]


def test_devices_resolve_in_one_place():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="not a device name"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="runs on cpu or cuda"):
        resolve_device("meta")
    assert autocast_dtype(torch.device("cpu")) == torch.bfloat16
    assert openvino_config("fp32") == {"INFERENCE_PRECISION_HINT": "f32"}
    assert openvino_config("bf16") == {"INFERENCE_PRECISION_HINT": "bf16"}


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("command", [["predict", "{model}", "{photo}"], ["eval", "{model}"],
                                     ["serve", "{model}"], ["train", "--data", "{data}", "--epochs", "1"]])
def test_a_missing_gpu_is_one_clear_line_and_exit_code_2(command, trained_model, photos, tiny_folder, tmp_path,
                                                          capsys):
    names = {"model": trained_model, "photo": photos["grace_hopper"], "data": tiny_folder, "tmp": tmp_path}
    args = [a.format(**names) for a in command] + ["--device", "cuda", *(["--out-dir", str(tmp_path)]
                                                                          if command[0] == "train" else [])]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2
    assert stderr.strip().count("\n") == 0 and "no usable CUDA GPU" in stderr, stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_env_reports_the_machine_versions_and_usable_precisions(capsys):
    main(["env"])
    out = capsys.readouterr().out
    assert cpu_info().isa in out and f"torch             {torch.__version__.split('+')[0]}" in out
    assert "onnxruntime (cpu)" in out and "no bf16 kernels" in out
    assert ("bf16: yes" in out.split("torch (cpu)")[1].splitlines()[0]) == cpu_info().native_bf16
    # every package an extra brings, installed or not, with the extra that brings it
    packages = out.split("packages")[1]
    for name, extra in (("datasets", "hf"), ("huggingface_hub", "hf"), ("grad-cam", "explain"),
                        ("cleanlab", "labels"), ("scikit-learn", "torch,labels,ssl"), ("openvino", "deploy")):
        assert re.search(rf"^  {re.escape(name)} +\S+ +{re.escape(extra)}$", packages, re.M), name
    assert "pytest" not in packages  # the test tools are not reslab's
    trains = next(line for line in out.splitlines() if line.startswith("training"))
    if cpu_info().native_bf16:  # timed, whichever way it went
        assert "bf16 autocast steps ran" in trains and ("mixed bfloat16" in trains or "fp32" in trains)
    else:
        assert "trains in fp32" in trains and "not native" in trains


# Two OpenVINO models opened, then closed first-in-first-out, then a signal with a Python handler: with one
# OpenVINO Core each, the CPU plugin left the thread on an unmapped signal stack and this died of SIGSEGV.
OPENVINO_OPENED_TWICE = """
import os, signal, sys
import onnx
from onnx import TensorProto, helper
from reslab.infer.backends import OpenVinoBackend

graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
first, second = OpenVinoBackend(sys.argv[1]), OpenVinoBackend(sys.argv[1])
del first
del second
signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
"""


def test_openvino_models_closed_in_any_order_leave_signals_deliverable(tmp_path):
    pytest.importorskip("openvino")
    result = subprocess.run([sys.executable, "-c", OPENVINO_OPENED_TWICE, str(tmp_path / "relu.onnx")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"exit code {result.returncode} (-11 is SIGSEGV): {result.stderr[-2000:]}"
    assert result.stdout.strip() == "handled"
