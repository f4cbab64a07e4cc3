"""``recon``: the paper's I(X;F) proxy, a reconstruction decoder on the frozen last conv stage.

Decoder (InfoPro-style, paper Algorithm 1), for a conv stage F of shape [C, *s] and an input of
shape [C_in, *S] (1-D: s = L, 2-D: s = H x W):

    upsample F to S (linear / bilinear, ``align_corners=True`` as InfoPro's ``Decoder``)
    -> 3x3 conv -> ``hidden`` ch + BN + ReLU -> 3x3 conv -> C_in ch -> sigmoid  =  x^(F)

trained with Adam on binary cross-entropy against the input mapped to [0, 1] (per-channel
min-max over the training rows, clamped). **Data, honestly split** (issue 12): the decoders fit
on ``scoring.recon.train_samples`` rows of the *training* split, drawn anew for every decoder
seed from a pool of ``train_samples x seeds`` rows (all of mnist1d's 3,600 by default), stop
early on a part of those rows held out from fitting (``holdout_fraction``), and are *reported*
on the validation scoring sample, which takes no part in training or
stopping. **Converged**: a decoder trains until its stopping loss has not improved for
``patience`` epochs; ``max_epochs`` is only a safety cap, and every estimate records its epochs
and whether all its decoders stopped by patience (``converged`` = that fraction, 1.0 = all).
**Replicates**: ``seeds`` decoders per checkpoint (own init, batch order and stopping rows) x
the scoring sample's folds; a seed's fold replicates are jackknife pseudo-values of its
validation statistics (``replicates.py``), which for the BCE are the fold means. Reported, at
each decoder's best stopping epoch and averaged over seeds:

- ``loss``: validation BCE (the paper's quantity: lower = more information about X);
- ``neg_loss`` = -loss, the selection term (higher = more information);
- ``mse``: validation mean squared error of x^ in [0, 1] units;
- ``i_x``: a Gaussian-decoder information value, in nats,

      i_x = sum_j max(0, 1/2 log(Var[X_j] / MSE_j))      over input coordinates j.

  Per coordinate this is a lower bound: I(X;F) >= I(X_j;F) = h(X_j) - h(X_j|F) and
  h(X_j|F) <= 1/2 log(2 pi e MSE_j) (a Gaussian with the decoder's error variance has the most
  entropy), so I(X_j;F) >= 1/2 log(Var_j / MSE_j) when X_j is Gaussian (h(X_j) is then
  1/2 log(2 pi e Var_j)). The sum over coordinates equals the bound on I(X;F) only for
  independent coordinates; otherwise it is a proxy (it counts redundant coordinates twice). It is
  a monotone function of the per-coordinate errors and is used for the information plane only;
- ``best_epoch``, ``epochs_trained`` (means over seeds), ``epochs_trained_max``, ``converged``;
- ``threads``: the torch threads the decoders trained with (``recon_training.decoder_threads``:
  one for small CPU decoders, else the configured ones), recorded because thread counts can
  change float sums.

*Fidelity*: the decoder is InfoPro's (``Decoder`` in InfoPro-Pytorch's auxiliary_nets.py:
bilinear upsampling with ``align_corners=True``, 3x3 conv with bias -> 12 ch, BN, ReLU, 3x3
conv, sigmoid, BCE); InfoPro maps images back to [0, 1] by undoing the normalization, we use
per-channel min-max (the same up to an affine map when the pixel range is full). The tap is each
model's ``forward_features().conv``: the last feature map before global pooling, after its
BN + ReLU. For the CIFAR MobileNetV2 that is the output of the final 1x1 conv to 1280 channels
(2x2 on 32x32 inputs), not the 320-channel output of the last inverted-residual block: the
paper's "last conv stage" read as the network's last convolution; the authors' released code
was not available to check which tensor they tapped (recorded in README, Fidelity notes).

*Shared training*: the decoders of all K checkpoints of a trajectory are trained side by side on
the same batches in the same order. Every batch of conv features is fetched once for all K; the
first conv is computed at the features' resolution and then interpolated (the same linear map
as interpolating first, see ``GroupedDecoder._upsample_then_conv1`` in ``recon_decoder.py``); and
the decoders run as one grouped network (``groups=K`` convolutions, per-channel BatchNorm, one
Adam over all of them; ``recon_training.py``), so one kernel launch and one optimizer step
serve every decoder. A decoder that stops early is cut out of its group (its parameters,
BatchNorm statistics and Adam state are sliced away), so it costs nothing afterwards. Adam is
elementwise and the decoders share no parameters, so every decoder follows the path it would
follow alone (same init, same batches, its own early stopping): a checkpoint's result does not depend on which other
checkpoints were scored with it, up to floating-point rounding (grouped and single convolutions
sum in different orders, and Adam's first, sign-like steps can amplify that to ~1e-4 relative in
the loss). Tested both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch

from .base import (
    CheckpointFeatures,
    ConvSource,
    Estimate,
    FittedEstimator,
    ScoringData,
    check_conv_inputs,
    register_estimator,
)
from .recon_training import ReconSettings, train_decoders


@register_estimator("recon")
class ReconEstimator(FittedEstimator):
    """Keys: ``neg_loss`` (selection term), ``loss`` (validation BCE), ``mse``, ``i_x`` (nats), and
    the diagnostics ``best_epoch``, ``epochs_trained``, ``epochs_trained_max``, ``converged``, ``seeds``,
    ``threads``."""

    needs_conv = True
    needs_train_rows = True
    x_key = "neg_loss"
    plane_x_key = "i_x"
    description = "reconstruction decoder on the last conv stage (paper's I(X;F) proxy); lower BCE = more I(X;F)"
    fixed_keys = frozenset({"best_epoch", "epochs_trained", "epochs_trained_max", "converged", "seeds", "threads"})

    def __init__(self, settings: ReconSettings | None = None) -> None:
        self.settings = settings or ReconSettings()

    @classmethod
    def from_config(cls, sc) -> ReconEstimator:
        r = sc.recon
        return cls(
            ReconSettings(
                hidden_channels=r.hidden_channels,
                lr=r.lr,
                max_epochs=r.max_epochs,
                patience=r.patience,
                batch_size=r.batch_size,
                holdout_fraction=r.holdout_fraction,
                seeds=r.seeds,
                seed=sc.seed,
                train_samples=r.train_samples,
            )
        )

    def params(self) -> dict:
        params = asdict(self.settings)
        params.pop("group_size")  # how decoders are batched does not change their results
        return params

    def estimate(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[Estimate]:
        """``conv`` covers ``data.train_x`` rows first, then the scoring sample's (the runner's layout)."""
        check_conv_inputs("recon", features, data, conv)
        m, n = len(data.train_x), len(data)
        x = torch.cat([data.train_x.cpu(), data.x.cpu()])
        return train_decoders(conv, x, torch.arange(m), torch.arange(m, m + n), self.settings, data.folds, device)
