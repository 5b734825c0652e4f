"""--amp auto: training precision chosen by timing the run's own steps, remembered, recorded, kept on resume."""

import contextlib
import json
import uuid
from pathlib import Path

import pytest
import torch

from reslab.hardware import BF16_TRAINING_MIN_SPEEDUP, bf16_refusal, cpu_info, training_amp_default
from reslab.models import create_model, load_model_file
from reslab.train.checkpoint import load_checkpoint, save_checkpoint
from reslab.train.precision_choice import PrecisionChoice, measure_step_rates, resolve_precision
from reslab.train.trainer import Trainer

from .test_train import tiny_config

CPU = torch.device("cpu")
NATIVE_BF16 = cpu_info().native_bf16


def not_measured() -> tuple[float, float]:
    raise AssertionError("measured although the answer was known")


def test_measuring_leaves_the_model_and_the_random_state_as_they_were():
    model = create_model("resnet20", num_classes=10).to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fp32, bf16 = measure_step_rates(model, batch=16, image_size=32, seconds=0.2)
    assert fp32 > 0 and bf16 > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(not NATIVE_BF16, reason="bf16 is measured only where it is native")
@pytest.mark.parametrize("ratio", [BF16_TRAINING_MIN_SPEEDUP + 0.05, BF16_TRAINING_MIN_SPEEDUP - 0.05])
def test_auto_takes_bf16_only_at_the_speedup_it_measured(ratio):
    choice = resolve_precision("auto", "bfloat16", CPU, measure=lambda: (100.0, 100.0 * ratio))
    assert choice.how == "measured" and choice.amp == (ratio >= BF16_TRAINING_MIN_SPEEDUP)
    assert choice.dtype == ("bfloat16" if choice.amp else "float32")
    assert choice.bf16_vs_fp32 == pytest.approx(ratio) and f"{ratio:.2f}x" in choice.reason


def test_a_measured_choice_is_remembered_for_the_same_model_and_batch():
    identity = ["a test's network", str(uuid.uuid4()), 64]
    first = resolve_precision("auto", "bfloat16", CPU, identity, measure=lambda: (100.0, 250.0))
    again = resolve_precision("auto", "bfloat16", CPU, identity, measure=not_measured)
    if NATIVE_BF16:
        assert (first.how, again.how) == ("measured", "remembered") and first.amp and again.amp
        assert again.bf16_vs_fp32 == pytest.approx(2.5)
        other = resolve_precision("auto", "bfloat16", CPU, [*identity[:2], 128], measure=lambda: (100.0, 90.0))
        assert other.how == "measured" and not other.amp  # another batch is measured anew
    else:  # emulated bf16: never measured, never taken
        assert first.how == again.how == "not native" and not first.amp and first.reason == bf16_refusal(CPU)


def test_asked_precisions_are_not_measured():
    assert resolve_precision(False, "bfloat16", CPU, measure=not_measured) == PrecisionChoice(
        False, "float32", "asked", "--no-amp")
    with pytest.warns(UserWarning, match="slower than fp32") if not NATIVE_BF16 else contextlib.nullcontext():
        assert resolve_precision(True, "bfloat16", CPU, measure=not_measured).amp
    with pytest.raises(ValueError, match="float16 is for GPUs"):
        resolve_precision("auto", "float16", CPU)
    assert training_amp_default(CPU) == ("measure" if NATIVE_BF16 else "off")
    if torch.cuda.is_available():
        assert resolve_precision("auto", "bfloat16", torch.device("cuda"), measure=not_measured).amp


def test_a_run_records_its_choice_in_the_summary_the_checkpoint_and_the_model_file(tiny_folder, tmp_path):
    summary = Trainer(tiny_config(tiny_folder, tmp_path, epochs=1, amp="auto")).fit()
    run = Path(summary["run_dir"])
    record = json.loads((run / "summary.json").read_text())["precision_choice"]
    assert record["how"] == ("measured" if NATIVE_BF16 else "not native") or record["how"] == "remembered"
    assert summary["precision"] == ("mixed bfloat16" if record["amp"] else "fp32")
    if NATIVE_BF16:
        assert record["fp32_images_per_s"] > 0 and record["bf16_images_per_s"] > 0
        assert record["amp"] == (record["bf16_vs_fp32"] >= BF16_TRAINING_MIN_SPEEDUP)
    assert load_checkpoint(run / "last.pt")["precision"] == record
    _, info = load_model_file(run / "best.safetensors")
    assert info.training["precision_choice"] == record


def test_a_resumed_auto_run_keeps_the_precision_its_checkpoint_records(tiny_folder, tmp_path):
    Trainer(tiny_config(tiny_folder, tmp_path, epochs=1, amp="auto")).fit()
    last = tmp_path / "run" / "last.pt"
    state = load_checkpoint(last)
    # whatever this machine would choose now, the run began in the other precision: it must go on in that one
    flipped = not state["precision"]["amp"]
    began = PrecisionChoice(flipped, "bfloat16" if flipped else "float32", "measured", "at the run's start", 100.0,
                            150.0 if flipped else 90.0)
    state["precision"] = began.record()
    save_checkpoint(last, state)
    resumed = Trainer(tiny_config(tiny_folder, tmp_path, epochs=2, amp="auto", resume=True))
    assert resumed.precision == began and resumed.amp == began.amp
    forced = Trainer(tiny_config(tiny_folder, tmp_path, epochs=2, amp=False, resume=True))
    assert forced.precision.how == "asked" and not forced.amp  # a flag given on resume still decides
