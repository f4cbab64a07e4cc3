"""Known-answer tests for the KD loss and the ensemble reductions (values computed by hand)."""

from __future__ import annotations

import math

import pytest
import torch

from harness.kd import FrozenTeacher, ensemble_probs, kd_loss

TEACHER = torch.tensor([[0.8, 0.2]])
TARGET = torch.tensor([0])


def test_kd_loss_t1_matches_hand_computation():
    student = torch.tensor([[0.0, 0.0]])  # q = [0.5, 0.5]
    ce = math.log(2)  # 0.693147
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)  # 0.192745
    got = kd_loss(student, TARGET, TEACHER, temperature=1.0, kd_weight=0.5).item()
    assert got == pytest.approx(0.5 * ce + 0.5 * kl, abs=1e-6)
    assert got == pytest.approx(0.442946, abs=1e-5)  # golden value


def test_kd_loss_t4_scales_kl_by_t_squared():
    student = torch.tensor([[0.0, 4.0]])  # at T=4: softmax([0, 1]) = [0.268941, 0.731059]
    q0 = 1 / (1 + math.e)
    kl = 0.8 * math.log(0.8 / q0) + 0.2 * math.log(0.2 / (1 - q0))  # 0.612853
    ce = math.log(1 + math.exp(4))  # 4.018150
    got = kd_loss(student, TARGET, TEACHER, temperature=4.0, kd_weight=0.5).item()
    assert got == pytest.approx(0.5 * ce + 0.5 * 16 * kl, abs=1e-5)
    assert got == pytest.approx(6.911899, abs=1e-4)  # golden value


def test_kd_weight_edges():
    student = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    y = torch.tensor([1, 0])
    teacher = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
    ce = torch.nn.functional.cross_entropy(student, y)
    assert kd_loss(student, y, teacher, 2.0, 0.0).item() == pytest.approx(ce.item())
    log_q = torch.log_softmax(student / 2.0, dim=1)
    pure_kd = 4.0 * (teacher * (teacher.log() - log_q)).sum(1).mean()
    assert kd_loss(student, y, teacher, 2.0, 1.0).item() == pytest.approx(pure_kd.item(), abs=1e-6)
    # no teacher -> plain cross-entropy whatever the weight
    assert kd_loss(student, y, None, 2.0, 0.7).item() == pytest.approx(ce.item())


def test_kd_loss_zero_when_student_equals_teacher_and_weight_one():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    p = torch.softmax(logits / 3.0, dim=1)
    assert kd_loss(logits, torch.tensor([1]), p, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_ensemble_reduce_probs_vs_logits():
    z1, z2 = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    p1 = math.exp(2) / (math.exp(2) + 1)  # 0.880797
    probs = ensemble_probs([z1, z2], 1.0, "probs")
    assert probs[0].tolist() == pytest.approx([(p1 + 0.5) / 2, (1 - p1 + 0.5) / 2], abs=1e-6)  # [0.690399, 0.309601]
    logits = ensemble_probs([z1, z2], 1.0, "logits")
    assert logits[0].tolist() == pytest.approx(
        [1 / (1 + math.exp(-1)), 1 / (1 + math.e)], abs=1e-6
    )  # [0.731059, 0.268941]
    with pytest.raises(ValueError, match="ensemble_reduce"):
        ensemble_probs([z1], 1.0, "median")


def test_frozen_teacher_stays_in_eval_mode_without_grad():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    teacher = FrozenTeacher([net], reduce="probs")
    teacher.train()
    assert not net.training and not net[1].training
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(5, 3, requires_grad=True)
    out = teacher.soft_targets(x, 2.0)
    assert not out.requires_grad and out.sum(1).allclose(torch.ones(5))
