"""reslab pretrain: the methods' losses, the two views, the kNN monitor, exact resume, gathering across ranks,
the backbone file and train --init, and the refusals."""

import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from reslab.cli import main
from reslab.config import TrainConfig
from reslab.data.preprocess import Preprocess
from reslab.modelfile import read_model_info
from reslab.models import create_model, load_model_file
from reslab.pretrain.config import PretrainConfig
from reslab.pretrain.methods import SelfSupervised
from reslab.pretrain.trainer import Pretrainer
from reslab.pretrain.views import BatchViews, ImageViews, ViewRecipe, crop_boxes, method_recipes
from reslab.train.trainer import Trainer

from .test_distributed import env, interrupted
from .test_train import read_metrics

PRE = Preprocess(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 3)
PLAIN = ViewRecipe(min_scale=1.0, flip=0.0, jitter=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                   gray=0.0)


def backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet20", 0, features_only=True)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss written out: each of the 2N outputs against the other 2N - 1, its pair the positive."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    similarities = z @ z.T / temperature
    similarities.fill_diagonal_(-math.inf)
    n = len(a)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(similarities, positives)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_the_loss_is_the_method_s_own_on_a_fixed_batch(method):
    cfg = PretrainConfig(method=method, temperature=0.3)
    module = SelfSupervised(backbone(), cfg, distributed=False).eval()
    torch.manual_seed(1)
    first, second = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        loss, similarities = module(first, second)
        features = [module.projection(module.backbone.forward_features(v)["layer3"].mean(dim=(-2, -1)))
                    for v in (first, second)]
        if method == "simclr":
            expected = nt_xent(*features, 0.3)
        else:  # BYOL: each view's prediction against the other's momentum target, by cosine
            predictions = [module.prediction(f) for f in features]
            targets = [module.momentum_projection(module.momentum_backbone.forward_features(v)["layer3"].mean(
                dim=(-2, -1))) for v in (first, second)]
            expected = -0.5 * (F.cosine_similarity(predictions[0], targets[1]).mean()
                               + F.cosine_similarity(predictions[1], targets[0]).mean())
    assert torch.allclose(loss, expected, atol=1e-5)
    assert similarities.shape == (6, 6)


def test_moco_keeps_the_other_view_s_keys_as_negatives():
    cfg = PretrainConfig(method="moco", memory_bank=16)
    module = SelfSupervised(backbone(), cfg, distributed=False).train()
    torch.manual_seed(1)
    first, second = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    before = module.loss.memory_bank.bank.clone()
    module(first, second)  # a training step's forward: lightly updates the bank when gradients flow
    bank = module.loss.memory_bank.bank
    assert bank.shape == before.shape == (16, 128)  # MoCo's memory bank: (negatives, dim)
    changed = (bank != before).any(dim=1)
    assert int(changed.sum()) == 8  # 4 keys from each view of the symmetric loss
    assert int(module.loss.memory_bank.bank_ptr) == 8


def test_momentum_copies_move_toward_the_online_networks():
    module = SelfSupervised(backbone(), PretrainConfig(method="byol"), distributed=False)
    with torch.no_grad():
        for p in module.backbone.parameters():
            p.add_(1.0)
    online = next(module.backbone.parameters()).clone()
    copy = next(module.momentum_backbone.parameters()).clone()
    module.update_momentum(0.9)
    assert torch.allclose(next(module.momentum_backbone.parameters()), 0.9 * copy + 0.1 * online, atol=1e-6)
    assert not any(p.requires_grad for p in module.momentum_backbone.parameters())


def test_crop_boxes_lie_inside_the_image_with_their_share_of_the_area():
    boxes = crop_boxes(2000, 32, 0.2, torch.Generator().manual_seed(0))
    left, top, width, height = boxes.unbind(1)
    assert bool((left >= 0).all() and (top >= 0).all() and (left + width <= 32).all() and (top + height <= 32).all())
    area = width * height / 32**2
    assert float(area.min()) >= 0.15 and float(area.max()) <= 1.0  # 0.2 of the area, but for rounding to pixels
    assert 0.5 < float(area.mean()) < 0.7  # uniform over (0.2, 1): 0.6


