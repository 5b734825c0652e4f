"""Models: torchvision equivalence, parameter and MAC counts, options, freezing, backbones."""

import pytest
import torch
import torchvision

from reslab.models import count_macs, count_params, create_model, freeze, list_models, set_train_mode

IMAGENET_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
IMAGENET_GMACS = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnet101": 7.80, "resnet152": 11.51}


@pytest.mark.parametrize("name", list(IMAGENET_PARAMS))
def test_same_state_dict_and_logits_as_torchvision(name):
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name).eval().double()
    # non-trivial BatchNorm statistics, so a wrong order of layers would show
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = create_model(name).eval().double()
    theirs = reference.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    ours.load_state_dict(theirs)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(IMAGENET_PARAMS))
def test_imagenet_parameter_and_mac_counts(name):
    model = create_model(name)
    assert count_params(model) == IMAGENET_PARAMS[name]
    assert round(count_macs(model, 224) / 1e9, 2) == IMAGENET_GMACS[name]


def test_cifar_resnet20_is_the_paper_network():
    model = create_model("resnet20", num_classes=10)
    assert count_params(model) == 269_722
    assert 40e6 < count_macs(model, 32) < 42e6
    # option A: no parameters in shortcuts, 16-32-64 channels, three stages of three blocks
    assert not any("downsample" in k for k in model.state_dict())
    assert model.out_channels == [16, 32, 64]
    assert [len(s) for s in model.stages()] == [3, 3, 3]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth,params", [(32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)])
def test_cifar_resnet_family_counts(depth, params):
    assert count_params(create_model(f"resnet{depth}", num_classes=10)) == params


def test_list_models_names_every_depth():
    depths = {f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)}
    video = {f"{name}{suffix}" for name in depths for suffix in ("-3d", "-frames")}
    video |= {"r3d_18", "mc3_18", "r2plus1d_18"}
    assert set(list_models()) == depths | video


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19")


def test_options_change_the_network():
    gray = create_model("resnet18", num_classes=7, in_chans=1, stem="cifar", dropout=0.2)
    assert gray.conv1.weight.shape == (64, 1, 3, 3)
    assert isinstance(gray.maxpool, torch.nn.Identity)
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    se = create_model("resnet50", num_classes=10, se=True)
    assert any(k.startswith("layer1.0.se.fc1") for k in se.state_dict())
    assert se(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_zero_init_residual_makes_blocks_identity_at_start():
    model = create_model("resnet18", zero_init_residual=True)
    assert all(b.bn2.weight.detach().abs().sum().item() == 0 for s in model.stages() for b in s)


def test_features_only_serves_as_detection_backbone():
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    backbone = create_model("resnet18", features_only=True)
    feats = backbone(torch.randn(1, 3, 128, 128))
    assert list(feats) == ["layer1", "layer2", "layer3", "layer4"]
    assert [f.shape[1] for f in feats.values()] == backbone.out_channels == [64, 128, 256, 512]
    assert [f.shape[-1] for f in feats.values()] == [32, 16, 8, 4]

    fpn = BackboneWithFPN(backbone, {n: str(i) for i, n in enumerate(feats)}, backbone.out_channels, 64)
    detector = FasterRCNN(fpn, num_classes=3, min_size=128, max_size=128).eval()
    with torch.no_grad():
        (result,) = detector([torch.rand(3, 128, 128)])
    assert set(result) == {"boxes", "labels", "scores"}


def test_freeze_all_but_head_trains_only_fc_and_holds_bn_statistics():
    model = create_model("resnet20", num_classes=10, freeze_parts=["all-but-head"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    set_train_mode(model, True)
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) + 3)
    assert torch.equal(model.bn1.running_mean, before)
    assert model.fc.training


def test_freeze_unknown_part_names_the_parts():
    with pytest.raises(ValueError, match="layer9.*conv1"):
        freeze(create_model("resnet18"), ["layer9"])
