"""Video: 3D networks from 2D ones, clips decoded by TorchCodec from generated MP4s, training on clips."""


import numpy as np
import pytest
import torch

from reslab.data.clips import ClipRead, sample_clips
from reslab.data.moving import write_video
from reslab.data.preprocess import Preprocess
from reslab.data.splits import VideoSource
from reslab.models import ModelSpec, build_model, create_model
from reslab.models.inflate import inflate

from .videos import counting_video, motion_clips, needs_ffmpeg, video_model_file

FP32 = 1e-4  # fp32 sums in another order (3D kernels of T taps, each 1/T of the 2D one): relative to the logits


@pytest.mark.parametrize("arch,size", [("resnet18", 64), ("resnet50", 64), ("resnet20", 32)])
def test_a_clip_of_one_frame_repeated_gives_the_2d_logits(arch, size):
    torch.manual_seed(0)
    flat = build_model(ModelSpec(arch, num_classes=7)).eval()
    deep = inflate(flat).eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics, so that eval mode does something
        for m in flat.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        deep = inflate(flat).eval()
        image = torch.randn(2, 3, size, size)
        expected = flat(image)
        got = deep(image[:, :, None].expand(-1, -1, 4, -1, -1))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=FP32 * expected.abs().max().item())
    assert all(p.dim() in (1, 2, 5) for p in deep.parameters())  # every convolution is 3D


def test_2d_weights_load_into_the_3d_network_by_name(tmp_path):
    from reslab.modelfile import ModelInfo, save_model_file

    torch.manual_seed(1)
    flat = build_model(ModelSpec("resnet20", num_classes=10)).eval()
    pre = Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3)
    save_model_file(tmp_path / "flat.safetensors", flat, ModelInfo(ModelSpec("resnet20", 10), [str(i) for i in
                                                                                               range(10)], pre))
    deep = create_model("resnet20-3d", num_classes=10, weights=tmp_path / "flat.safetensors").eval()
    image = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, got = flat(image), deep(image[:, :, None].expand(-1, -1, 5, -1, -1))
    assert torch.allclose(got, expected, atol=FP32 * expected.abs().max().item())
    assert deep.layer1[0].conv1.weight.shape == (16, 16, 3, 3, 3)  # the blocks' first convolutions see 3 frames


def test_video_networks_take_clips():
    clip = torch.randn(2, 3, 4, 32, 32)
    for arch in ("r3d_18", "mc3_18", "r2plus1d_18", "resnet20-3d", "resnet20-frames"):
        model = build_model(ModelSpec(arch, num_classes=5)).eval()
        with torch.no_grad():
            assert model(clip).shape == (2, 5), arch
    frames = build_model(ModelSpec("resnet20-frames", num_classes=5)).eval()
    with torch.no_grad():  # per-frame logits averaged: the order of the frames does not matter
        assert torch.allclose(frames(clip), frames(clip.flip(2)), atol=1e-5)


def _levels(clip: torch.Tensor) -> list[int]:
    return [round(float(f.float().mean()) / 10) for f in clip]


@needs_ffmpeg
def test_clips_are_the_frames_asked_for(tmp_path):
    from reslab.data.clips import open_video

    video = counting_video(tmp_path / "count.mp4")
    decoder = open_video(VideoSource(video))
    assert decoder.metadata.num_frames == 20
    spread = sample_clips(decoder, None, frames=4, stride=2, clips=2)
    assert spread.shape == (2, 4, 3, 32, 32)
    assert [_levels(c) for c in spread] == [[0, 2, 4, 6], [13, 15, 17, 19]]
    middle = sample_clips(decoder, None, frames=4, stride=2, clips=1)
    assert _levels(middle[0]) == [6, 8, 10, 12]  # one evaluation clip: from the middle of the video
    segment = sample_clips(decoder, (1.0, 2.0), frames=3, stride=1, clips=1)  # seconds 1-2: frames 10..19
    assert all(10 <= level < 20 for level in _levels(segment[0]))
    short = sample_clips(decoder, None, frames=15, stride=2, clips=1)  # longer than the video: the last repeated
    assert _levels(short[0]) == list(range(0, 20, 2)) + [18] * 5
    drawn = [_levels(sample_clips(decoder, None, 4, 2, None, seed_of_draw=s)[0]) for s in (3, 3, 4, 5, 6)]
    assert drawn[0] == drawn[1] and len({tuple(d) for d in drawn}) > 1  # seeded: the same draw, others differ
    assert all(np.diff(d).tolist() == [2, 2, 2] for d in drawn)