def test_batch_views_differ_and_follow_their_recipe():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    views = BatchViews(method_recipes("simclr"), PRE)
    pair = views(images, views.draw(8, generator))
    assert pair.shape == (8, 2, 3, 32, 32) and pair.dtype == torch.float32
    assert (pair[:, 0] - pair[:, 1]).abs().amax(dim=(1, 2, 3)).min() > 0.1  # every image's two views differ

    plain = BatchViews((PLAIN, PLAIN), PRE)  # the whole image, unflipped, untouched: the image itself
    pair = plain(images, plain.draw(8, generator))
    assert torch.equal(pair[:, 0], PRE.normalize(images)) and torch.equal(pair[:, 1], PRE.normalize(images))

    flipped_grey = ViewRecipe(**{**vars(PLAIN), "flip": 1.0, "gray": 1.0})
    grey = BatchViews((flipped_grey, PLAIN), PRE)
    pair = grey(images, grey.draw(8, generator))
    first = pair[:, 0] * 0.25 + 0.5  # back to 0..1
    assert torch.allclose(first[:, 0], first[:, 1]) and torch.allclose(first[:, 1], first[:, 2])
    expected_grey = (0.2989 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).flip(-1) / 255
    assert (first[:, 0] - expected_grey).abs().max() <= 0.5 / 255 + 1e-6  # a grey uint8 view


