"""``ce_bound``: the variational lower bound I(Y;F) >= H(Y) - CE, in nats.

For any decoder q(y|f), H(Y|F) <= E[-log q(Y|F)] (Barber & Agakov 2003), so

    I(Y;F) = H(Y) - H(Y|F) >= H(Y) - CE,      CE = mean_i -log softmax(logits_i)[y_i],

with the checkpoint's own softmax head as q and H(Y) the plug-in label entropy of the scoring
sample. The bound is tight for a calibrated classifier; an over-confident checkpoint (late in
training, val CE rising while accuracy stays flat) gets a lower value, and the bound can go
negative when the CE exceeds H(Y) (true MI is never negative; the value is kept as is).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import CheckpointFeatures, ConvSource, Estimator, ScoringData, register_estimator
from .entropy import label_entropy


@register_estimator("ce_bound")
class CEBoundEstimator(Estimator):
    """Keys: ``i_y`` = H(Y) - CE (selection term and plane value), ``ce``, ``h_y``."""

    y_key = "i_y"
    description = "I(Y;F) >= H(Y) - CE with the checkpoint's own softmax as decoder (nats)"

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
            ce = float(F.cross_entropy(f.logits.double().cpu(), y))
            out.append({"i_y": h_y - ce, "ce": ce, "h_y": h_y})
        return out
