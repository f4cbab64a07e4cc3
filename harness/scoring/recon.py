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
- ``best_epoch``, ``epochs_trained`` (means over seeds), ``epochs_trained_max``, ``converged``.

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
as interpolating first, see ``GroupedDecoder._upsample_then_conv1``); and the decoders run as one grouped network (``groups=K`` convolutions, per-channel BatchNorm, one
Adam over all of them), so one kernel launch and one optimizer step serve every decoder. A
decoder that stops early is cut out of its group (its parameters, BatchNorm statistics and Adam
state are sliced away), so it costs nothing afterwards. Adam is elementwise and the decoders
share no parameters, so every decoder follows the path it would follow alone (same init, same
batches, its own early stopping): a checkpoint's result does not depend on which other
checkpoints were scored with it, up to floating-point rounding (grouped and single convolutions
sum in different orders, and Adam's first, sign-like steps can amplify that to ~1e-4 relative in
the loss). Tested both ways.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.progress import Progress

from .base import (
    CheckpointFeatures,
    ConvSource,
    Estimate,
    Estimator,
    ScoringData,
    ScoringError,
    register_estimator,
)
from .replicates import jackknife_replicates

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2**20  # activation memory per group of decoders trained as one module
SINGLE_THREAD_MACS = 1e8  # CPU: below this many multiply-adds per training step, use one thread


@contextmanager
def _cpu_threads(device: torch.device, step_macs: float) -> Iterator[None]:
    """Run small CPU decoders on one thread.

    Their convolutions are too small to gain from intra-op threads, and when the cores are shared
    (Ray trials, other jobs) extra threads spin and made training 5-20x slower in measurements
    on 2 cores. Large decoders (2-D images, many checkpoints) keep the configured threads.
    """
    if device.type != "cpu" or step_macs >= SINGLE_THREAD_MACS or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class ReconSettings:
    hidden_channels: int = 12
    lr: float = 1e-2
    max_epochs: int = 1000  # a safety cap only: decoders stop by patience (``converged``)
    patience: int = 5
    batch_size: int = 128
    holdout_fraction: float = 0.2  # of the training rows: the early-stopping set, drawn per seed
    seeds: int = 3  # decoders per checkpoint (replicates)
    seed: int = 0
    train_samples: int = 2000  # training-split rows the decoders fit and stop on (at most)
    align_corners: bool = True  # as InfoPro's Decoder
    group_size: int = 0  # decoders per grouped module; 0 = as many as fit CHUNK_BYTES


def to_unit_interval(x: Tensor, ref: Tensor | None = None) -> Tensor:
    """Map inputs [N, C, *spatial] to [0, 1] per channel with the min / max of ``ref`` (default
    ``x``), clamped: (x - min_c) / (max_c - min_c)."""
    ref = x if ref is None else ref
    dims = [d for d in range(x.dim()) if d != 1]
    lo = ref.amin(dim=dims, keepdim=True)
    hi = ref.amax(dim=dims, keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)


def _interp_mode(out_size: Sequence[int]) -> str:
    return "linear" if len(out_size) == 1 else "bilinear"


_TAPS: dict[tuple, Tensor] = {}


