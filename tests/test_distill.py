"""Knowledge distillation: the loss on a hand-computed case, a frozen teacher, and a student that
follows its teacher more closely than the same student trained alone."""

import math

import numpy as np
import pytest
import torch

from reslab.config import TrainConfig
from reslab.infer.predictor import Predictor
from reslab.modelfile import load_model_file, read_model_info
from reslab.train.distill import Teacher, distillation_loss
from reslab.train.trainer import Trainer


def test_loss_matches_a_hand_computed_case():
    s, t, y = [1.0, 2.0, 0.0], [0.0, 3.0, 1.0], 1
    alpha, temp = 0.3, 2.0

    def softmax(v, temperature=1.0):
        e = [math.exp(x / temperature) for x in v]
        return [x / sum(e) for x in e]

    hard = -math.log(softmax(s)[y])
    p_t, p_s = softmax(t, temp), softmax(s, temp)
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    expected = (1 - alpha) * hard + alpha * temp**2 * kl
    got = distillation_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([y]), alpha, temp)
    assert abs(float(got) - expected) < 1e-6
    same = distillation_loss(torch.tensor([s]), torch.tensor([s]), torch.tensor([y]), 1.0, temp)
    assert abs(float(same)) < 1e-7  # a student equal to its teacher has nothing left to learn


def test_teacher_is_frozen_and_maps_other_preprocessing(trained_model):
    info = read_model_info(trained_model)
    teacher = Teacher(trained_model, info.classes, info.preprocess, torch.device("cpu"))
    teacher.train()
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    assert not teacher(x).requires_grad
    # a student at 64 px with other statistics: the teacher still gets its own 32 px, its own normalisation
    other = type(info.preprocess)(64, 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    mapped = Teacher(trained_model, info.classes, other, torch.device("cpu"))._inputs(torch.zeros(1, 3, 64, 64))
    expected = (0.5 - torch.tensor(info.preprocess.mean)) / torch.tensor(info.preprocess.std)
    assert mapped.shape == (1, 3, 32, 32) and torch.allclose(mapped[0, :, 5, 5], expected, atol=1e-5)
    with pytest.raises(ValueError, match="teacher's classes"):
        Teacher(trained_model, info.classes[::-1], info.preprocess, torch.device("cpu"))


def _kl_to_teacher(student_path, teacher_path, images):
    student, teacher = Predictor.from_file(student_path, "torch"), Predictor.from_file(teacher_path, "torch")
    batch = teacher.preprocess(images)
    p_s, p_t = student.inference(batch), teacher.inference(batch)
    kl = float(np.mean(np.sum(p_t * (np.log(p_t + 1e-12) - np.log(p_s + 1e-12)), axis=1)))
    return kl, float(np.mean(p_s.argmax(1) == p_t.argmax(1)))


def test_distilled_student_follows_its_teacher_more_closely(trained_model, cifar_folder, tmp_path):
    common = dict(data=str(cifar_folder), model="resnet20", epochs=4, batch_size=32, lr=0.05, out_dir=str(tmp_path),
                  seed=1)
    Trainer(TrainConfig(name="alone", **common)).fit()
    Trainer(TrainConfig(name="distilled", teacher=str(trained_model), kd_alpha=0.9, kd_temperature=4.0,
                        **common)).fit()
    images = sorted((cifar_folder / "val").rglob("*.jpg"))
    kl_alone, agree_alone = _kl_to_teacher(tmp_path / "alone" / "best.safetensors", trained_model, images)
    kl_dist, agree_dist = _kl_to_teacher(tmp_path / "distilled" / "best.safetensors", trained_model, images)
    assert kl_dist < kl_alone
    assert agree_dist >= agree_alone
    _, info = load_model_file(tmp_path / "distilled" / "best.safetensors")
    assert info.training["distilled_from"]["alpha"] == 0.9
