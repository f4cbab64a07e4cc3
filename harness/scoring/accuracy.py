"""``accuracy``: the paper's I(Y;F) proxy, validation accuracy of the checkpoint's own classifier.

Selection uses the accuracy itself (Algorithm 1). For the information plane it is turned into a
lower bound in nats with Fano's inequality: for the prediction Y^ = argmax f(X),

    I(Y;F) >= I(Y;Y^) >= H(Y) - h_b(P_e) - P_e log(|Y| - 1),     P_e = 1 - accuracy,

(data processing, then Fano), with H(Y) the plug-in label entropy of the scoring sample.
The bound is loose: it assumes the errors are spread uniformly over the wrong classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .base import CheckpointFeatures, ConvSource, Estimator, ScoringData, register_estimator
from .entropy import binary_entropy, label_entropy


def fano_lower_bound(accuracy: float, h_y: float, num_classes: int) -> float:
    """H(Y) - h_b(P_e) - P_e log(C - 1), clipped at 0 (nats)."""
    pe = 1.0 - accuracy
    penalty = binary_entropy(pe) + (pe * math.log(num_classes - 1) if num_classes > 1 else 0.0)
    return max(0.0, h_y - penalty)


@register_estimator("accuracy")
class AccuracyEstimator(Estimator):
    """Keys: ``accuracy`` (selection term), ``i_y`` (Fano lower bound, nats), ``h_y``."""

    y_key = "accuracy"
    plane_y_key = "i_y"
    description = "validation accuracy (paper's I(Y;F) proxy); i_y = Fano lower bound in nats"

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        y = data.y.cpu()
        h_y = label_entropy(y)
        out = []
        for f in features:
            acc = float((f.logits.argmax(1).cpu() == y).double().mean())
            out.append({"accuracy": acc, "i_y": fano_lower_bound(acc, h_y, data.num_classes), "h_y": h_y})
        return out
