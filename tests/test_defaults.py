"""Defaults that follow the run: the learning rate scaled to the global batch, the warm-up sized to the run,
fine-tuning's slower backbone, all written to config.yaml."""

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

from reslab.config import TrainConfig, config_from_dict
from reslab.models import create_model
from reslab.train.defaults import RunShape, resolve_defaults
from reslab.train.health import (
    TrainingDiverged,
    above_uniform_warning,
    chance_top1,
    learned_nothing,
    uniform_guess_loss,
)
from reslab.train.optim import build_optimizer, build_scheduler, lr_factor
from reslab.train.trainer import Trainer

from .test_train import tiny_config


def shape(batch=32, world=1, accumulate=1, steps=32, transfer=False) -> RunShape:
    return RunShape(batch, world, accumulate, steps, transfer)


def test_the_learning_rate_follows_the_global_batch():
    cfg, lines = resolve_defaults(TrainConfig(), shape(batch=32))
    assert cfg.lr == pytest.approx(0.0125) and cfg.lr_base == 0.1
    assert lines[0].startswith("lr 0.0125 = 0.1 x 32/256")
    # two processes of 64 with 2 micro-batches: a global batch of 256, the reference
    cfg, lines = resolve_defaults(TrainConfig(), shape(batch=64, world=2, accumulate=2))
    assert cfg.lr == pytest.approx(0.1) and "256 = 64 x 2 processes x 2 micro-batches" in lines[0]
    # AdamW by the square root, from its own base
    cfg, lines = resolve_defaults(TrainConfig(optimizer="adamw"), shape(batch=64))
    assert cfg.lr == pytest.approx(1e-3 * 0.5) and "sqrt(64/256)" in lines[0]
    cfg, _ = resolve_defaults(TrainConfig(lr_base=0.2), shape(batch=512))
    assert cfg.lr == pytest.approx(0.4)
    cfg, lines = resolve_defaults(TrainConfig(lr=0.05), shape(batch=32))  # a set rate is kept
    assert cfg.lr == 0.05 and lines[0] == "lr 0.05 (set)"


def test_the_default_warmup_is_a_few_percent_of_the_run_never_all_of_it():
    cfg, lines = resolve_defaults(TrainConfig(epochs=3), shape(steps=32))  # 96 steps: 5% is 4.8 -> 5
    assert round(cfg.warmup_epochs * 32) == 5 and "warm-up 5 steps" in lines[1]
    cfg, _ = resolve_defaults(TrainConfig(epochs=90), shape(steps=5000))  # capped at 300 steps
    assert round(cfg.warmup_epochs * 5000) == 300
    cfg, _ = resolve_defaults(TrainConfig(epochs=4, schedule="onecycle"), shape(steps=10))  # a quarter climbs
    assert round(cfg.warmup_epochs * 10) == 10
    cfg, _ = resolve_defaults(TrainConfig(warmup_epochs=0), shape())  # a recipe's own value stays
    assert cfg.warmup_epochs == 0
    f = lr_factor(resolve_defaults(TrainConfig(epochs=3), shape(steps=32))[0], 32)
    assert [f(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # then cosine over the 91 remaining steps: halfway down after 5 + 45.5 steps
    assert f(5) == pytest.approx(1.0) and f(50) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 91)))


