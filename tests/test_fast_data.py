"""The fast data paths: reduced-scale decoding, batch crops, GPU-path decoding (run on CPU tensors here), packs.

Tolerances: both paths resample with different low-pass filters (libjpeg's DCT scaling, Pillow's
triangle filter, roi_align's averaged bilinear samples), so the same box gives images that differ by
about one grey level on average; a box off by a few pixels differs by several times that.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from reslab.data.batch_ops import color_jitter, orient, resized_crops
from reslab.data.crops import (
    center_box,
    jitter_factors,
    jpeg_reduction,
    random_resized_box,
    shift_draw,
    train_draw,
)
from reslab.data.datasets import load_dataset
from reslab.data.decoding import (
    DeviceCrops,
    NormalizeBatch,
    ReadEncoded,
    TrainCrops,
    decode_on_device,
    per_image_transform,
    to_device,
)
from reslab.data.loaders import SkipLog
from reslab.data.options import AugmentOptions
from reslab.data.pack import pack_folder
from reslab.data.preprocess import Preprocess
from reslab.data.splits import PackSplit
from reslab.data.streams import RawBatch, StreamLoader
from reslab.data.transforms import BatchAugment, CropFlipDraws

from .images import write_broken_images, write_odd_images
from .order import epoch_order

SAME_BOX_LEVELS = 1.5  # mean |difference| in grey levels between two resamplings of one box (same filter)
OTHER_FILTER_LEVELS = 2.5  # the same between roi_align's box-like filter and a triangle filter, on detailed photos


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory, photos) -> Path:
    """A real photo as a 1800x1200 camera JPEG."""
    path = tmp_path_factory.mktemp("big") / "cat.jpg"
    Image.open(photos["chelsea"]).convert("RGB").resize((1800, 1200), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def full_size_reference(path: Path, box, flip: bool, size: int = 224) -> np.ndarray:
    left, top, w, h = box
    ref = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR,
                                                 box=(left, top, left + w, top + h))
    ref = np.asarray(ref).transpose(2, 0, 1)
    return ref[:, :, ::-1] if flip else ref


def test_random_boxes_fit_repeat_and_follow_torchvision_ranges():
    for i in range(200):
        left, top, w, h = random_resized_box(640, 480, np.random.default_rng(i))
        assert left >= 0 and left + w <= 640 and top >= 0 and top + h <= 480
        assert w * h >= 0.08 * 640 * 480 * 0.9
    assert train_draw(640, 480, 3, 1, 7) == train_draw(640, 480, 3, 1, 7)
    assert train_draw(640, 480, 3, 1, 7) != train_draw(640, 480, 3, 2, 7)  # a new epoch draws anew
    assert center_box(400, 300, 256, 224) == pytest.approx((200 - 131.25, 150 - 131.25, 262.5, 262.5))


def test_reduced_scale_decoding_maps_the_box(big_photo):
    """The crop drawn on the full size, decoded at 1/2..1/8 and mapped, matches the full-size crop."""
    crops = TrainCrops(224, 3, "bilinear", seed=0)
    reductions, errors, unmapped = [], [], []
    for i in range(12):
        draw = train_draw(1800, 1200, 0, 0, i)
        reductions.append(jpeg_reduction(draw.box, 224))
        out = crops(big_photo, i, 0).astype(np.float32)
        errors.append(np.abs(out - full_size_reference(big_photo, draw.box, draw.flip)).mean())
        r = reductions[-1]
        left, top, w, h = draw.box
        wrong = (left, top, w * r / (r + 1), h)  # a box that is slightly off
        unmapped.append(np.abs(out - full_size_reference(big_photo, wrong, draw.flip)).mean())
    assert max(reductions) >= 4  # most crops of a large photo decode at 1/4 or less
    assert max(errors) < SAME_BOX_LEVELS
    assert min(unmapped) > 3 * max(errors)


def test_batch_crops_match_per_image_resized_crop(big_photo, photos):
    images = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1).copy())
              for p in (big_photo, photos["grace_hopper"], photos["chelsea"])]
    for epoch in range(3):
        boxes = [train_draw(t.shape[2], t.shape[1], 0, epoch, i).box for i, t in enumerate(images)]
        out = resized_crops(images, boxes, 160, budget=1 << 20)  # a small budget: several chunks
        for k, (t, (left, top, w, h)) in enumerate(zip(images, boxes)):
            ref = TF.resized_crop(t, top, left, h, w, [160, 160], antialias=True).float()
            assert (out[k] - ref).abs().mean() < OTHER_FILTER_LEVELS


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_shows_images_as_pillow_does(orientation, photos):
    img = Image.open(photos["chelsea"]).convert("RGB").resize((48, 32))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", exif=exif)
    upright = np.asarray(_transposed(buffer))
    turned = orient(torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()), orientation)
    assert np.array_equal(turned.numpy().transpose(1, 2, 0), upright)


def _transposed(buffer: io.BytesIO) -> Image.Image:
    from PIL import ImageOps

    buffer.seek(0)
    return ImageOps.exif_transpose(Image.open(buffer))


def test_color_jitter_is_per_image():
    batch = torch.full((2, 3, 4, 4), 100.0)
    batch[:, 0] = 200.0
    out = color_jitter(batch, torch.tensor([[1.5, 1.0, 1.0], [1.0, 1.0, 0.0]]))
    assert torch.allclose(out[0], (batch[0] * 1.5).clamp(0, 255))
    gray = 0.2989 * 200 + 0.587 * 100 + 0.114 * 100
    assert torch.allclose(out[1], torch.full((3, 4, 4), gray), atol=1e-3)  # saturation 0: grey


def test_gpu_path_on_cpu_tensors_matches_the_cpu_path(big_photo, tmp_path):
    """The same draws on both paths: nvJPEG's work done by the CPU decoder here, the crops by roi_align."""
    pre = Preprocess(224, 256, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(big_photo).save(rotated, exif=exif, quality=92)
    sources = [big_photo, rotated, big_photo.read_bytes()]
    read = ReadEncoded(3)
    payloads = [read(s, i, 0) for i, s in enumerate(sources)]
    batch = RawBatch(payloads, torch.zeros(3, dtype=torch.long), [0, 1, 2], [])
    on_device = DeviceCrops(pre, torch.device("cpu"), train=True)(batch, 0)
    crops = TrainCrops(224, 3, "bilinear", seed=0)
    on_cpu = pre.normalize(torch.from_numpy(np.stack([crops(s, i, 0) for i, s in enumerate(sources)])))
    levels = (on_device - on_cpu).abs().mean(dim=(1, 2, 3)) * 0.25 * 255
    assert levels.max() < OTHER_FILTER_LEVELS
    assert on_device.shape == (3, 3, 224, 224)


def test_gpu_path_hands_odd_files_to_the_cpu_and_skips_broken_ones(tmp_path):
    odd = write_odd_images(tmp_path / "odd")
    broken = write_broken_images(tmp_path / "broken")
    read = ReadEncoded(3)
    payloads = [read(p, i, 0) for i, p in enumerate(odd.values())]
    kinds = {name: type(p).__name__ for name, p in zip(odd, payloads)}
    assert kinds["exif_rotated"] == kinds["grayscale"] == "EncodedJpeg"
    assert kinds["cmyk"] == kinds["palette"] == kinds["16bit"] == "ndarray"  # decoded by the worker
    images, reasons = decode_on_device(payloads, 3, torch.device("cpu"))
    assert all(r is None for r in reasons)
    shapes = {name: tuple(t.shape) for name, t in zip(odd, images)}
    assert shapes["exif_rotated"] == (3, 40, 30) and shapes["cmyk"] == (3, 30, 40)
    with pytest.raises(ValueError, match="notes.jpg: not an image"):
        read(broken["text"], 0, 0)


def _folder(tmp_path: Path, photos: dict[str, Path]) -> Path:
    root = tmp_path / "photos"
    for c, names in (("cats", ["chelsea", "grace_hopper"]), ("other", ["camera", "chelsea"])):
        (root / "train" / c).mkdir(parents=True)
        (root / "val" / c).mkdir(parents=True)
        for k, name in enumerate(names * 3):
            Image.open(photos[name]).convert("RGB").save(root / "train" / c / f"{name}{k}.jpg", quality=90)
        Image.open(photos[names[0]]).convert("RGB").save(root / "val" / c / "v.jpg")
    (root / "train" / "cats" / "broken.jpg").write_text("not an image")
    return root


@pytest.mark.filterwarnings("ignore:skipping unreadable image")  # the skip is asserted below
@pytest.mark.parametrize("path", ["cpu", "gpu", "per-image"])
def test_stream_loader_sees_every_image_once_per_epoch_across_ranks(path, tmp_path, photos):
    root = _folder(tmp_path, photos)
    dataset = load_dataset(str(root), tmp_path / "cache")
    pre = Preprocess(64, 73, (0.5,) * 3, (0.25,) * 3)
    device = torch.device("cpu")
    seen, skipped = [], SkipLog()
    for rank in range(2):
        if path == "cpu":
            read, finish, stack = TrainCrops(64, 3, "bilinear", 0), NormalizeBatch(pre, device, 0.2), True
        elif path == "per-image":
            options = AugmentOptions(preset="imagenet", auto_augment="randaugment", color_jitter=0.2)
            read, finish, stack = per_image_transform(options, pre, 0), to_device(device), True
        else:
            read, finish, stack = ReadEncoded(3), DeviceCrops(pre, device, True, jitter=0.2), False
        loader = StreamLoader(dataset.train, read, finish, 2, skipped, device, workers=1, shuffle=True, seed=5,
                              rank=rank, world_size=2, stack=stack, background=path == "gpu")
        loader.set_epoch(1)
        for x, y in loader:
            assert x.shape[1:] == (3, 64, 64) and x.dtype == torch.float32
            seen.extend(y.tolist())
    assert sorted(seen) == sorted(y for p, y in zip(dataset.train.paths, dataset.train.labels)
                                  if p.name != "broken.jpg")
    assert list(skipped.files) == [str(root / "train" / "cats" / "broken.jpg")]
    mine = epoch_order(len(dataset.train), 5, 1, True, 0, 2, 2).tolist()
    theirs = epoch_order(len(dataset.train), 5, 1, True, 1, 2, 2).tolist()
    assert sorted(mine + theirs) == list(range(len(dataset.train)))


def test_per_image_draws_depend_on_seed_epoch_and_index_only(tmp_path, photos):
    """RandAugment and erasing on the per-image path draw by (seed, epoch, index): the same batches whatever
    the workers and the batch size, other draws in another epoch."""
    dataset = load_dataset(str(_folder(tmp_path, photos)), tmp_path / "cache")
    pre = Preprocess(48, 55, (0.5,) * 3, (0.25,) * 3)
    options = AugmentOptions(preset="imagenet", auto_augment="randaugment", random_erasing=0.5)
    read = per_image_transform(options, pre, seed=3)

    def epoch(workers: int, batch: int, number: int) -> torch.Tensor:
        loader = StreamLoader(dataset.train, read, to_device(torch.device("cpu")), batch, SkipLog(),
                              torch.device("cpu"), workers=workers, seed=3)
        loader.set_epoch(number)
        with pytest.warns(UserWarning, match="skipping unreadable image .*broken.jpg"):
            return torch.cat([x for x, _ in loader])

    first = epoch(0, 4, 1)
    assert len(first) == len(dataset.train) - 1  # the broken file skipped
    assert torch.equal(first, epoch(2, 3, 1))
    assert not torch.equal(first, epoch(0, 4, 2))


def test_per_image_colour_jitter_is_the_batch_operation(photos):
    """The per-image path jitters with ``batch_ops.color_jitter`` and each sample's own factors, as the CPU and
    GPU paths do; its crop and flip draws stay those without jitter."""
    pre = Preprocess(40, 46, (0.5,) * 3, (0.25,) * 3)
    plain = per_image_transform(AugmentOptions(preset="imagenet"), pre, seed=7)(photos["chelsea"], 3, 2)
    jittered = per_image_transform(AugmentOptions(preset="imagenet", color_jitter=0.4), pre, seed=7)(
        photos["chelsea"], 3, 2)
    crop = torch.from_numpy(plain * 0.25 + 0.5).mul(255).round()  # the uint8 crop, recovered
    factors = torch.from_numpy(jitter_factors(7, 2, [3], 0.4))
    expected = (color_jitter(crop[None], factors)[0].round() / 255 - 0.5) / 0.25
    assert torch.allclose(torch.from_numpy(jittered), expected, atol=1e-5)
    assert not torch.allclose(torch.from_numpy(jittered), torch.from_numpy(plain), atol=0.1)


def test_per_image_crops_are_those_of_the_other_paths(photos):
    """The per-image path crops as the CPU path does (imagenet preset) and pad-and-crops as the in-memory path
    does (cifar preset): the same pixels for the same draws, before its per-image policies."""
    pre = Preprocess(40, 46, (0.5,) * 3, (0.25,) * 3)
    source, index, epoch = photos["chelsea"], 5, 3
    per_image = per_image_transform(AugmentOptions(preset="imagenet"), pre, seed=11)(source, index, epoch)
    cpu = TrainCrops(40, 3, "bilinear", 11)(source, index, epoch)
    assert np.allclose(per_image, pre.normalize(cpu[None])[0], atol=1e-5)  # fp32: x / 255 - mean, or x - 255 mean
    shifted = per_image_transform(AugmentOptions(preset="cifar", crop_padding=6), pre, seed=11)(source, index, epoch)
    dy, dx, flip = shift_draw(6, 11, epoch, index)
    image = torch.from_numpy(pre.geometry(pre.open(source)))[None]
    in_memory = BatchAugment(AugmentOptions(preset="cifar", crop_padding=6), pre).crop_flip(
        image, CropFlipDraws(torch.tensor([dy]), torch.tensor([dx]), torch.tensor([flip])))
    assert np.allclose(shifted, pre.normalize(in_memory.numpy())[0], atol=1e-5)


def test_pack_round_trip(tmp_path, photos):
    root = _folder(tmp_path, photos)
    out = tmp_path / "photos.npz"
    report = pack_folder(root, out, short_side=96, quality=90)
    assert report.counts == {"train": 12, "val": 2} and len(report.skipped) == 1
    assert "broken.jpg" in next(iter(report.skipped))
    assert report.bytes_after < report.bytes_before
    dataset = load_dataset(str(out), tmp_path / "cache")
    assert isinstance(dataset.train, PackSplit) and dataset.classes == ["cats", "other"]
    assert dataset.packed_from["source"] == str(root) and dataset.packed_from["short_side"] == 96
    original = load_dataset(str(root), tmp_path / "cache")
    files = {str(p.relative_to(root)): y for p, y in zip(original.train.paths, original.train.labels)}
    for i, name in enumerate(dataset.train.names):
        assert files[name] == dataset.train.labels[i]
        img = Image.open(io.BytesIO(dataset.train.source(i)))
        source = Image.open(root / name)
        assert min(img.size) == 96 and abs(img.size[0] / img.size[1] - source.size[0] / source.size[1]) < 0.02
    crops = TrainCrops(64, 3, "bilinear", 0)
    assert crops(dataset.train.source(0), 0, 0).shape == (3, 64, 64)


def test_pack_failure_keeps_the_old_pack(tmp_path, photos):
    root = _folder(tmp_path, photos)
    out = tmp_path / "photos.npz"
    pack_folder(root, out, short_side=64)
    before = out.read_bytes()
    empty = tmp_path / "empty"
    for c in ("a", "b"):
        (empty / c).mkdir(parents=True)
        (empty / c / "x.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="no readable training images"):
        pack_folder(empty, out, short_side=64)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="an .npz file"):
        pack_folder(root, tmp_path / "photos.zip")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs a CUDA GPU")
def test_nvjpeg_decodes_as_the_cpu_does(big_photo, photos):
    read = ReadEncoded(3)
    payloads = [read(p, i, 0) for i, p in enumerate([big_photo, photos["grace_hopper"]])]
    on_gpu, _ = decode_on_device(payloads, 3, torch.device("cuda"))
    on_cpu, _ = decode_on_device(payloads, 3, torch.device("cpu"))
    for g, c in zip(on_gpu, on_cpu):
        assert g.is_cuda and g.shape == c.shape
        assert (g.cpu().float() - c.float()).abs().mean() < 1.0  # IDCT implementations differ by rounding


def test_training_from_a_pack_records_the_folder(tmp_path, photos, capsys):
    from reslab.cli import main
    from reslab.config import TrainConfig
    from reslab.modelfile import read_model_info
    from reslab.train.trainer import Trainer

    root = _folder(tmp_path, photos)
    main(["pack", str(root), str(tmp_path / "p.npz"), "--short-side", "80"])
    assert "skipped 1 unreadable file" in capsys.readouterr().out
    cfg = TrainConfig(data=str(tmp_path / "p.npz"), model="resnet18", image_size=72, in_memory=False, workers=1,
                      epochs=1, batch_size=4, out_dir=str(tmp_path / "runs"), name="r", device="cpu", amp=False,
                      color_jitter=0.2)
    trainer = Trainer(cfg)
    assert trainer.data.path == "cpu" and isinstance(trainer.data.train.split, PackSplit)
    trainer.fit()
    info = read_model_info(tmp_path / "runs" / "r" / "best.safetensors")
    assert info.training["packed_from"]["source"] == str(root)
    assert info.training["packed_from"]["short_side"] == 80


def test_decode_gpu_is_refused_with_the_reason(tmp_path, photos):
    from reslab.data.options import AugmentOptions
    from reslab.data.pipeline import training_path

    with pytest.raises(ValueError, match="--decode gpu: JPEGs are decoded on the GPU only when training on one"):
        training_path("gpu", torch.device("cpu"), AugmentOptions(preset="imagenet"))
    with pytest.raises(ValueError, match="--decode gpu does not run RandAugment or TrivialAugment: they run on"):
        training_path("gpu", torch.device("cpu"), AugmentOptions(preset="imagenet", auto_augment="randaugment"))


@pytest.mark.parametrize("augment", [AugmentOptions(preset="imagenet"), AugmentOptions(preset="cifar"),
                                     AugmentOptions(preset="imagenet", color_jitter=0.3),
                                     AugmentOptions(preset="imagenet", auto_augment="trivialaugment"),
                                     AugmentOptions(preset="cifar", random_erasing=0.25)])
def test_the_augmentation_table_picks_and_refuses_paths(augment):
    """A path is chosen only where the table says it runs every augmentation asked for, and the in-memory path
    refuses what it does not run, naming it."""
    from reslab.data.augmentations import AUGMENTATIONS, not_run_by
    from reslab.data.pipeline import training_path

    asked = [a for a in AUGMENTATIONS if a.requested(augment)]
    path = training_path("auto", torch.device("cpu"), augment)
    assert all(path in a.paths for a in asked) and not not_run_by(path, augment)
    expected = "cpu" if all("cpu" in a.paths for a in asked) else "per-image"
    assert path == expected
    pre = Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3)
    if all("memory" in a.paths for a in asked):
        BatchAugment(augment, pre)
    else:
        with pytest.raises(ValueError, match="in-memory batches do not run RandomResizedCrop"):
            BatchAugment(augment, pre)