def test_views_of_images_from_disk_are_lightly_s_repeatable_per_epoch(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(path)
    pre = Preprocess(72, 82, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 3)
    read = ImageViews("byol", pre, seed=3)
    views = read(path, 5, 0)
    assert views.shape == (2, 3, 72, 72)
    assert np.abs(views[0] - views[1]).max() > 0.1
    assert np.array_equal(read(path, 5, 0), views)  # the same draw for the same (seed, epoch, index)
    assert not np.array_equal(read(path, 5, 1), views)


def pretrain_config(data, out, **overrides) -> PretrainConfig:
    fields = dict(data=str(data), model="resnet20", epochs=2, batch_size=32, eval_every=1, out_dir=str(out),
                  name="run", device="cpu", amp=False, memory_bank=64)
    return PretrainConfig(**{**fields, **overrides})


def test_pretraining_writes_a_backbone_scored_by_the_knn_monitor(tiny_folder, tmp_path):
    summary = Pretrainer(pretrain_config(tiny_folder, tmp_path, method="simclr", epochs=1)).fit()
    run = tmp_path / "run"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["epoch", "train_loss", "train_view_top1", "val_knn_top1"]
    assert len(rows) == 2 and 0.0 <= summary["best_val_knn_top1"] <= 1.0
    info = read_model_info(run / "backbone.safetensors")
    assert info.task == "features" and info.spec.features_only and info.training["method"] == "simclr"
    assert info.classes == sorted(p.name for p in (tiny_folder / "train").iterdir())
    model, _ = load_model_file(run / "backbone.safetensors")
    assert "fc.weight" not in load_file(str(run / "backbone.safetensors"))
    assert model.forward_features(torch.zeros(1, 3, 32, 32))["layer3"].shape == (1, 64, 8, 8)
    with pytest.raises(ValueError, match="backbone without a classifier.*train --init"):
        from reslab.infer.predictor import Predictor

        Predictor.from_file(run / "backbone.safetensors")


def pretrain_command(data, out, method: str, ranks: int) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"] if ranks > 1 else []
    return [sys.executable, *launcher, "-m", "reslab", "pretrain", f"--data={data}", f"--out-dir={out}", "--name=run",
            f"--method={method}", "--model=resnet20", "--epochs=3", "--batch-size=20", "--eval-every=1", "--no-amp",
            "--memory-bank=64", "--device=cpu"]


@pytest.mark.slow
@pytest.mark.parametrize("method, ranks", [("moco", 1), ("simclr", 2), ("byol", 1)])
def test_pretraining_resumes_after_kill_9_as_if_never_stopped(cifar_folder, tmp_path, method, ranks):
    """The momentum encoder, MoCo's memory bank, the views' draws and (two ranks) the gathered negatives all carry
    over a kill -9 of every process and a resume: the weights and figures are those of the run never stopped."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    subprocess.run(pretrain_command(cifar_folder, straight, method, ranks), env=env(), check=True,
                   capture_output=True)
    interrupted(pretrain_command(cifar_folder, cut, method, ranks), cut)
    subprocess.run([*pretrain_command(cifar_folder, cut, method, ranks), "--resume"], env=env(), check=True,
                   capture_output=True)
    a = torch.load(straight / "run" / "last.pt", weights_only=True)["model"]
    b = torch.load(cut / "run" / "last.pt", weights_only=True)["model"]
    if method != "simclr":
        assert any("momentum_backbone" in k for k in a)
    if method == "moco":  # the memory bank, kept with the weights (lightly leaves it out of the state dict)
        assert a["_extra_state"]["bank"].shape == (64, 128)
    for key, value in a.items():
        if key == "_extra_state":
            assert all(torch.equal(v, b[key][k]) for k, v in value.items())
        else:
            assert torch.equal(value, b[key]), key
    figures = ("train_loss", "train_view_top1", "val_knn_top1", "lr")
    rows = [[[r[k] for k in figures] for r in read_metrics(run / "run")] for run in (straight, cut)]
    assert rows[0] == rows[1] and len(rows[0]) == 3


def test_init_starts_a_classifier_from_the_backbone(tiny_folder, tmp_path):
    Pretrainer(pretrain_config(tiny_folder, tmp_path, method="byol", epochs=1)).fit()
    backbone_file = tmp_path / "run" / "backbone.safetensors"
    state = load_file(str(backbone_file))
    model = create_model("resnet20", 10, backbone=backbone_file)
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert key not in state
        else:
            assert torch.equal(value, state[key]), key
    cfg = TrainConfig(data=str(tiny_folder), model="resnet20", epochs=1, batch_size=32, out_dir=str(tmp_path),
                      name="tuned", init=str(backbone_file))
    trainer = Trainer(cfg)
    assert torch.equal(trainer.model.conv1.weight.detach(), state["conv1.weight"])
    assert trainer.cfg.backbone_lr_scale == 0.1  # fine-tuning learned weights: the backbone learns slower
    with pytest.raises(ValueError, match="holds a resnet20 backbone: pass --model resnet20"):
        Trainer(TrainConfig(data=str(tiny_folder), model="resnet32", out_dir=str(tmp_path), name="other",
                            init=str(backbone_file)))


def test_a_folder_without_classes_pretrains_without_a_monitor(tiny_folder, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted((tiny_folder / "train").rglob("*.jpg"))[:48]):
        Image.open(path).resize((72, 72)).save(flat / f"{i}.jpg")  # from disk, through lightly's transforms
    main(["pretrain", "--data", str(flat), "--model", "resnet20", "--epochs", "1", "--batch-size", "16",
          "--image-size", "64", "--no-in-memory", "--workers", "0", "--out-dir", str(tmp_path), "--name", "flat",
          "--no-amp"])
    run = tmp_path / "flat"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == 1 and read_metrics(run)[0]["val_knn_top1"] == ""
    info = read_model_info(run / "backbone.safetensors")
    assert info.classes == [] and info.task == "features" and info.preprocess.image_size == 64


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "labels.csv").write_text("path,labels\na.jpg,cat\n"), "multi-label index"),
    (lambda root: [(root / c).mkdir() or (root / c / "v.mp4").write_bytes(b"\0") for c in ("a", "b")],
     "holds videos"),
])
def test_data_a_method_cannot_use_is_refused_by_name(tmp_path, capsys, make, message):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    with pytest.raises(SystemExit):
        main(["pretrain", "--data", str(root), "--out-dir", str(tmp_path / "runs")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_training_fields_that_do_not_apply_are_refused(tmp_path):
    (tmp_path / "run.yaml").write_text("task: multilabel\nlabel_smoothing: 0.1\n")
    with pytest.raises(SystemExit):
        main(["pretrain", "--config", str(tmp_path / "run.yaml")])
    with pytest.raises(ValueError, match="it takes no --task, --label-smoothing"):
        PretrainConfig(task="multilabel", label_smoothing=0.1)
    with pytest.raises(ValueError, match="--lr auto"):
        PretrainConfig(lr="auto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gathered_loss(rank: int, world: int, port: int, first: torch.Tensor, second: torch.Tensor, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        module = SelfSupervised(backbone(), PretrainConfig(method="simclr"), distributed=True)
        half = len(first) // world
        mine = slice(rank * half, (rank + 1) * half)
        a, b = first[mine].clone().requires_grad_(), second[mine].clone()
        loss = module.loss(a, b)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": a.grad}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_simclr_under_ddp_sees_the_negatives_of_every_rank(tmp_path):
    torch.manual_seed(0)
    first, second = torch.randn(8, 16), torch.randn(8, 16)
    out = str(tmp_path / "rank")
    torch.multiprocessing.spawn(_gathered_loss, args=(2, _free_port(), first, second, out), nprocs=2)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    whole = SelfSupervised(backbone(), PretrainConfig(method="simclr"), distributed=False)
    a = first.clone().requires_grad_()
    expected = whole.loss(a, second)
    expected.backward()
    assert torch.allclose((ranks[0]["loss"] + ranks[1]["loss"]) / 2, expected.detach(), atol=1e-6)
    # lightly's gather sums the gradients of every rank's loss back to each rank's outputs, and DDP halves the
    # sum over ranks: the whole batch's gradient
    assert torch.allclose(torch.cat([r["grad"] for r in ranks]) / 2, a.grad, atol=1e-6)
    alone = whole.loss(first[:4], second[:4])  # what one rank would compute without the other's negatives
    assert not torch.allclose(ranks[0]["loss"], alone, atol=1e-3)