def test_fine_tuning_trains_the_backbone_slower_than_the_new_head():
    cfg, lines = resolve_defaults(TrainConfig(), shape(batch=32, transfer=True))
    assert cfg.backbone_lr_scale == 0.1 and any(line.startswith("backbone lr 0.00125") for line in lines)
    model = create_model("resnet18", num_classes=5)
    optimizer = build_optimizer(model, cfg)
    head = {id(p) for p in model.fc.parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1, "a group mixes head and backbone"
        assert group["lr"] == pytest.approx(0.0125 if in_head.pop() else 0.00125)
        assert group["weight_decay"] == (0.0 if all(p.ndim == 1 for p in group["params"]) else cfg.weight_decay)
    # the scale holds through warm-up and the schedule: LambdaLR multiplies each group's own rate
    scheduler = build_scheduler(optimizer, cfg, 32)
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    rates = sorted({round(g["lr"] / optimizer.param_groups[0]["lr"], 6) for g in optimizer.param_groups})
    assert rates == [0.1, 1.0] or rates == [1.0, 10.0]
    from_scratch, _ = resolve_defaults(TrainConfig(), shape(transfer=False))
    assert from_scratch.backbone_lr_scale == 1.0
    assert len({g["lr"] for g in build_optimizer(model, from_scratch).param_groups}) == 1


def test_a_run_writes_every_default_it_used_to_config_yaml(tiny_folder, tmp_path):
    cfg = tiny_config(tiny_folder, tmp_path, epochs=1, lr=None, schedule="cosine")
    trainer = Trainer(cfg)
    trainer.fit()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    steps = len(trainer.data.train)
    assert saved["lr"] == pytest.approx(0.1 * 32 / 256) and saved["lr_base"] == 0.1
    assert round(saved["warmup_epochs"] * steps) == math.ceil(0.05 * steps) and saved["backbone_lr_scale"] == 1.0
    again = config_from_dict(saved)  # the folder alone reproduces the run's optimiser and schedule
    assert resolve_defaults(again, trainer_shape(trainer))[0] == trainer.cfg
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(saved["lr"])


def trainer_shape(trainer: Trainer) -> RunShape:
    cfg = trainer.cfg
    return RunShape(cfg.batch_size, 1, cfg.accumulate, trainer.steps_per_epoch, False)


def test_nonsense_rates_are_refused_by_name():
    with pytest.raises(ValueError, match="'lr' must be 0 or more"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="'backbone_lr_scale' must be between 0 and 1"):
        TrainConfig(backbone_lr_scale=3.0)
    with pytest.raises(ValueError, match="'lr': expected a number or auto"):
        config_from_dict({"lr": "fast"})


def test_a_huge_learning_rate_stops_the_run_at_once_and_says_what_to_do(tiny_folder, tmp_path):
    trainer = Trainer(tiny_config(tiny_folder, tmp_path, epochs=3, lr=1e12, schedule="constant", warmup_epochs=0))
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "training diverged: the training loss is" in message and "of epoch 1" in message
    assert "lr 1e+12" in message and "--lr 1e+11" in message and "reslab lr-find --data" in message
    assert trainer.epoch == 0 and not (tmp_path / "run" / "last.pt").exists()  # nothing saved from the nan weights


def test_loss_above_uniform_guessing_and_a_model_at_chance_are_named():
    assert uniform_guess_loss("multiclass", 10, distilled=False, pos_weighted=False) == pytest.approx(math.log(10))
    assert uniform_guess_loss("multilabel", 5, distilled=False, pos_weighted=False) == pytest.approx(math.log(2))
    assert uniform_guess_loss("multiclass", 10, distilled=True, pos_weighted=False) is None
    assert "above uniform guessing (2.303)" in above_uniform_warning(4.83, math.log(10))
    assert above_uniform_warning(2.0, math.log(10)) == ""
    assert above_uniform_warning(2.31, math.log(10)) == ""  # a slow first epoch hovers at ln K: no false alarm
    confusion = torch.full((10, 10), 3)  # 300 images, 30 per class: chance 0.1 +- 2 x 0.0173
    assert chance_top1(confusion)[0] == pytest.approx(0.1)
    assert "learned nothing" in learned_nothing(0.11, confusion)
    assert learned_nothing(0.20, confusion) == ""
    confusion[0] += 27  # a commonest class of 60 in 327: always answering it scores 0.183
    assert "learned nothing" in learned_nothing(0.20, confusion)


def test_lr_find_sweeps_plots_and_suggests_a_rate_inside_its_range(tiny_folder, tmp_path):
    picture = tmp_path / "lr_find.png"
    out = subprocess.run([sys.executable, "-m", "reslab", "lr-find", "--data", str(tiny_folder), "--model", "resnet20",
                          "--batch-size", "16", "--steps", "30", "--device", "cpu", "--no-amp", "--out", "lr_find.png",
                          "--json"], capture_output=True, text=True, check=True, cwd=tmp_path)
    report = json.loads(out.stdout)
    lrs = report["lrs"]
    assert len(lrs) == len(report["losses"]) >= 3 and lrs == sorted(lrs)
    assert lrs[-1] / lrs[0] > 1e3  # grew exponentially over the steps it ran
    assert lrs[0] <= report["suggestion"] <= lrs[-1]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lr_find.png"]  # the test writes its picture, no run folder


def test_lr_auto_trains_with_the_range_tests_suggestion_from_untouched_weights(tiny_folder, tmp_path):
    auto = Trainer(tiny_config(tiny_folder, tmp_path, epochs=1, lr="auto", name="auto"))
    plain = Trainer(tiny_config(tiny_folder, tmp_path, epochs=1, name="plain"))
    for (name, a), b in zip(auto.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.equal(a, b), f"the range test left {name} changed"
    suggestion = auto.lr_search.suggestion
    assert auto.cfg.lr == suggestion and auto.optimizer.param_groups[0]["lr"] == pytest.approx(
        suggestion * lr_factor(auto.cfg, auto.steps_per_epoch)(0))
    auto.fit()
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    assert saved["lr"] == pytest.approx(suggestion)
    assert (tmp_path / "auto" / "lr_find.png").is_file()
