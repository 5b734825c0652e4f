"""One preprocessing, one tensor: a JPEG gives the same input tensor to eval, predict, serve and the export
check, because the decode policy travels with the model."""

import numpy as np
import pytest
import torch

from reslab.data.loaders import SkipLog
from reslab.data.pipeline import make_loader
from reslab.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from reslab.data.splits import FileSplit
from reslab.infer.predictor import Predictor
from reslab.infer.reference import reference_batch
from reslab.modelfile import ModelInfo, ModelSpec, save_model_file
from reslab.models import create_model
from reslab.serve.app import Server
from reslab.serve.settings import ServeConfig


@pytest.fixture(scope="module")
def model_224(tmp_path_factory):
    info = ModelInfo(ModelSpec("resnet18", 2), ["a", "b"], Preprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD))
    return save_model_file(tmp_path_factory.mktemp("m224") / "m.safetensors", create_model("resnet18", 2), info), info


def test_eval_predict_serve_and_export_check_see_the_same_tensor(model_224, photos):
    path, info = model_224
    jpeg = photos["grace_hopper"]
    predictor = Predictor.from_file(path, backend="torch", precision="fp32")
    predicted = predictor.preprocess([jpeg])[0]
    loader = make_loader(FileSplit([jpeg], [0]), info.preprocess, 1, torch.device("cpu"), SkipLog(), workers=0)
    evaluated = next(iter(loader))[0][0].numpy()
    served_predictor = Server(ServeConfig(models=[str(path)], backend="torch", precision="fp32")).slots[0]._load()
    served = served_predictor.preprocess([jpeg.read_bytes()], [jpeg.name])[0]
    checked = reference_batch(info.preprocess, [jpeg])[0]
    for other in (evaluated, served, checked):
        assert np.array_equal(predicted, other)


def test_the_decode_policy_is_stored_and_changes_the_decoding(model_224, photos):
    path, info = model_224
    assert info.preprocess.decode == "reduced"
    jpeg = photos["grace_hopper"]  # 512x600: decoded at 1/2 scale for a 256 px resize
    reduced = info.preprocess.open(jpeg)
    full = Preprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD, decode="full").open(jpeg)
    assert min(reduced.size) >= 256 and reduced.size[0] < full.size[0]
    assert Predictor.from_file(path, backend="torch", precision="fp32").info.preprocess.decode == "reduced"
    with pytest.raises(ValueError, match="decode policy 'fast'"):
        Preprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD, decode="fast")
