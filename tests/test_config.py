import argparse

import pytest
import yaml

from reslab.config import TrainConfig, add_config_flags, config_from_args, config_from_dict, load_yaml


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return config_from_args(parser.parse_args(argv))


def test_config_round_trips_through_yaml(tmp_path):
    cfg = TrainConfig(model="resnet20", epochs=7, lr=0.05, milestones=[3, 5], freeze=["layer1"], mean=[0.5] * 3,
                      std=[0.2] * 3, amp=True, in_memory=False)
    cfg.save(tmp_path / "c.yaml")
    assert config_from_dict(load_yaml(tmp_path / "c.yaml")) == cfg


def test_flags_override_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": "resnet20", "epochs": 3, "lr": 0.1}))
    cfg = parse(["--config", str(tmp_path / "c.yaml"), "--epochs", "5", "--no-channels-last",
                 "--milestones", "2,4", "--stem", "none"])
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.channels_last, cfg.milestones, cfg.stem) == (
        "resnet20", 5, 0.1, False, [2, 4], None)


def test_unknown_field_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['learning_rate'\]"):
        config_from_dict(load_yaml(tmp_path / "c.yaml"))


@pytest.mark.parametrize("data,message", [
    ({"epochs": "many"}, "'epochs': expected int"),
    ({"amp": "maybe"}, "'amp': expected true/false"),
    ({"schedule": "linear"}, "'schedule': 'linear' is not one of"),
    ({"batch_size": 0}, "'batch_size' must be at least 1"),
])
def test_bad_values_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(data)


def test_yaml_that_is_not_a_mapping(tmp_path):
    (tmp_path / "c.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_yaml(tmp_path / "c.yaml")


def test_shipped_recipes_load():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(recipes) >= 5
    for path in recipes:
        config_from_dict(load_yaml(path))


def test_every_field_is_a_documented_flag():
    import dataclasses

    assert all(f.metadata["help"] for f in dataclasses.fields(TrainConfig))
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    text = parser.format_help()
    assert "--warmup-epochs WARMUP_EPOCHS" in text and "linear warm-up length" in text


def test_amp_is_auto_unless_forced_on_or_off(tmp_path):
    assert TrainConfig().amp == "auto" and parse([]).amp == "auto"
    assert (parse(["--amp"]).amp, parse(["--no-amp"]).amp, parse(["--amp", "auto"]).amp) == (True, False, "auto")
    (tmp_path / "c.yaml").write_text("amp: auto\n")
    assert parse(["--config", str(tmp_path / "c.yaml")]).amp == "auto"
    assert parse(["--config", str(tmp_path / "c.yaml"), "--no-amp"]).amp is False
    assert config_from_dict({"amp": "on"}).amp is True
    assert config_from_dict({"amp": None}).amp == "auto"  # the config.yaml of a run saved before auto existed
    with pytest.raises(ValueError, match="'amp': expected true/false/auto, got 'sometimes'"):
        parse(["--amp", "sometimes"])
