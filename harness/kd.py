"""Knowledge-distillation losses and frozen (ensemble) teachers.

KD loss (DESIGN.md section 4)::

    loss = (1 - kd_weight) * CE(student, y) + kd_weight * T^2 * KL(p_teacher^T || p_student^T)

The paper's alpha weights the CE term, so ``kd_weight = 1 - alpha``. An ensemble of teachers is
reduced either by averaging softened probabilities (``probs``, the paper's Eq. 2) or by
averaging logits before the softmax (``logits``, the authors' released code).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kd_loss(student_logits: Tensor, targets: Tensor, teacher_probs: Tensor | None, temperature: float, kd_weight: float) -> Tensor:
    """Hinton KD loss; ``teacher_probs`` are the teacher's softened probabilities at ``temperature``."""
    ce = F.cross_entropy(student_logits, targets)
    if teacher_probs is None or kd_weight == 0.0:
        return ce
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, teacher_probs, reduction="batchmean")
    return (1.0 - kd_weight) * ce + kd_weight * temperature**2 * kl


def ensemble_probs(teacher_logits: Sequence[Tensor], temperature: float, reduce: str = "probs") -> Tensor:
    """Soft targets of a teacher ensemble: mean of softmax(z/T) (``probs``) or softmax(mean z / T)."""
    if len(teacher_logits) == 0:
        raise ValueError("an ensemble needs at least one teacher")
    stacked = torch.stack(list(teacher_logits))
    if reduce == "probs":
        return F.softmax(stacked / temperature, dim=-1).mean(0)
    if reduce == "logits":
        return F.softmax(stacked.mean(0) / temperature, dim=-1)
    raise ValueError(f"unknown ensemble_reduce {reduce!r}; known: logits, probs")


class FrozenTeacher(nn.Module):
    """One or more frozen teacher models that give soft targets; always eval mode, no grad."""

    def __init__(self, models: Sequence[nn.Module], reduce: str = "probs") -> None:
        super().__init__()
        if reduce not in ("probs", "logits"):
            raise ValueError(f"unknown ensemble_reduce {reduce!r}; known: logits, probs")
        self.members = nn.ModuleList(models)
        self.reduce = reduce
        for p in self.members.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)  # a teacher never switches BN/dropout to training mode

    @torch.no_grad()
    def member_logits(self, x: Tensor) -> list[Tensor]:
        return [m(x) for m in self.members]

    @torch.no_grad()
    def soft_targets(self, x: Tensor, temperature: float) -> Tensor:
        return ensemble_probs(self.member_logits(x), temperature, self.reduce)

    @torch.no_grad()
    def predict_probs(self, x: Tensor) -> Tensor:
        """Class probabilities at T=1, for the teacher's own accuracy."""
        return self.soft_targets(x, 1.0)