def test_pack_keeps_small_jpegs_as_they_are(tmp_path, photos):
    root = _folder(tmp_path, photos)
    pack_folder(root, tmp_path / "p.npz", short_side=4096)
    dataset = load_dataset(str(tmp_path / "p.npz"), tmp_path / "cache")
    for i, name in enumerate(dataset.train.names):
        assert dataset.train.source(i) == (root / name).read_bytes()


@pytest.mark.parametrize("orientation", [1, 6])
def test_small_jpegs_crop_with_torchvision_as_with_pillow(orientation, tmp_path, photos):
    """Crops that need every pixel are decoded by torchvision: the same box and flip as Pillow's path."""
    path = tmp_path / "small.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(photos["grace_hopper"]).convert("RGB").resize((200, 150)).save(path, quality=92, exif=exif)
    crops = TrainCrops(224, 3, "bilinear", seed=0)
    data = path.read_bytes()
    for i in range(6):
        fast = crops._full_scale_jpeg(data, i, 0)
        assert fast is not None and fast.shape == (3, 224, 224)
        assert np.abs(fast.astype(np.float32) - crops._pillow(data, i, 0, "small.jpg")).mean() < SAME_BOX_LEVELS


def test_a_pack_of_small_images_trains_from_memory(tmp_path, tiny_folder):
    from reslab.config import TrainConfig
    from reslab.train.trainer import Trainer

    pack_folder(tiny_folder, tmp_path / "tiny.npz")
    trainer = Trainer(TrainConfig(data=str(tmp_path / "tiny.npz"), model="resnet20", epochs=1, batch_size=32,
                                  out_dir=str(tmp_path / "runs"), name="t", device="cpu", amp=False))
    assert trainer.data.in_memory and trainer.data.path == "memory"
    assert len(trainer.data.train) * 32 >= 150 and trainer.train_one_epoch()["images_per_s"] > 0


def test_pack_of_train_and_test_folders_keeps_test_apart(tmp_path, photos):
    """Without val/, the test split is packed as test (never as val): training holds out part of train."""
    root = _folder(tmp_path, photos)
    (root / "val").rename(root / "test")
    pack_folder(root, tmp_path / "p.npz", short_side=64)
    dataset = load_dataset(str(tmp_path / "p.npz"), tmp_path / "cache")
    assert [n.split("/")[0] for n in dataset.test.names] == ["test", "test"]
    assert all(n.startswith("train/") for n in dataset.val.names + dataset.train.names)