def _tap_matrices(n_in: int, n_out: int, align_corners: bool, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[3, n_out, n_in]``: V_t[i, j] = U[i + t - 1, j] (0 outside), U the 1-D linear
    interpolation matrix from n_in to n_out points (exactly ``F.interpolate``'s), t a conv tap."""
    key = (n_in, n_out, align_corners, str(device), dtype)
    if key not in _TAPS:
        eye = torch.eye(n_in, dtype=torch.float64)[None]
        u = F.interpolate(eye, size=n_out, mode="linear", align_corners=align_corners)[0].T  # [n_out, n_in]
        padded = F.pad(u, (0, 0, 1, 1))  # zero rows: the conv's zero padding
        _TAPS[key] = torch.stack([padded[t : t + n_out] for t in range(3)]).to(device, dtype)
    return _TAPS[key]


class GroupedDecoder(nn.Module):
    """K independent reconstruction decoders evaluated as one module (grouped convolutions).

    Input ``[B, K*C, *s]`` (checkpoint k's features in channels k*C..(k+1)*C), output logits
    ``[B, K*C_in, *S]``. With K = 1 this is exactly the paper's decoder (before its sigmoid).
    """

    def __init__(
        self,
        k: int,
        feat_channels: int,
        out_channels: int,
        hidden: int,
        out_size: Sequence[int],
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.k, self.feat_channels, self.out_channels, self.hidden = k, feat_channels, out_channels, hidden
        self.out_size = tuple(int(s) for s in out_size)
        self.align_corners = align_corners
        if len(self.out_size) not in (1, 2):
            raise ScoringError(f"recon supports 1-D and 2-D inputs, got spatial size {self.out_size}")
        conv = nn.Conv1d if len(self.out_size) == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if len(self.out_size) == 1 else nn.BatchNorm2d
        self.mode = _interp_mode(self.out_size)
        self.conv1 = conv(k * feat_channels, k * hidden, 3, padding=1, groups=k)
        self.bn = norm(k * hidden)
        self.conv2 = conv(k * hidden, k * out_channels, 3, padding=1, groups=k)

    def like(self, k: int) -> GroupedDecoder:
        """A fresh module of ``k`` decoders with this one's shape."""
        return GroupedDecoder(k, self.feat_channels, self.out_channels, self.hidden, self.out_size, self.align_corners)

    def copy_into_every_group(self, single: GroupedDecoder) -> None:
        """Give every decoder of this group the parameters of the one-decoder module ``single``."""
        with torch.no_grad():
            for mine, theirs in zip(self.state_dict().values(), single.state_dict().values()):
                if mine.dim() == 0:  # BatchNorm's num_batches_tracked
                    mine.copy_(theirs)
                else:
                    mine.copy_(theirs.repeat(self.k, *([1] * (theirs.dim() - 1))))

    def forward(self, feats: Tensor) -> Tensor:
        in_size = tuple(feats.shape[2:])
        if in_size == self.out_size:
            hidden = self.conv1(feats)
        elif all(a <= b for a, b in zip(in_size, self.out_size)):
            hidden = self._upsample_then_conv1(feats)
        else:
            hidden = self.conv1(
                F.interpolate(feats, size=self.out_size, mode=self.mode, align_corners=self.align_corners)
            )
        return self.conv2(F.relu(self.bn(hidden)))

    def _upsample_then_conv1(self, feats: Tensor) -> Tensor:
        """``conv1(interpolate(feats))`` computed at the features' low resolution.

        Both maps are linear, so conv1 applied to the upsampled map equals sum over the kernel's
        taps t of V_t (W_t feats): each tap's 1x1 conv runs on the small map, then a fixed
        matrix V_t = (shift by t) o (interpolation) takes it to the output size (per axis; bilinear
        is separable). Same function, (out / in size) times fewer multiply-adds in the first conv
        (4x for mnist1d, 256x for CIFAR's 2x2 maps); tested against the direct order.
        """
        k, c, h = self.k, self.feat_channels, self.hidden
        dims = len(self.out_size)
        taps = 3**dims
        w = self.conv1.weight.reshape(k, h, c, taps).permute(0, 3, 1, 2).reshape(k * taps * h, c, *([1] * dims))
        g = (F.conv1d if dims == 1 else F.conv2d)(feats, w, groups=k)  # [B, k*taps*h, *in]
        b = feats.shape[0]
        mats = [
            _tap_matrices(n_in, n_out, self.align_corners, g.device, g.dtype)
            for n_in, n_out in zip(feats.shape[2:], self.out_size)
        ]
        if dims == 1:
            out = torch.einsum("bkthj,tij->bkhi", g.reshape(b, k, 3, h, -1), mats[0])
        else:
            g = g.reshape(b, k, 3, 3, h, *feats.shape[2:])
            g = torch.einsum("bkxyhpq,yjq->bkxhpj", g, mats[1])
            out = torch.einsum("bkxhpj,xip->bkhij", g, mats[0])
        return out.reshape(b, k * h, *self.out_size) + self.conv1.bias.reshape(1, k * h, *([1] * dims))


@dataclass
class _Group:
    """Decoders trained as one module: ``members`` are their checkpoints' positions in the source."""

    members: list[int]
    decoder: GroupedDecoder
    optimizer: torch.optim.Optimizer

    def inputs(self, conv: Tensor) -> Tensor:
        """[K, B, C, *s] -> [B, k*C, *s]: this group's checkpoints side by side in channels."""
        part = conv[self.members] if len(self.members) < conv.shape[0] else conv
        part = part.transpose(0, 1)
        return part.reshape(part.shape[0], -1, *part.shape[3:])

    def keep_only(self, members: list[int]) -> _Group:
        """A smaller group holding only ``members`` (a subset), with their parameters, BatchNorm
        statistics and Adam state, so stopped decoders cost nothing from now on."""
        old = self.decoder
        pos = torch.tensor([self.members.index(m) for m in members])

        def pick(t: Tensor) -> Tensor:
            if t.dim() == 0:
                return t.clone()
            rows = t.reshape(old.k, t.shape[0] // old.k, *t.shape[1:])[pos.to(t.device)]
            return rows.reshape(-1, *t.shape[1:]).clone()

        new = old.like(len(members)).to(next(old.parameters()).device).train(old.training)
        with torch.no_grad():
            for mine, theirs in zip(new.state_dict().values(), old.state_dict().values()):
                mine.copy_(pick(theirs))
        opt = torch.optim.Adam(new.parameters(), **self.optimizer.defaults)
        for p_new, p_old in zip(new.parameters(), old.parameters()):
            if p_old in self.optimizer.state:
                opt.state[p_new] = {
                    k: pick(v) if torch.is_tensor(v) else v for k, v in self.optimizer.state[p_old].items()
                }
        return _Group(list(members), new, opt)


def _per_decoder(logits: Tensor, k: int, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample and decoder: BCE summed over coordinates [B, k], squared error [B, k, d]."""
    b = target.shape[0]
    z = logits.reshape(b, k, *target.shape[1:])
    t = target.unsqueeze(1).expand_as(z)
    bce = F.binary_cross_entropy_with_logits(z, t, reduction="none").reshape(b, k, -1)
    se = (torch.sigmoid(z) - t).pow(2).reshape(b, k, -1)
    return bce.sum(dim=2), se


def _group_size(s: ReconSettings, feat_channels: int, out_channels: int, out_size: tuple[int, ...]) -> int:
    """Decoders per grouped module: ``group_size``, or as many as fit ``CHUNK_BYTES`` of activations."""
    if s.group_size > 0:
        return s.group_size
    per_decoder_bytes = 4 * 4 * s.batch_size * (feat_channels + s.hidden_channels + out_channels) * math.prod(out_size)
    return max(1, CHUNK_BYTES // max(per_decoder_bytes, 1))


def stop_split(train_rows: Tensor, s: ReconSettings, replicate: int) -> tuple[Tensor, Tensor]:
    """(fit, stop) rows of decoder seed ``replicate``, drawn with (seed, replicate): a random
    ``train_samples`` of the training rows (so the choice of rows varies between seeds and its
    noise is in the error bars), of which a random ``holdout_fraction`` stops early (at least 2
    rows on each side)."""
    gen = torch.Generator().manual_seed(s.seed * 1_000_003 + replicate)
    perm = train_rows[torch.randperm(len(train_rows), generator=gen)][: s.train_samples]
    n = len(perm)
    n_stop = min(max(2, round(s.holdout_fraction * n)), n - 2)
    return perm[n_stop:].sort().values, perm[:n_stop].sort().values


@dataclass
class _Split:
    """The rows one decoder seed uses: fit and stop (training split), eval (validation) with the
    fold id of every eval row, ``n_folds`` folds."""

    fit: Tensor
    stop: Tensor
    eval: Tensor
    eval_folds: Tensor
    n_folds: int


@dataclass
class _SeedResult:
    """Per decoder of one seed, at its best stopping epoch: validation BCE sums per fold [K, F],
    squared-error sums per fold and coordinate [K, F, d]; that epoch, epochs trained, converged."""

    bce: Tensor
    se: Tensor
    best_epoch: list[int]
    epochs_trained: list[int]
    converged: list[bool]


def _new_groups(single: GroupedDecoder, k_total: int, chunk: int, lr: float, device: torch.device) -> list[_Group]:
    """Fresh decoders for ``k_total`` checkpoints, ``chunk`` per group, all starting as ``single``."""
    groups = []
    for a in range(0, k_total, chunk):
        members = list(range(a, min(a + chunk, k_total)))
        dec = single.like(len(members))
        dec.copy_into_every_group(single)
        dec = dec.to(device)
        groups.append(_Group(members, dec, torch.optim.Adam(dec.parameters(), lr=lr)))
    return groups


def train_decoders(
    source: ConvSource,
    x: Tensor,
    train_rows: Tensor,
    eval_rows: Tensor,
    settings: ReconSettings,
    eval_folds: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> list[Estimate]:
    """Train ``settings.seeds`` decoders per checkpoint of ``source`` to reconstruct ``x``
    [N, C_in, *S] (``source`` covers the same N rows): fit and stop on ``train_rows``, report on
    ``eval_rows`` (with their fold ids ``eval_folds``; None: one fold). See the module doc."""
    device, s = torch.device(device), settings
    x01 = to_unit_interval(x.float().cpu(), x[train_rows].float().cpu())
    k_total = source.num_checkpoints
    probe = source.batch(torch.arange(2))
    feat_channels, in_size = int(probe.shape[2]), tuple(probe.shape[3:])
    out_channels, out_size = int(x01.shape[1]), tuple(x01.shape[2:])
    folds = torch.zeros(len(eval_rows), dtype=torch.long) if eval_folds is None else eval_folds.long()
    chunk = max(1, min(k_total, _group_size(s, feat_channels, out_channels, out_size)))
    taps = 3 ** len(out_size)  # first conv at the features' resolution (GroupedDecoder._upsample_then_conv1)
    step_macs = (
        s.batch_size
        * taps
        * s.hidden_channels
        * (feat_channels * math.prod(in_size) + out_channels * math.prod(out_size))
        * k_total
    )
    runs = []
    with _cpu_threads(device, step_macs):
        for r in range(s.seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s.seed * 1_000_003 + r)
                single = GroupedDecoder(1, feat_channels, out_channels, s.hidden_channels, out_size, s.align_corners)
            fit, stop = stop_split(train_rows, s, r)
            split = _Split(fit, stop, eval_rows, folds, int(folds.max()) + 1)
            groups = _new_groups(single, k_total, chunk, s.lr, device)
            runs.append(_fit(source, x01, groups, k_total, split, s, r, device))
    return _estimates(x01[eval_rows], folds, runs, s)


def _fold_moments(x01: Tensor, folds: Tensor, n_folds: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per fold: row count [F], sum and sum of squares of every input coordinate [F, d]."""
    flat = x01.reshape(len(x01), -1).double()
    n = torch.bincount(folds, minlength=n_folds).double()
    sx = torch.zeros(n_folds, flat.shape[1], dtype=torch.float64).index_add_(0, folds, flat)
    sxx = torch.zeros_like(sx).index_add_(0, folds, flat * flat)
    return n, sx, sxx


def _stats(bce: Tensor, se: Tensor, n: Tensor, sx: Tensor, sxx: Tensor, keep: Tensor) -> dict[str, float]:
    """Reported values on the folds ``keep`` (bool [F]) from per-fold sums (module doc)."""
    rows = float(n[keep].sum())
    d = se.shape[-1]
    loss = float(bce[keep].sum()) / (rows * d)
    mse_j = se[keep].sum(0) / rows
    mean = sx[keep].sum(0) / rows
    var = (sxx[keep].sum(0) / rows - mean * mean).clamp_min(0)
    alive = var > 1e-12
    ratio = var[alive] / mse_j[alive].clamp_min(1e-12)
    return {
        "loss": loss,
        "neg_loss": -loss,
        "mse": float(mse_j.mean()),
        "i_x": float(0.5 * ratio.log().clamp_min(0).sum()),
    }


def _estimates(x_eval: Tensor, folds: Tensor, runs: list[_SeedResult], s: ReconSettings) -> list[Estimate]:
    """Per checkpoint: values averaged over seeds, seeds x folds jackknife replicates, diagnostics."""
    n_folds = int(folds.max()) + 1
    n, sx, sxx = _fold_moments(x_eval, folds, n_folds)
    everything = torch.ones(n_folds, dtype=torch.bool)
    out = []
    for k in range(len(runs[0].bce)):
        per_seed, reps = [], {key: [] for key in ("loss", "neg_loss", "mse", "i_x")}
        for run in runs:
            full = _stats(run.bce[k], run.se[k], n, sx, sxx, everything)
            per_seed.append(full)
            if n_folds > 1:
                left = [
                    _stats(run.bce[k], run.se[k], n, sx, sxx, everything != (torch.arange(n_folds) == f))
                    for f in range(n_folds)
                ]
                for key, values in jackknife_replicates(full, left, reps).items():
                    reps[key].append(values)
            else:
                for key in reps:
                    reps[key].append([full[key]])
        values = {key: sum(p[key] for p in per_seed) / len(per_seed) for key in per_seed[0]}
        values.update(_diagnostics(runs, k))
        out.append(Estimate(values, reps))
    return out


def _diagnostics(runs: list[_SeedResult], k: int) -> dict[str, float]:
    """Epochs and convergence of checkpoint k's decoders (one per seed)."""
    trained = [run.epochs_trained[k] for run in runs]
    return {
        "best_epoch": sum(run.best_epoch[k] for run in runs) / len(runs),
        "epochs_trained": sum(trained) / len(trained),
        "epochs_trained_max": float(max(trained)),
        "converged": sum(run.converged[k] for run in runs) / len(runs),
        "seeds": float(len(runs)),
    }


class _EarlyStopping:
    """Per decoder: the best stopping loss so far, the validation sums at that epoch, and whether
    it still trains (it stops after ``patience`` epochs without an improvement of the stopping
    BCE by more than 1e-6)."""

    def __init__(self, k_total: int, n_folds: int, d: int, patience: int) -> None:
        self.patience = patience
        self.best_loss = [math.inf] * k_total
        self.best_bce = torch.zeros(k_total, n_folds, dtype=torch.float64)
        self.best_se = torch.zeros(k_total, n_folds, d, dtype=torch.float64)
        self.best_epoch, self.bad = [0] * k_total, [0] * k_total
        self.active = [True] * k_total

    def update(self, epoch: int, stop_loss: list[float], eval_bce: Tensor, eval_se: Tensor) -> None:
        """Record one epoch: stopping loss per decoder and validation sums of every active one."""
        for k in range(len(self.active)):
            if not self.active[k]:
                continue
            if stop_loss[k] < self.best_loss[k] - 1e-6:
                self.best_loss[k], self.best_epoch[k], self.bad[k] = stop_loss[k], epoch, 0
                self.best_bce[k], self.best_se[k] = eval_bce[k], eval_se[k]
            else:
                self.bad[k] += 1
                self.active[k] = self.bad[k] < self.patience

    def still_training(self, groups: list[_Group]) -> list[_Group]:
        """The groups cut down to their active decoders (groups with none left are dropped)."""
        kept = []
        for g in groups:
            alive = [m for m in g.members if self.active[m]]
            if alive:
                kept.append(g if len(alive) == len(g.members) else g.keep_only(alive))
        return kept

    def result(self, epochs_run: int) -> _SeedResult:
        """The seed's result; a stopped decoder trained until ``patience`` epochs after its best."""
        converged = [not a for a in self.active]
        trained = [self.best_epoch[k] + self.patience if converged[k] else epochs_run for k in range(len(self.active))]
        return _SeedResult(self.best_bce, self.best_se, list(self.best_epoch), trained, converged)


def _train_epoch(
    source: ConvSource, x01_dev: Tensor, groups: list[_Group], order: Tensor, batch_size: int, device: torch.device
) -> None:
    """One pass over ``order`` in batches: every decoder takes one Adam step per batch."""
    d = x01_dev[0].numel()
    for g in groups:
        g.decoder.train()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        feats = source.batch(idx).to(device, torch.float32)  # one batch, all K checkpoints
        target = x01_dev[idx.to(device)]
        for g in groups:
            bce, _ = _per_decoder(g.decoder(g.inputs(feats)), len(g.members), target)
            g.optimizer.zero_grad(set_to_none=True)
            (bce.sum(0) / d / len(idx)).sum().backward()
            g.optimizer.step()


@torch.no_grad()
def _evaluate(
    source: ConvSource,
    x01_dev: Tensor,
    groups: list[_Group],
    k_total: int,
    rows: Tensor,
    folds: Tensor,
    n_folds: int,
    eval_batch: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """BCE sums per fold [K, F] and squared-error sums per fold and coordinate [K, F, d] on
    ``rows`` (fold ids ``folds``), every decoder on the same batches (zeros for stopped ones)."""
    d = x01_dev[0].numel()
    bce_sum = torch.zeros(k_total, n_folds, dtype=torch.float64)
    se_sum = torch.zeros(k_total, n_folds, d, dtype=torch.float64)
    for g in groups:
        g.decoder.eval()
    for start in range(0, len(rows), eval_batch):
        idx, fb = rows[start : start + eval_batch], folds[start : start + eval_batch]
        feats = source.batch(idx).to(device, torch.float32)
        target = x01_dev[idx.to(device)]
        onehot = F.one_hot(fb, n_folds).double().to(device)  # [B, F]
        for g in groups:
            bce, se = _per_decoder(g.decoder(g.inputs(feats)), len(g.members), target)
            bce_sum[g.members] += torch.einsum("bk,bf->kf", bce.double(), onehot).cpu()
            se_sum[g.members] += torch.einsum("bkd,bf->kfd", se.double(), onehot).cpu()
    return bce_sum, se_sum


def _fit(
    source: ConvSource,
    x01: Tensor,
    groups: list[_Group],
    k_total: int,
    split: _Split,
    s: ReconSettings,
    replicate: int,
    device: torch.device,
) -> _SeedResult:
    """The training loop of one decoder seed: all decoders on the same batches of the fit rows,
    each stopping on its own loss on the stop rows; validation sums kept at each one's best epoch."""
    d = x01[0].numel()
    x01_dev = x01.to(device)  # targets live where the decoders do
    stopping = _EarlyStopping(k_total, split.n_folds, d, s.patience)
    no_folds = torch.zeros(len(split.stop), dtype=torch.long)
    epochs_run, eval_batch = 0, max(s.batch_size, 256)
    desc = f"[score] recon decoders ({k_total} checkpoints, seed {replicate + 1}/{s.seeds})"
    with Progress(s.max_epochs, desc, "epoch", log=logger) as progress:
        for epoch in range(1, s.max_epochs + 1):
            if not groups:
                break
            epochs_run = epoch
            gen = torch.Generator().manual_seed((s.seed * 1_000_003 + replicate) * 100_003 + epoch)
            _train_epoch(
                source, x01_dev, groups, split.fit[torch.randperm(len(split.fit), generator=gen)], s.batch_size, device
            )
            stop_bce, _ = _evaluate(source, x01_dev, groups, k_total, split.stop, no_folds, 1, eval_batch, device)
            eval_bce, eval_se = _evaluate(
                source, x01_dev, groups, k_total, split.eval, split.eval_folds, split.n_folds, eval_batch, device
            )
            stopping.update(epoch, [float(b) / (len(split.stop) * d) for b in stop_bce[:, 0]], eval_bce, eval_se)
            groups = stopping.still_training(groups)
            progress.set_postfix(f"{sum(len(g.members) for g in groups)} still training")
            progress.update()
    return stopping.result(epochs_run)


@register_estimator("recon")
class ReconEstimator(Estimator):
    """Keys: ``neg_loss`` (selection term), ``loss`` (validation BCE), ``mse``, ``i_x`` (nats), and
    the diagnostics ``best_epoch``, ``epochs_trained``, ``epochs_trained_max``, ``converged``, ``seeds``."""

    needs_conv = True
    needs_train_rows = True
    x_key = "neg_loss"
    plane_x_key = "i_x"
    description = "reconstruction decoder on the last conv stage (paper's I(X;F) proxy); lower BCE = more I(X;F)"
    fixed_keys = frozenset({"best_epoch", "epochs_trained", "epochs_trained_max", "converged", "seeds"})

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
        if conv is None:
            raise ScoringError("recon needs the checkpoints' last conv stage (a ConvSource)")
        if data.train_x is None:
            raise ScoringError("recon needs training-split rows (ScoringData.train_x) to fit its decoders on")
        if conv.num_checkpoints != len(features):
            raise ValueError(f"conv source has {conv.num_checkpoints} checkpoints, features {len(features)}")
        m, n = len(data.train_x), len(data)
        x = torch.cat([data.train_x.cpu(), data.x.cpu()])
        return train_decoders(conv, x, torch.arange(m), torch.arange(m, m + n), self.settings, data.folds, device)

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        return [e.values for e in self.estimate(features, data, conv, device)]
