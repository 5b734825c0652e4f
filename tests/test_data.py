import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.data.batch_ops import color_jitter
from reslab.data.check import check_folder
from reslab.data.datasets import load_dataset
from reslab.data.folders import load_folder
from reslab.data.images import UnreadableImageError, open_image
from reslab.data.loaders import SkipLog, TensorLoader, decode_split
from reslab.data.options import AugmentOptions
from reslab.data.preprocess import Preprocess
from reslab.data.splits import ArraySplit, stratified_split
from reslab.data.transforms import BatchAugment, CropFlipDraws

from .conftest import SAMPLES
from .images import gradient, write_broken_images, write_odd_images


@pytest.mark.parametrize("kind", ["grayscale", "palette", "rgba", "cmyk", "16bit", "exif_rotated"])
def test_odd_images_open_as_8bit_rgb(tmp_path, kind):
    path = write_odd_images(tmp_path)[kind]
    img = open_image(path)
    assert img.mode == "RGB"
    # EXIF orientation 6 turns the 40x30 picture upright: 30 wide, 40 tall
    assert img.size == ((30, 40) if kind == "exif_rotated" else (40, 30))
    array = np.asarray(img)
    assert array.dtype == np.uint8 and array.std() > 10  # real content, not a blank image
    assert open_image(path, channels=1).mode == "L"


def test_16bit_values_are_scaled_not_clipped(tmp_path):
    img = np.asarray(open_image(write_odd_images(tmp_path)["16bit"], channels=1)).astype(int)
    original = np.asarray(gradient().convert("L")).astype(int)  # written as value * 257
    assert np.abs(img - original).max() <= 1


def test_exif_rotation_moves_the_content(tmp_path):
    img = np.asarray(open_image(write_odd_images(tmp_path)["exif_rotated"]))
    # the source's red channel grows left->right; rotated 90 degrees clockwise it grows top->bottom
    assert img[-1, :, 0].mean() > img[0, :, 0].mean() + 100


@pytest.mark.parametrize("kind,reason", [("truncated", "cannot decode"), ("empty", "empty file"),
                                         ("text", "not an image")])
def test_broken_images_raise_a_named_error(tmp_path, kind, reason):
    path = write_broken_images(tmp_path)[kind]
    with pytest.raises(UnreadableImageError, match=reason) as error:
        open_image(path)
    assert path.name in str(error.value)


def test_stratified_split_is_stratified_and_repeatable():
    labels = [c for c in range(4) for _ in range(50)] + [4] * 10
    a = stratified_split(labels, seed=1)
    assert a == stratified_split(labels, seed=1)
    assert a != stratified_split(labels, seed=2)
    assert sorted(i for part in a for i in part) == list(range(len(labels)))
    for part, fraction in zip(a, (0.7, 0.2, 0.1)):
        counts = Counter(labels[i] for i in part)
        for c in range(4):
            assert counts[c] == round(50 * fraction)
        assert counts[4] == round(10 * fraction)


