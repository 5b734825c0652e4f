"""Every export format round-trips on real images, keeps the metadata, and fails loudly when it should."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from reslab.cli import main
from reslab.export.run import export_model
from reslab.export.triton import TritonConfigError, check_repository, parse_config
from reslab.formats import read_info
from reslab.infer.backends import choose_backend
from reslab.infer.predictor import Predictor
from reslab.infer.selection import load_backend
from reslab.modelfile import ModelFileError, read_model_info
from reslab.precision import FP32_RTOL, Agreement, VerificationError, check, compare

FORMATS = {"onnx": "m.onnx", "torchscript": "m.torchscript", "torch-export": "m.pt2", "openvino": "m.xml"}


@pytest.fixture(scope="module")
def export(trained_model, tmp_path_factory):
    """Each format exported once, when a test first asks for it: one failing format fails its own tests only."""
    out = tmp_path_factory.mktemp("exports")
    reports: dict = {}

    def exported(fmt: str) -> tuple:
        if fmt not in reports:
            reports[fmt] = (export_model(trained_model, fmt, out / "triton", triton_name="cifar") if fmt == "triton"
                            else export_model(trained_model, fmt, out / FORMATS[fmt]))
        return out, reports[fmt]

    return exported


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_predicts_like_the_original(export, trained_model, photos, fmt):
    out, report = export(fmt)
    a = report.agreement
    assert a.top1_agreement == 1.0 and a.images == 6 and a.precision == "fp32"
    assert a.max_abs_diff <= a.tolerance <= 50 * FP32_RTOL  # fp32's tolerance, whatever the CPU
    original = Predictor.from_file(trained_model, backend="torch", precision="fp32")
    exported = Predictor.from_file(out / FORMATS[fmt], precision="fp32")
    images = list(photos.values())
    p_orig = original.inference(original.preprocess(images))
    p_exp = exported.inference(exported.preprocess(images))
    assert np.abs(p_orig - p_exp).max() < 1e-4
    assert exported.classes == original.classes
    assert read_info(out / FORMATS[fmt]).preprocess == read_model_info(trained_model).preprocess


def test_onnx_has_dynamic_batch_names_opset_and_metadata(export, trained_model):
    out, _ = export("onnx")
    proto = onnx.load(str(out / "m.onnx"))
    info = read_model_info(trained_model)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert (inp.name, outp.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == info.classes
    assert int(meta["image_size"]) == info.preprocess.image_size
    assert tuple(json.loads(meta["mean"])) == info.preprocess.mean
    assert int(meta["resize_size"]) == info.preprocess.resize_size
    runner = load_backend(out / "m.onnx", "onnxruntime").backend
    for batch in (1, 7):
        x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        assert runner.run(x).shape == (batch, len(info.classes))


def test_triton_repository_follows_tritons_rules(export, trained_model):
    out, report = export("triton")
    model_dir = out / "triton" / "cifar"
    config = parse_config(model_dir / "config.pbtxt")
    assert config.name == "cifar" and config.max_batch_size == 32 and config.backend == "onnxruntime"
    assert list(config.input[0].dims) == [3, 32, 32] and list(config.output[0].dims) == [10]
    assert config.HasField("dynamic_batching")
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert labels == read_model_info(trained_model).classes
    assert (model_dir / "1" / "model.onnx").is_file()
    assert "dims (dynamic batch axis)" in report.notes[0]
    text = (model_dir / "config.pbtxt").read_text()
    (model_dir / "config.pbtxt").write_text(text.replace("dims: [ 10 ]", "dims: [ 12 ]"))
    with pytest.raises(TritonConfigError, match="dims \\[12\\] but the graph has \\[10\\]"):
        check_repository(model_dir)
    (model_dir / "config.pbtxt").write_text(text.replace("TYPE_FP32", "TYPE_FLOAT"))
    with pytest.raises(TritonConfigError):
        check_repository(model_dir)
    (model_dir / "config.pbtxt").write_text(text)


def test_a_mismatch_fails_and_leaves_no_file(trained_model, tmp_path):
    reference = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    agreement = compare(reference, reference + np.array([[0, 0, 0], [0, 2.5, 0]]), 1e-3)
    assert agreement == Agreement(2, 2.5, 0.5, tolerance=3e-3)
    with pytest.raises(VerificationError, match="top-1 agreement 50.0%"):
        check(agreement, "test export")
    with pytest.raises(VerificationError):  # ONNX Runtime's float rounding is not zero: rtol 0 must fail
        export_model(trained_model, "onnx", tmp_path / "x.onnx", rtol=0.0)
    assert list(tmp_path.iterdir()) == []


def test_backend_choice_and_clear_errors(export, tmp_path):
    out, _ = export("onnx")
    export("torchscript")
    export("torch-export")
    assert choose_backend(out / "m.onnx", "auto", "cpu") == ["onnxruntime", "openvino"]
    assert choose_backend(out / "m.pt2", "auto", "cpu") == ["torch"]
    chosen = load_backend(out / "m.onnx", "auto", precision="fp32")
    assert chosen.backend.name in ("openvino", "onnxruntime") and len(chosen.timings_ms) == 2  # the faster, timed
    with pytest.raises(ValueError, match="cannot run a torchscript file"):
        load_backend(out / "m.torchscript", "onnxruntime")
    for name in ("bad.onnx", "bad.xml", "bad.pt2", "bad.torchscript", "bad.safetensors"):
        (tmp_path / name).write_bytes(b"\x00garbage\x01" * 10)
        with pytest.raises(ModelFileError, match=name):
            Predictor.from_file(tmp_path / name)
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model format '.h5'"):
        Predictor.from_file(tmp_path / "model.h5")
    plain = onnx.load(str(out / "m.onnx"))
    del plain.metadata_props[:]
    onnx.save_model(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelFileError, match="without reslab metadata"):
        Predictor.from_file(tmp_path / "plain.onnx")


def test_unknown_format_and_wrong_suffix_are_refused(trained_model, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(trained_model, "tflite", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="an export to onnx is written to a .onnx file"):
        export_model(trained_model, "onnx", tmp_path / "m.xml")
    assert list(tmp_path.iterdir()) == []


def test_export_command(trained_model, tmp_path, capsys):
    run = subprocess.run([sys.executable, "-m", "reslab", "export", str(trained_model), "--format", "onnx",
                          "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "top-1 agreement 100.0%" in run.stdout and (tmp_path / "m.onnx").is_file()
    for args, message in (([str(trained_model), "--opset", "11"], "opset 17 or newer"),
                          ([str(tmp_path / "m.onnx")], "m.onnx")):
        with pytest.raises(SystemExit) as exit_:  # the same command, in this process
            main(["export", *args, "--format", "onnx"])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert Path(tmp_path / "m.onnx").is_file()