@needs_ffmpeg
def test_a_clip_is_cropped_and_flipped_alike_in_every_frame(tmp_path, photos):
    from PIL import Image

    photo = torch.from_numpy(np.array(Image.open(photos["chelsea"]).convert("RGB"))).permute(2, 0, 1)
    still = photo[None].expand(6, -1, -1, -1).clone()  # the camera does not move
    video = write_video(still, tmp_path / "still.mp4")
    pre = Preprocess(48, 55, (0.5,) * 3, (0.25,) * 3)
    read = ClipRead(pre, frames=4, stride=1, seed=0, train=True)
    clip = torch.from_numpy(read(VideoSource(video), 3, 1)).float()
    assert clip.shape == (3, 4, 48, 48)
    assert (clip - clip[:, :1]).abs().mean() < 2.0  # the same box in every frame (H.264 noise aside)
    again = torch.from_numpy(read(VideoSource(video), 3, 1)).float()
    assert torch.equal(clip, again)
    other = [torch.from_numpy(read(VideoSource(video), i, 1)).float() for i in range(8)]
    assert any((o - clip).abs().mean() > 10 for o in other)  # other samples: other boxes or flips


@needs_ffmpeg
def test_a_broken_video_is_skipped_and_named(tmp_path):
    import warnings

    from reslab.data.decoding import NormalizeBatch
    from reslab.data.loaders import SkipLog
    from reslab.data.splits import VideoSplit
    from reslab.data.streams import StreamLoader

    good = counting_video(tmp_path / "a" / "good.mp4")
    broken = tmp_path / "b" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(good.read_bytes()[:300])  # the header and nothing more
    noise = tmp_path / "b" / "noise.mp4"
    noise.write_bytes(b"not a video at all" * 10)
    pre = Preprocess(32, 36, (0.5,) * 3, (0.25,) * 3)
    split = VideoSplit([good, broken, noise], [0, 1, 1], [None] * 3)
    skipped = SkipLog("video")
    cpu = torch.device("cpu")
    loader = StreamLoader(split, ClipRead(pre, 4, 2, 0, train=False), NormalizeBatch(pre, cpu), 3, skipped, cpu,
                          workers=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(1, 3, 4, 32, 32)]
    assert set(skipped.files) == {str(broken), str(noise)}
    assert any("skipping unreadable video" in str(w.message) and "noise.mp4" in str(w.message) for w in caught)


