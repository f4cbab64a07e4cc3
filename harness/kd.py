"""Knowledge-distillation losses and frozen (ensemble) teachers.

KD loss (DESIGN.md section 4)::

    loss = (1 - kd_weight) * CE(student, y) + kd_weight * T^2 * KL(p_teacher^T || p_student^T)

The paper's alpha weights the CE term, so ``kd_weight = 1 - alpha``. An ensemble of teachers is
reduced either by averaging softened probabilities (``probs``, the paper's Eq. 2) or by
averaging logits before the softmax (``logits``, the authors' released code).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def kd_loss(
    student_logits: Tensor, targets: Tensor, teacher_probs: Tensor | None, temperature: float, kd_weight: float
) -> Tensor:
    """Hinton KD loss; ``teacher_probs`` are the teacher's softened probabilities at ``temperature``."""
    ce = F.cross_entropy(student_logits, targets)
    if teacher_probs is None or kd_weight == 0.0:
        return ce
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, teacher_probs, reduction="batchmean")
    return (1.0 - kd_weight) * ce + kd_weight * temperature**2 * kl


def kd_loss_members(
    student_logits: Tensor, targets: Tensor, teacher_probs: Tensor, temperature: Tensor, kd_weight: Tensor
) -> Tensor:
    """``kd_loss`` of N packed students at once -> the N losses.

    ``student_logits`` [N, B, C], ``targets`` [N, B], ``teacher_probs`` [N, B, C] (any finite
    rows for members without a teacher), ``temperature`` and ``kd_weight`` [N]. A member with
    ``kd_weight`` 0 gets its cross-entropy alone, exactly (its KL term is multiplied by 0).
    """
    n, b, c = student_logits.shape
    ce = F.cross_entropy(student_logits.reshape(n * b, c), targets.reshape(n * b), reduction="none").view(n, b).mean(1)
    t = temperature.view(n, 1, 1)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    kl = (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * log_p_student).sum(
        (1, 2)
    ) / b  # = kl_div batchmean
    return (1.0 - kd_weight) * ce + kd_weight * temperature**2 * kl


def ensemble_probs(teacher_logits: Sequence[Tensor] | Tensor, temperature: float, reduce: str = "probs") -> Tensor:
    """Soft targets of a teacher ensemble: mean of softmax(z/T) (``probs``) or softmax(mean z / T).
    ``teacher_logits``: K tensors [B, C], or one stacked tensor [K, B, C]."""
    if len(teacher_logits) == 0:
        raise ValueError("an ensemble needs at least one teacher")
    stacked = teacher_logits if isinstance(teacher_logits, Tensor) else torch.stack(list(teacher_logits))
    if reduce == "probs":
        return F.softmax(stacked / temperature, dim=-1).mean(0)
    if reduce == "logits":
        return F.softmax(stacked.mean(0) / temperature, dim=-1)
    raise ValueError(f"unknown ensemble_reduce {reduce!r}; known: logits, probs")


def same_architecture(models: Sequence[nn.Module]) -> bool:
    """Can these models run as one vmapped module (same class, same parameter and buffer shapes)?"""

    def shapes(m: nn.Module) -> list:
        return [(k, tuple(v.shape)) for k, v in (*m.named_parameters(), *m.named_buffers())]

    first = models[0]
    return all(type(m) is type(first) and shapes(m) == shapes(first) for m in models[1:])


class FrozenTeacher(nn.Module):
    """One or more frozen teacher models that give soft targets; always eval mode, no grad.

    K members of one architecture can run as one vmapped module (their weights stacked): one pass
    of batched kernels instead of K passes. ``batched=None`` (default) does so on a GPU only: on
    a CPU the vmapped convolutions measured 1.6-2.8x slower than K passes
    (benchmarks/bench_students.py); mixed architectures always run one after another.
    """

    def __init__(self, models: Sequence[nn.Module], reduce: str = "probs", batched: bool | None = None) -> None:
        super().__init__()
        if reduce not in ("probs", "logits"):
            raise ValueError(f"unknown ensemble_reduce {reduce!r}; known: logits, probs")
        self.members = nn.ModuleList(models)
        self.reduce = reduce
        for p in self.members.parameters():
            p.requires_grad_(False)
        self.eval()
        self._stacked = None
        if batched is None:
            batched = any(p.is_cuda for p in self.members.parameters())
        if batched and len(models) > 1 and same_architecture(models):
            params, buffers = stack_module_state(list(models))
            template = copy.deepcopy(models[0]).to("meta").eval()
            call = lambda p, b, x: functional_call(template, (p, b), (x,))  # noqa: E731
            self._stacked = (vmap(call, in_dims=(0, 0, None)), params, buffers)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)  # a teacher never switches BN/dropout to training mode

    @property
    def batched(self) -> bool:
        return self._stacked is not None

    @torch.no_grad()
    def stacked_logits(self, x: Tensor) -> Tensor:
        """The members' logits on ``x`` as one tensor [K, B, C]."""
        if self._stacked is not None:
            call, params, buffers = self._stacked
            return call(params, buffers, x)
        return torch.stack([m(x) for m in self.members])

    @torch.no_grad()
    def soft_targets(self, x: Tensor, temperature: float) -> Tensor:
        return ensemble_probs(self.stacked_logits(x), temperature, self.reduce)
