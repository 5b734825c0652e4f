"""Static INT8 quantisation calibrated on real images keeps accuracy, and refuses when it does not."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from reslab.formats import read_info
from reslab.infer.predictor import Predictor
from reslab.modelfile import read_model_info
from reslab.optimize.quantize import QuantizationRejected, QuantizeOptions, quantize_model


@pytest.fixture(scope="module")
def quantized(trained_model, sample_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "m-int8.onnx"
    report = quantize_model(trained_model, QuantizeOptions(calib_data=str(sample_folder)), out)
    return out, report


def test_int8_keeps_top1_on_real_validation_images(quantized):
    out, r = quantized
    assert r.val_images == 600 and r.calibration_images == 300 and r.output == out and out.is_file()
    assert r.metric == "top1" and r.fp32.score > 0.5  # a real model: far above chance (0.1)
    assert r.drop_points == pytest.approx(100 * (r.fp32.score - r.int8.score)) and r.drop_points <= 1.0
    assert r.agreement >= 0.95
    assert r.int8.bytes < r.fp32.bytes / 2.5
    assert json.loads(str(r))["int8"]["score"] == r.int8.score  # prints as JSON, as --json does


def test_int8_graph_is_qdq_per_channel_with_metadata(quantized, trained_model):
    out, _ = quantized
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {i.name: i for i in proto.graph.initializer}
    weight_scales = [numpy_helper.to_array(inits[n.input[1]]) for n in proto.graph.node
                     if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                     and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert weight_scales and any(s.size > 1 for s in weight_scales)  # per-channel scales on conv weights
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == read_model_info(trained_model).classes
    assert json.loads(meta["quantization"])["method"] == "minmax"


def test_int8_model_runs_in_every_onnx_backend(quantized, photos):
    out, _ = quantized
    outputs = []
    for backend in ("onnxruntime", "openvino"):
        predictor = Predictor.from_file(out, backend=backend)
        outputs.append(predictor.inference(predictor.preprocess(list(photos.values()))))
    tolerance = 0.05  # INT8 runtimes round and requantise differently: a few quantisation steps of probability
    assert np.abs(outputs[0] - outputs[1]).max() < tolerance
    # within that tolerance a top-1 may only flip where the two best classes are closer than twice it
    top2 = np.sort(outputs[0], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * tolerance
    assert clear.any() and (outputs[0].argmax(1) == outputs[1].argmax(1))[clear].all()


def test_a_drop_beyond_the_threshold_writes_nothing(trained_model, sample_folder, tmp_path):
    opts = QuantizeOptions(calib_data=str(sample_folder), calib_images=20, method="minmax", val_images=100,
                           max_drop=-1.0)  # any result exceeds a negative allowance
    with pytest.raises(QuantizationRejected, match="nothing written"):
        quantize_model(trained_model, opts, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_bad_requests_are_refused(quantized, sample_folder, tmp_path):
    out, _ = quantized
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(out, QuantizeOptions(calib_data=str(sample_folder)), tmp_path / "y.onnx")
    with pytest.raises(ValueError, match="'method': 'kl' is not one of"):
        QuantizeOptions(calib_data="x", method="kl")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibrations_write_a_checked_model(trained_model, sample_folder, tmp_path, method):
    opts = QuantizeOptions(calib_data=str(sample_folder), calib_images=20, method=method, val_images=100,
                           max_drop=100.0)
    report = quantize_model(trained_model, opts, tmp_path / "m-int8.onnx")
    assert report.calibration_images == 20 and report.val_images == 100
    assert read_info(tmp_path / "m-int8.onnx").precision == "int8"