def test_single_folder_is_split_and_the_split_is_reused(cifar_folder, tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(cifar_folder / "train", flat)
    ds = load_folder(flat, seed=3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (420, 120, 60)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(ds.split_file))
    again = load_folder(flat, seed=99, split_file=split_file)  # the saved split wins over the seed
    assert again.val.paths == ds.val.paths and again.test.paths == ds.test.paths
    assert not set(ds.train.paths) & set(ds.test.paths)


def test_train_folder_without_val_holds_out_part_of_train(cifar_folder, tmp_path):
    shutil.copytree(cifar_folder / "train", tmp_path / "d" / "train")
    ds = load_folder(tmp_path / "d")
    assert (len(ds.train), len(ds.val), ds.test) == (540, 60, None)
    assert Counter(ds.val.labels) == Counter({c: 6 for c in range(10)})


def test_val_folder_with_unknown_class_is_named(cifar_folder, tmp_path):
    shutil.copytree(cifar_folder, tmp_path / "d")
    (tmp_path / "d" / "val" / "unicorn").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['unicorn'\]"):
        load_folder(tmp_path / "d")


def test_decode_skips_broken_files_with_one_warning_each(cifar_folder, tmp_path):
    ds = load_folder(cifar_folder)
    broken = write_broken_images(tmp_path)
    ds.train.paths += list(broken.values())
    ds.train.labels += [0, 1, 2]
    skipped = SkipLog()
    pre = Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arrays = decode_split(ds.train, pre, skipped)
    assert len(arrays) == 600 and arrays.images.shape == (600, 3, 32, 32)
    assert len(skipped) == 3 and all(str(p) in skipped.files for p in broken.values())
    assert sum("skipping unreadable image" in str(w.message) for w in caught) == 3


def test_batch_augment_crops_flips_and_repeats():
    pre = Preprocess(32, 32, (0.0,) * 3, (1 / 255,) * 3)  # normalisation leaves pixel values as they are
    aug = BatchAugment(AugmentOptions(preset="cifar"), pre)
    images = torch.arange(32, dtype=torch.uint8).repeat(8, 3, 32, 1)  # column index as the pixel value
    out = aug(images, aug.draw(8, torch.Generator().manual_seed(0)))
    again = aug(images, aug.draw(8, torch.Generator().manual_seed(0)))
    assert out.shape == (8, 3, 32, 32) and torch.equal(out, again)
    row = out[:, 0, 16]  # middle row: a shifted (maybe mirrored) ramp with zero padding
    assert not torch.equal(out, images.float())
    for r in row:
        inside = r[r > 0]
        steps = (inside[1:] - inside[:-1]).unique()
        assert set(steps.tolist()) <= {1.0, -1.0}


def test_in_memory_colour_jitter_is_the_batch_operation():
    """--color-jitter on the in-memory path: each sample's drawn factors through ``batch_ops.color_jitter``,
    after the same crops and flips as without jitter."""
    pre = Preprocess(32, 32, (0.0,) * 3, (1 / 255,) * 3)
    plain, jittered = (BatchAugment(AugmentOptions(preset="cifar", color_jitter=j), pre) for j in (0.0, 0.4))
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    draws = jittered.draw(6, torch.Generator().manual_seed(1))
    assert torch.equal(plain.draw(6, torch.Generator().manual_seed(1)).dy, draws.dy)
    assert draws.jitter.shape == (6, 3) and ((draws.jitter >= 0.6) & (draws.jitter <= 1.4)).all()
    crops = plain(images, CropFlipDraws(draws.dy, draws.dx, draws.flip))
    expected = color_jitter(crops, draws.jitter).round()
    assert torch.equal(jittered(images, draws), expected)


def test_crop_padding_zero_only_flips():
    pre = Preprocess(32, 32, (0.0,) * 3, (1 / 255,) * 3)
    aug = BatchAugment(AugmentOptions(preset="cifar", crop_padding=0), pre)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = aug(images, aug.draw(16, torch.Generator().manual_seed(1)))
    flipped = [torch.equal(o, i.flip(2).float()) for o, i in zip(out, images)]
    assert all(f or torch.equal(o, i.float()) for f, o, i in zip(flipped, out, images))
    assert 0 < sum(flipped) < 16


def test_tensor_loader_epochs_are_seeded_and_shard_without_overlap():
    split = ArraySplit(np.zeros((10, 3, 4, 4), np.uint8), np.arange(10))
    pre = Preprocess(4, 4, (0.0,) * 3, (1.0,) * 3)
    loaders = [TensorLoader(split, pre, 3, torch.device("cpu"), shuffle=True, seed=5, rank=r, world_size=2)
               for r in range(2)]
    seen = [torch.cat([y for _, y in ld]).tolist() for ld in loaders]
    assert sorted(seen[0] + seen[1]) == list(range(10))
    loaders[0].set_epoch(1)
    assert torch.cat([y for _, y in loaders[0]]).tolist() != seen[0]


def test_check_data_reports_counts_duplicates_and_unreadable(cifar_folder, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(cifar_folder, root)
    first = sorted((root / "train" / "cat").iterdir())[0]
    shutil.copy(first, root / "val" / "cat" / "copy.jpg")  # a train/val leak
    write_broken_images(root / "train" / "dog")
    report = check_folder(root)
    assert report["classes"][:3] == ["airplane", "automobile", "bird"]
    assert report["splits"]["train"]["per_class"]["dog"] == 63
    assert report["splits"]["train"]["imbalance"] == round(63 / 60, 2)
    assert any("val/cat/copy.jpg" in group for group in report["duplicates"])
    assert sorted(u["file"] for u in report["unreadable"]) == [
        "train/dog/empty.png", "train/dog/notes.jpg", "train/dog/truncated.jpg"]
    assert report["sizes"]["width"]["max"] == 32


def test_cifar_by_name_offline_says_what_to_do(tmp_path, monkeypatch):
    import torchvision

    from reslab.data.datasets import load_dataset

    from .servers import free_port

    # the archive's URL on a closed local port: the download really fails, as offline (not a proxy variable:
    # urllib keeps the first opener it builds, with its proxies, for the whole test process)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"http://127.0.0.1:{free_port()}/cifar-10.tar.gz")
    with pytest.raises(ValueError, match=r"cifar10: not found in .* could not be downloaded.*image folder"):
        load_dataset("cifar10", tmp_path)


def test_a_folder_with_one_class_is_refused(tmp_path):
    (tmp_path / "only" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match="found 1 class sub-folder.*at least 2"):
        load_folder(tmp_path / "only")


def test_npz_of_arrays_and_jpeg_packs_load_with_their_splits(tmp_path):
    pack = SAMPLES / "cifar10-sample.npz"
    packed = load_dataset(str(pack), tmp_path)
    assert (len(packed.train), len(packed.val), len(packed.test)) == (3000, 600, 400)
    assert packed.classes[:2] == ["airplane", "automobile"] and packed.train.images.shape[1:] == (3, 32, 32)
    arrays = tmp_path / "arrays.npz"
    x = np.transpose(packed.train.images, (0, 2, 3, 1))
    np.savez(arrays, x_train=x, y_train=packed.train.labels, x_test=x[:50], y_test=packed.train.labels[:50])
    held = load_dataset(str(arrays), tmp_path)
    assert (len(held.train), len(held.val)) == (2700, 300)  # no val arrays: 10% held out of train
    on_test = load_dataset(str(arrays), tmp_path, eval_split="test")
    assert len(on_test.train) == 3000 and on_test.val is on_test.test and len(on_test.val) == 50
    assert np.array_equal(on_test.train.images[7], packed.train.images[7])
    assert on_test.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("content, message", [
    ({"x_test": np.zeros((2, 4, 4, 3), np.uint8), "y_test": np.zeros(2)}, "no training images"),
    ({"x_train": np.zeros((2, 4, 4, 3), np.uint8)}, "no y_train labels"),
    ({"x_train": np.zeros((2, 4, 4, 3), np.float32), "y_train": np.zeros(2)}, "must be uint8"),
])
def test_bad_npz_files_are_named_with_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    with pytest.raises(ValueError, match=message) as error:
        load_dataset(str(path), tmp_path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_dataset(str(tmp_path / "missing.npz"), tmp_path)


def test_eval_split_test_needs_a_test_split(cifar_folder, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(cifar_folder, root)
    shutil.rmtree(root / "test")
    with pytest.raises(ValueError, match="needs a test split"):
        load_dataset(str(root), tmp_path, eval_split="test")
    full = load_dataset(str(cifar_folder), tmp_path, eval_split="test")
    assert len(full.val) == len(full.test) == 100 and len(full.train) == 600


def test_channel_statistics_are_exact_for_every_channel_count():
    from reslab.data.pipeline import channel_stats

    rng = np.random.default_rng(0)
    for channels in (1, 3):
        images = rng.integers(0, 256, (7, channels, 9, 11), dtype=np.uint8)
        mean, std = channel_stats(images)
        np.testing.assert_allclose(mean, (images / 255.0).mean(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(std, (images / 255.0).std(axis=(0, 2, 3)), rtol=1e-12)


def test_datasets_go_to_reslabs_cache_unless_a_folder_is_given(tmp_path, monkeypatch):
    from reslab.config import TrainConfig
    from reslab.paths import data_cache

    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path))
    assert data_cache(TrainConfig().cache_dir) == tmp_path  # $RESLAB_CACHE is honoured by default
    assert data_cache("~/datasets") == Path.home() / "datasets"