@needs_ffmpeg
def test_export_predict_and_segments_of_a_video_model(tmp_path, photos):
    from reslab.export.run import export_model
    from reslab.infer.predictor import Predictor
    from reslab.modelfile import read_model_info

    model_file = video_model_file(tmp_path)
    info = read_model_info(model_file)
    assert info.task == "video" and info.frames == 4 and info.clip.clips == 2
    report = export_model(model_file, "onnx", tmp_path / "video.onnx", verify_images=[photos["chelsea"]])
    assert report.agreement.top1_agreement == 1.0 and report.agreement.max_abs_diff <= report.agreement.tolerance
    video = counting_video(tmp_path / "clip.mp4", frames=30, fps=10)  # 3 seconds
    torch_answer = Predictor.from_file(model_file, backend="torch", precision="fp32").predict_files([video])
    onnx_answer = Predictor.from_file(report.output, backend="onnxruntime").predict_files([video], segments=1.0)
    assert [p["label"] for p in onnx_answer[0]["predictions"][:1]] == [p["label"] for p in
                                                                        torch_answer[0]["predictions"][:1]]
    assert [(row["start"], row["end"]) for row in onnx_answer[0]["segments"]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    whole = np.mean([[p["probability"] for p in sorted(row["predictions"], key=lambda p: p["index"])]
                     for row in onnx_answer[0]["segments"]], axis=0)
    assert sorted(onnx_answer[0]["predictions"], key=lambda p: p["index"])[0]["probability"] == pytest.approx(whole[0])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    assert "not a decodable video" in Predictor.from_file(report.output, backend="onnxruntime").predict_files(
        [broken])[0]["error"]


@needs_ffmpeg
@pytest.mark.slow
def test_a_3d_network_learns_the_direction_of_a_pan_and_the_frame_average_cannot(tmp_path):
    """The motion task of `reslab bench video`, smaller: clips of CIFAR-10 sample photos panned left or right."""
    from reslab.config import TrainConfig
    from reslab.evaluate.report import run_eval
    from reslab.train.trainer import Trainer

    data = motion_clips(tmp_path / "motion", train=200, val=30, test=40)
    scores = {}
    for model in ("resnet20-3d", "resnet20-frames"):
        cfg = TrainConfig(data=str(data), task="video", model=model, clip_frames=8, frame_stride=1, flip=False,
                          eval_clips=2, epochs=8, batch_size=16, device="cpu", out_dir=str(tmp_path), name=model)
        Trainer(cfg).fit()
        scores[model] = run_eval(cfg.run_dir / "best.safetensors", str(data), tmp_path / f"eval-{model}",
                                 split="test", device="cpu").metrics["top1"]
    assert scores["resnet20-3d"] >= 0.8, scores  # 80 test clips of photos never seen
    assert scores["resnet20-frames"] <= 0.65, scores  # the order of the frames is all there is to see


@needs_ffmpeg
@pytest.mark.slow
def test_a_served_video_model_answers_an_upload_and_refuses_a_long_one(tmp_path):
    import io
    from urllib.parse import unquote

    from PIL import Image

    from reslab.infer.predictor import Predictor

    from .servers import RunningServer, stopped_cleanly

    model_file = video_model_file(tmp_path)
    video = counting_video(tmp_path / "clip.mp4", frames=30, fps=10)  # 3 seconds
    expected = Predictor.from_file(model_file, backend="torch", precision="fp32").predict_files([video], topk=2)[0]
    running = RunningServer(model_file, "--backend", "torch", "--precision", "fp32", "--max-video-s", "5")
    try:
        answer = running.client.post("/predict?topk=2", files={"file": ("clip.mp4", video.read_bytes())}).json()
        assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected["predictions"]]
        assert answer["predictions"][0]["probability"] == pytest.approx(expected["predictions"][0]["probability"],
                                                                         abs=1e-5)
        assert answer["seconds"] == pytest.approx(3.0, abs=0.2)
        long = counting_video(tmp_path / "long.mp4", frames=25, fps=4)  # 6.25 seconds
        refused = running.client.post("/predict", files={"file": ("long.mp4", long.read_bytes())})
        assert refused.status_code == 413 and "longer than the 5 s allowed (--max-video-s)" in refused.text
        explained = running.client.post("/explain", files={"file": ("clip.mp4", video.read_bytes())})
        assert explained.status_code == 200 and explained.headers["content-type"] == "image/png"
        assert unquote(explained.headers["x-class"]) == expected["predictions"][0]["label"]
        assert Image.open(io.BytesIO(explained.content)).size == (4 * 224, 224)  # the middle clip's 4 frames
        assert running.client.post("/explain", files={"file": ("long.mp4", long.read_bytes())}).status_code == 413
        broken = running.client.post("/predict", files={"file": ("broken.mp4", b"\x00" * 64)})
        assert broken.status_code == 422 and "not a decodable video" in broken.text
        assert running.client.post("/predict", files={"file": ("clip.mp4", video.read_bytes())}).status_code == 200
    finally:
        assert stopped_cleanly(running.stop())


@needs_ffmpeg
def test_check_data_reports_videos_per_class_and_the_undecodable(tmp_path):
    from reslab.data.check import check_folder, format_report

    for name, frames, fps in (("a/one.mp4", 20, 10), ("a/two.mp4", 10, 10), ("b/three.mp4", 16, 8)):
        counting_video(tmp_path / "clips" / name, frames=frames, fps=fps)
    (tmp_path / "clips" / "b" / "bad.mp4").write_bytes(b"junk" * 50)
    report = check_folder(tmp_path / "clips")
    assert report["task"] == "video" and report["classes"] == ["a", "b"]
    per_class = report["splits"]["all"]["per_class"]
    assert per_class["a"]["videos"] == 2 and per_class["a"]["seconds_total"] == pytest.approx(3.0, abs=0.2)
    assert per_class["b"]["fps"] == {8.0: 1} and per_class["a"]["sizes"] == {"32x32": 2}
    assert [u["file"] for u in report["unreadable"]] == ["b/bad.mp4"]
    assert "not a decodable video" in format_report(report)


def test_pretrained_video_weights_come_from_torchvision_s_cache(tmp_path, monkeypatch):
    """Offline here: the files torchvision's weights API names are put where torch hub keeps them; r3d_18 loads
    its Kinetics checkpoint as it is, resnet18-3d the 2D ImageNet checkpoint, inflated."""
    from reslab.models.weights import hub_checkpoint, torchvision_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    kinetics = build_model(ModelSpec("r3d_18", num_classes=400))
    imagenet = build_model(ModelSpec("resnet18", num_classes=1000))
    for arch, source in (("r3d_18", kinetics), ("resnet18", imagenet)):
        path = hub_checkpoint(torchvision_weights(arch).url)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(source.state_dict(), path)
    video = create_model("r3d_18", num_classes=400, pretrained=True)
    assert torch.equal(video.stem[0].weight, kinetics.stem[0].weight)
    assert len(video.class_names) == 400 and "abseiling" in video.class_names  # Kinetics-400's labels
    with pytest.warns(UserWarning, match="another number of classes"):  # ImageNet's 1000 classes: a new head
        inflated = create_model("resnet18-3d", num_classes=5, pretrained=True).eval()
    flat = imagenet.eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = inflated.forward_features(image[:, :, None].expand(-1, -1, 3, -1, -1))["layer4"].mean(2)
        expected = flat.forward_features(image)["layer4"]
    assert torch.allclose(features, expected, atol=FP32 * expected.abs().max().item())


