"""Knowledge distillation: the loss on a hand-computed case, its gradient, a frozen teacher, a step that
moves a real network toward its teacher, and the run's record of it."""

import math

import pytest
import torch

from reslab.config import TrainConfig
from reslab.infer.predictor import Predictor
from reslab.modelfile import read_model_info
from reslab.models import create_model, load_model_file
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


def test_the_gradient_pulls_the_students_distribution_toward_the_teachers():
    """d(T^2 KL)/d(student logits) = T (p_student - p_teacher) at temperature T: exact, in float64."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(8, 10, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (8,), generator=generator)
    temp = 3.0
    distillation_loss(student, teacher, labels, 1.0, temp).backward()
    expected = temp * ((student / temp).softmax(1) - (teacher / temp).softmax(1)) / len(student)
    assert torch.allclose(student.grad, expected.detach(), rtol=1e-9, atol=1e-12)


def _kl(student_logits, teacher_logits, temp):
    p_t = (teacher_logits / temp).softmax(1)
    return float((p_t * (p_t.log() - (student_logits / temp).log_softmax(1))).sum(1).mean())


def test_a_distillation_step_on_a_real_network_moves_it_toward_its_teacher(trained_model, cifar_folder):
    """One SGD step on the distillation loss lowers the KL to the teacher on real images: a first-order
    decrease (lr x |gradient|^2) far above fp32 rounding, whatever the seed or the CPU."""
    info = read_model_info(trained_model)
    teacher = Teacher(trained_model, info.classes, info.preprocess, torch.device("cpu"))
    images = sorted((cifar_folder / "train").rglob("*.jpg"))[::10][:32]
    x = torch.from_numpy(Predictor.from_file(trained_model, "torch").preprocess(images))
    labels = torch.zeros(len(x), dtype=torch.long)
    temp = 4.0
    for seed in range(3):
        torch.manual_seed(seed)
        student = create_model("resnet20", len(info.classes)).eval()  # eval: the same function before and after
        optimizer = torch.optim.SGD(student.parameters(), lr=0.01)
        with torch.no_grad():
            target = teacher(x).float()
            before = _kl(student(x), target, temp)
        distillation_loss(student(x), target, labels, 1.0, temp).backward()
        optimizer.step()
        with torch.no_grad():
            after = _kl(student(x), target, temp)
        assert after < 0.9 * before, (seed, before, after)


def test_a_distilled_run_records_its_teacher(trained_model, tiny_folder, tmp_path):
    cfg = TrainConfig(data=str(tiny_folder), model="resnet20", epochs=1, batch_size=32, lr=0.05,
                      out_dir=str(tmp_path), name="distilled", teacher=str(trained_model), kd_alpha=0.9)
    Trainer(cfg).fit()
    _, info = load_model_file(tmp_path / "distilled" / "best.safetensors")
    assert info.training["distilled_from"] == {"teacher": str(trained_model.resolve()), "alpha": 0.9,
                                               "temperature": 4.0}