def test_a_clip_is_jittered_and_normalised_frame_by_frame_as_images_are():
    """The clip path's batch step is the image path's: each frame of a clip gets its clip's factors."""
    from reslab.data.batch_ops import color_jitter

    torch.manual_seed(4)
    clips = torch.randint(0, 256, (2, 3, 4, 8, 8)).float()
    factors = torch.tensor([[1.2, 0.8, 1.1], [0.7, 1.3, 0.9]])
    jittered = color_jitter(clips, factors)
    for t in range(4):
        assert torch.equal(jittered[:, :, t], color_jitter(clips[:, :, t], factors))
    pre = Preprocess(8, 8, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    assert torch.equal(pre.normalize(clips)[:, :, 1], pre.normalize(clips[:, :, 1]))
    assert np.array_equal(pre.normalize(clips.numpy())[:, :, 2], pre.normalize(clips[:, :, 2].numpy()))
    videos = torch.stack([clips, clips.flip(2)], dim=1)  # (N, K, C, T, H, W): K clips of each video
    assert torch.equal(pre.normalize(videos)[:, 1], pre.normalize(clips.flip(2)))


def test_a_csv_index_gives_labelled_segments_and_names_bad_rows(tmp_path):
    from reslab.data.datasets import load_dataset

    rows = ["path,label,start,end"] + [f"v{i}.mp4,{'jump' if i % 2 else 'run'},{i % 3},{i % 3 + 2.5}"
                                      for i in range(20)] + ["whole.mp4,run,,"]
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    dataset = load_dataset(str(tmp_path / "index.csv"), tmp_path / "cache", task="video")
    assert dataset.task == "video" and dataset.classes == ["jump", "run"]
    every = [*dataset.train.paths, *dataset.val.paths, *dataset.test.paths]
    assert sorted(p.name for p in every) == sorted([f"v{i}.mp4" for i in range(20)] + ["whole.mp4"])
    segments = dict(zip([*dataset.train.paths, *dataset.val.paths, *dataset.test.paths],
                        [*dataset.train.segments, *dataset.val.segments, *dataset.test.segments]))
    assert segments[tmp_path / "v4.mp4"] == (1.0, 3.5) and segments[tmp_path / "whole.mp4"] is None
    (tmp_path / "bad.csv").write_text("path,label,start,end\na.mp4,x,1,\nb.mp4,y,,\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: give both start and end"):
        load_dataset(str(tmp_path / "bad.csv"), tmp_path / "cache", task="video")
    (tmp_path / "late.csv").write_text("path,label,start,end\na.mp4,x,3,2\nb.mp4,y,,\n")
    with pytest.raises(ValueError, match=r"late.csv, line 2: the segment \(3.0, 2.0\) must have 0 <= start < end"):
        load_dataset(str(tmp_path / "late.csv"), tmp_path / "cache", task="video")


@needs_ffmpeg
def test_a_kinetics_model_by_name_predicts_a_video(tmp_path, monkeypatch):
    """`reslab predict r2plus1d_18 clip.mp4`: the name becomes a video model file with Kinetics' classes, clip
    recipe and preprocessing (the checkpoint put in torch hub's cache: offline here)."""
    from reslab.infer.predictor import Predictor
    from reslab.modelfile import read_model_info
    from reslab.models.pretrained import resolve_model
    from reslab.models.weights import hub_checkpoint, torchvision_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(5)
    path = hub_checkpoint(torchvision_weights("r2plus1d_18").url)
    path.parent.mkdir(parents=True)
    torch.save(build_model(ModelSpec("r2plus1d_18", num_classes=400)).state_dict(), path)
    model_file = resolve_model("r2plus1d_18")
    info = read_model_info(model_file)
    assert info.task == "video" and (info.clip.frames, info.clip.stride) == (16, 2) and len(info.classes) == 400
    assert info.preprocess.image_size == 112 and info.preprocess.mean == pytest.approx((0.43216, 0.394666, 0.37645))
    video = counting_video(tmp_path / "clip.mp4", frames=20, size=128, fps=10)
    answer = Predictor.from_file("r2plus1d_18", backend="torch", precision="fp32").predict_files([video], topk=3)
    assert len(answer[0]["predictions"]) == 3 and answer[0]["predictions"][0]["label"] in info.classes


@needs_ffmpeg
def test_eval_of_a_video_model_reports_videos_and_clips(tmp_path):
    """``reslab eval`` of a video model: K clips per video, their mean probability its answer."""
    from reslab.evaluate.report import run_eval

    model_file = video_model_file(tmp_path)
    for split, count in (("train", 2), ("test", 3)):
        for label in ("left", "right"):
            for i in range(count):
                counting_video(tmp_path / "clips" / split / label / f"{i}.mp4", frames=12 + 2 * i, fps=10)
    report = run_eval(model_file, str(tmp_path / "clips"), tmp_path / "eval", split="test", device="cpu", worst=4,
                      explain="gradcam")
    m = report.metrics
    assert report.task == "video" and m["count"] == 6 and m["clips"] == 12 and m["clips_per_video"] == 2
    assert 0 <= m["top1"] <= m["top5"] <= 1 and 0 <= m["clip_top1"] <= 1
    assert sum(r["support"] for r in report.per_class) == 6
    assert report.files["worst_png"].stat().st_size > 0 and "6 videos" in report.text()
    assert report.files["worst_explained_png"].stat().st_size > 0  # the worst videos' heat-maps


@needs_ffmpeg
@pytest.mark.parametrize("train", [True, False])
def test_clips_decoded_on_the_device_are_the_workers_clips(tmp_path, photos, train):
    """``--decode gpu``'s finish (``DeviceClips``: decode on the device, NVDEC on a GPU), run here on the CPU: the
    same clips, crops, flips and jitter as the CPU workers' path, and a broken video dropped and named."""
    from PIL import Image

    from reslab.data.clips import DeviceClips
    from reslab.data.decoding import NormalizeBatch
    from reslab.data.streams import RawBatch

    videos = []
    for i, name in enumerate(("chelsea", "camera")):
        photo = torch.from_numpy(np.array(Image.open(photos[name]).convert("RGB").resize((80, 60)))).permute(2, 0, 1)
        frames = torch.stack([photo.roll(2 * t, dims=2) for t in range(12)])  # a pan: every frame differs
        videos.append(VideoSource(write_video(frames, tmp_path / f"{i}.mp4", 6)))
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    sources = [videos[0], VideoSource(tmp_path / "broken.mp4"), videos[1]]
    pre = Preprocess(32, 36, (0.5,) * 3, (0.25,) * 3)
    read = ClipRead(pre, 4, 2, seed=3, train=train, clips=1 if train else 2)
    jitter = 0.3 if train else 0.0
    indices, epoch = [5, 6, 7], 2
    workers = NormalizeBatch(pre, torch.device("cpu"), jitter, seed=3)(
        RawBatch(torch.from_numpy(np.stack([read(videos[0], 5, epoch), read(videos[1], 7, epoch)])),
                 torch.tensor([0, 1]), [5, 7], []), epoch)
    batch = RawBatch(sources, torch.tensor([0, 2, 1]), list(indices), [])
    on_device = DeviceClips(read, torch.device("cpu"), jitter)(batch, epoch)
    assert on_device.shape == workers.shape == ((2, 3, 4, 32, 32) if train else (2, 2, 3, 4, 32, 32))
    assert torch.allclose(on_device, workers, atol=1e-5)  # the same whole levels, jittered and normalised alike
    assert batch.indices == [5, 7] and batch.labels.tolist() == [0, 1]
    assert len(batch.failed) == 1 and batch.failed[0][0] == 6 and "not a decodable video" in batch.failed[0][1]


@needs_ffmpeg
def test_decoding_videos_on_the_gpu_needs_one(tmp_path):
    from reslab.config import TrainConfig
    from reslab.train.trainer import Trainer

    for label in ("a", "b"):
        for i in range(3):
            counting_video(tmp_path / "clips" / label / f"{i}.mp4")
    cfg = TrainConfig(data=str(tmp_path / "clips"), task="video", model="resnet20-3d", decode="gpu", device="cpu",
                      epochs=1, out_dir=str(tmp_path / "runs"), name="run")
    with pytest.raises(ValueError, match="--decode gpu: videos are decoded on the GPU only when training on one"):
        Trainer(cfg)
    assert not (tmp_path / "runs" / "run").exists()
