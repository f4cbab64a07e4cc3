"""``recon``: the paper's I(X;F) proxy, a reconstruction decoder on the frozen last conv stage.

Decoder (InfoPro-style, paper Algorithm 1), for a conv stage F of shape [C, *s] and an input of
shape [C_in, *S] (1-D: s = L, 2-D: s = H x W):

    upsample F to S (linear / bilinear) -> 3x3 conv -> ``hidden`` ch + BN + ReLU
    -> 3x3 conv -> C_in ch -> sigmoid  =  x^(F)

trained with Adam on binary cross-entropy against the input mapped to [0, 1] (per-channel
min-max over the scoring sample), on a fixed ``1 - holdout_fraction`` part of the scoring sample,
until the loss on the held-out part has not improved for ``patience`` epochs (at most
``max_epochs``). With ``folds`` = F > 1 the sample is instead cut into F folds and F decoders per
checkpoint are trained, each holding out one fold (cross-fitting): every sample is then scored by
a decoder that never saw it, at F times the cost, and the values below pool all F held-out folds.
Reported, at the best held-out epoch:

- ``loss``: held-out BCE (the paper's quantity: lower = more information about X);
- ``neg_loss`` = -loss, the selection term (higher = more information);
- ``mse``: held-out mean squared error of x^ in [0, 1] units;
- ``i_x``: a Gaussian-decoder information value, in nats,

      i_x = sum_j max(0, 1/2 log(Var[X_j] / MSE_j))      over input coordinates j.

  Per coordinate this is a lower bound: I(X;F) >= I(X_j;F) = h(X_j) - h(X_j|F) and
  h(X_j|F) <= 1/2 log(2 pi e MSE_j) (a Gaussian with the decoder's error variance has the most
  entropy), so I(X_j;F) >= 1/2 log(Var_j / MSE_j) when X_j is Gaussian (h(X_j) is then
  1/2 log(2 pi e Var_j)). The sum over coordinates equals the bound on I(X;F) only for
  independent coordinates; otherwise it is a proxy (it counts redundant coordinates twice). It is
  a monotone function of the per-coordinate errors and is used for the information plane only.

*Shared training*: the decoders of all K checkpoints of a trajectory are trained side by side on
the same batches in the same order. Every batch of conv features is fetched once for all K; the
(frozen, per-sample) upsampling of cached features is done once rather than at every step; and
the decoders run as one grouped network (``groups=K`` convolutions, per-channel BatchNorm, one
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.progress import Progress

from .base import CheckpointFeatures, ConvSource, Estimator, ScoringData, ScoringError, TensorConvSource, register_estimator

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
    lr: float = 3e-3
    max_epochs: int = 60
    patience: int = 5
    batch_size: int = 32
    holdout_fraction: float = 0.25
    folds: int = 1  # > 1: cross-fitting over that many folds (holdout_fraction unused)
    seed: int = 0
    group_size: int = 0  # decoders per grouped module; 0 = as many as fit CHUNK_BYTES


def to_unit_interval(x: Tensor) -> Tensor:
    """Map inputs [N, C, *spatial] to [0, 1] per channel: (x - min_c) / (max_c - min_c)."""
    dims = [d for d in range(x.dim()) if d != 1]
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)


class GroupedDecoder(nn.Module):
    """K independent reconstruction decoders evaluated as one module (grouped convolutions).

    Input ``[B, K*C, *s]`` (checkpoint k's features in channels k*C..(k+1)*C), output logits
    ``[B, K*C_in, *S]``. With K = 1 this is exactly the paper's decoder (before its sigmoid).
    """

    def __init__(self, k: int, feat_channels: int, out_channels: int, hidden: int, out_size: Sequence[int]) -> None:
        super().__init__()
        self.k, self.feat_channels, self.out_channels, self.hidden = k, feat_channels, out_channels, hidden
        self.out_size = tuple(int(s) for s in out_size)
        if len(self.out_size) not in (1, 2):
            raise ScoringError(f"recon supports 1-D and 2-D inputs, got spatial size {self.out_size}")
        conv = nn.Conv1d if len(self.out_size) == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if len(self.out_size) == 1 else nn.BatchNorm2d
        self.mode = "linear" if len(self.out_size) == 1 else "bilinear"
        self.conv1 = conv(k * feat_channels, k * hidden, 3, padding=1, groups=k)
        self.bn = norm(k * hidden)
        self.conv2 = conv(k * hidden, k * out_channels, 3, padding=1, groups=k)

    def copy_into_every_group(self, single: "GroupedDecoder") -> None:
        """Give every decoder of this group the parameters of the one-decoder module ``single``."""
        with torch.no_grad():
            for mine, theirs in zip(self.state_dict().values(), single.state_dict().values()):
                if mine.dim() == 0:  # BatchNorm's num_batches_tracked
                    mine.copy_(theirs)
                else:
                    mine.copy_(theirs.repeat(self.k, *([1] * (theirs.dim() - 1))))

    def forward(self, feats: Tensor) -> Tensor:
        if tuple(feats.shape[2:]) != self.out_size:
            feats = F.interpolate(feats, size=self.out_size, mode=self.mode, align_corners=False)
        return self.conv2(F.relu(self.bn(self.conv1(feats))))


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

    def keep_only(self, members: list[int]) -> "_Group":
        """A smaller group holding only ``members`` (a subset), with their parameters, BatchNorm
        statistics and Adam state, so stopped decoders cost nothing from now on."""
        old = self.decoder
        pos = torch.tensor([self.members.index(m) for m in members])

        def pick(t: Tensor) -> Tensor:
            if t.dim() == 0:
                return t.clone()
            rows = t.reshape(old.k, t.shape[0] // old.k, *t.shape[1:])[pos.to(t.device)]
            return rows.reshape(-1, *t.shape[1:]).clone()

        new = GroupedDecoder(len(members), old.feat_channels, old.out_channels, old.hidden, old.out_size)
        new = new.to(next(old.parameters()).device).train(old.training)
        with torch.no_grad():
            for mine, theirs in zip(new.state_dict().values(), old.state_dict().values()):
                mine.copy_(pick(theirs))
        opt = torch.optim.Adam(new.parameters(), **self.optimizer.defaults)
        for p_new, p_old in zip(new.parameters(), old.parameters()):
            if p_old in self.optimizer.state:
                opt.state[p_new] = {k: pick(v) if torch.is_tensor(v) else v for k, v in self.optimizer.state[p_old].items()}
        return _Group(list(members), new, opt)


def _per_decoder(logits: Tensor, k: int, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per decoder: BCE summed over samples and coordinates [k], squared error per coordinate [k, d]."""
    b = target.shape[0]
    z = logits.reshape(b, k, *target.shape[1:])
    t = target.unsqueeze(1).expand_as(z)
    bce = F.binary_cross_entropy_with_logits(z, t, reduction="none").reshape(b, k, -1)
    se = (torch.sigmoid(z) - t).pow(2).reshape(b, k, -1)
    return bce.sum(dim=(0, 2)), se.sum(dim=0)


def _group_size(s: ReconSettings, feat_channels: int, out_channels: int, out_size: tuple[int, ...]) -> int:
    """Decoders per grouped module: ``group_size``, or as many as fit ``CHUNK_BYTES`` of activations."""
    if s.group_size > 0:
        return s.group_size
    per_decoder_bytes = 4 * 4 * s.batch_size * (feat_channels + s.hidden_channels + out_channels) * math.prod(out_size)
    return max(1, CHUNK_BYTES // max(per_decoder_bytes, 1))


def _upsampled_once(source: ConvSource, out_size: tuple[int, ...]) -> ConvSource:
    """Cached conv stages upsampled to the input size once, not once per decoder step.

    The decoders' first operation is a fixed per-sample interpolation of frozen features, so
    doing it up front gives identical inputs; only when the result fits ``CHUNK_BYTES``."""
    if not isinstance(source, TensorConvSource) or tuple(source.conv.shape[3:]) == out_size:
        return source
    k, n, c = source.conv.shape[:3]
    if 4 * k * n * c * math.prod(out_size) > CHUNK_BYTES:
        return source
    mode = "linear" if len(out_size) == 1 else "bilinear"
    flat = source.conv.reshape(k * n, c, *source.conv.shape[3:]).float()
    up = torch.cat([F.interpolate(flat[i : i + 4096], size=out_size, mode=mode, align_corners=False) for i in range(0, k * n, 4096)])
    return TensorConvSource(up.reshape(k, n, c, *out_size))


@dataclass
class _FoldResult:
    """Per decoder, at its best held-out epoch: BCE summed over held-out samples and coordinates,
    squared error per coordinate summed over held-out samples, that epoch, and epochs trained."""

    bce: Tensor  # [K]
    se: Tensor  # [K, d]
    best_epoch: Tensor  # [K]
    epochs_trained: Tensor  # [K]

    @classmethod
    def zeros(cls, k: int, d: int) -> "_FoldResult":
        """All-zero sums for ``k`` decoders of ``d`` output coordinates."""
        f64 = torch.float64
        return cls(torch.zeros(k, dtype=f64), torch.zeros(k, d, dtype=f64), torch.zeros(k, dtype=f64), torch.zeros(k, dtype=f64))

    def add(self, other: "_FoldResult") -> None:
        """Accumulate another fold's result (in place)."""
        self.bce += other.bce
        self.se += other.se
        self.best_epoch += other.best_epoch
        self.epochs_trained += other.epochs_trained


def holdout_splits(n: int, s: ReconSettings) -> list[tuple[Tensor, Tensor]]:
    """The (fit, held-out) index pairs the decoders of ``n`` samples train and are scored on.

    One random split (``s.holdout_fraction`` held out, at least 2 samples on each side), or with
    ``s.folds`` > 1 a partition into that many folds, each held out once (cross-fitting: every
    sample is scored by a decoder that never trained on it). Drawn with ``s.seed``; indices sorted.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(s.seed))
    if s.folds <= 1:
        n_hold = min(max(2, round(s.holdout_fraction * n)), n - 2)
        return [(perm[n_hold:].sort().values, perm[:n_hold].sort().values)]
    parts = list(torch.tensor_split(perm, s.folds))
    return [(torch.cat(parts[:r] + parts[r + 1 :]).sort().values, parts[r].sort().values) for r in range(s.folds)]


def _new_groups(single: GroupedDecoder, k_total: int, chunk: int, lr: float, device: torch.device) -> list[_Group]:
    """Fresh decoders for ``k_total`` checkpoints, ``chunk`` per group, all starting as ``single``."""
    groups = []
    for a in range(0, k_total, chunk):
        members = list(range(a, min(a + chunk, k_total)))
        dec = GroupedDecoder(len(members), single.feat_channels, single.out_channels, single.hidden, single.out_size)
        dec.copy_into_every_group(single)
        dec = dec.to(device)
        groups.append(_Group(members, dec, torch.optim.Adam(dec.parameters(), lr=lr)))
    return groups


def train_decoders(source: ConvSource, x: Tensor, settings: ReconSettings, device: torch.device | str = "cpu") -> list[dict[str, float]]:
    """Train one decoder per checkpoint of ``source`` to reconstruct ``x`` [N, C_in, *S]; see module doc."""
    device = torch.device(device)
    s = settings
    x01 = to_unit_interval(x.float().cpu())
    k_total = source.num_checkpoints
    feat_channels = int(source.batch(torch.arange(2)).shape[2])
    out_channels, out_size = int(x01.shape[1]), tuple(x01.shape[2:])
    source = _upsampled_once(source, out_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        single = GroupedDecoder(1, feat_channels, out_channels, s.hidden_channels, out_size)
    chunk = max(1, min(k_total, _group_size(s, feat_channels, out_channels, out_size)))
    step_macs = s.batch_size * math.prod(out_size) * 3 ** len(out_size) * s.hidden_channels * (feat_channels + out_channels) * k_total

    total = _FoldResult.zeros(k_total, x01[0].numel())
    held: list[Tensor] = []
    with _cpu_threads(device, step_macs):
        for fit, hold in holdout_splits(x01.shape[0], s):
            groups = _new_groups(single, k_total, chunk, s.lr, device)
            total.add(_fit(source, x01, groups, k_total, fit, hold, s, device))
            held.append(hold)
    return _results(x01, torch.cat(held), total, len(held))


def _results(x01: Tensor, held: Tensor, total: _FoldResult, n_folds: int) -> list[dict[str, float]]:
    """Per checkpoint, the reported values (module doc) from the sums over the ``n_folds`` held-out folds."""
    n_held, d = len(held), x01[0].numel()
    var = x01[held].reshape(n_held, -1).double().var(dim=0, unbiased=False)
    alive = var > 1e-12
    results = []
    for k in range(len(total.bce)):
        mse_j = total.se[k] / n_held
        loss = float(total.bce[k]) / (n_held * d)
        ratio = var[alive] / mse_j[alive].clamp_min(1e-12)
        results.append(
            {
                "loss": loss,
                "neg_loss": -loss,
                "mse": float(mse_j.mean()),
                "i_x": float(0.5 * ratio.log().clamp_min(0).sum()),
                "best_epoch": float(total.best_epoch[k]) / n_folds,
                "epochs_trained": float(total.epochs_trained[k]) / n_folds,
            }
        )
    return results


class _EarlyStopping:
    """Per decoder: the best held-out loss so far, its sums and epoch, and whether it still trains
    (it stops after ``patience`` epochs without an improvement of more than 1e-6)."""

    def __init__(self, k_total: int, d: int, patience: int) -> None:
        self.patience = patience
        self.best_loss = [math.inf] * k_total
        self.best_bce = torch.zeros(k_total, dtype=torch.float64)
        self.best_se = torch.zeros(k_total, d, dtype=torch.float64)
        self.best_epoch, self.bad = [0] * k_total, [0] * k_total
        self.active = [True] * k_total

    def update(self, epoch: int, bce_sum: Tensor, se_sum: Tensor, n_hold: int, d: int) -> None:
        """Record one epoch's held-out sums of every still active decoder."""
        for k in range(len(self.active)):
            if not self.active[k]:
                continue
            loss = float(bce_sum[k]) / (n_hold * d)
            if loss < self.best_loss[k] - 1e-6:
                self.best_loss[k], self.best_epoch[k], self.bad[k] = loss, epoch, 0
                self.best_bce[k], self.best_se[k] = bce_sum[k], se_sum[k]
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

    def result(self, epochs_run: int) -> _FoldResult:
        """The fold's result; a stopped decoder trained until ``patience`` epochs after its best."""
        trained = [epochs_run if self.active[k] else self.best_epoch[k] + self.patience for k in range(len(self.active))]
        return _FoldResult(
            self.best_bce, self.best_se, torch.tensor(self.best_epoch, dtype=torch.float64), torch.tensor(trained, dtype=torch.float64)
        )


def _train_epoch(source: ConvSource, x01_dev: Tensor, groups: list[_Group], order: Tensor, batch_size: int, device: torch.device) -> None:
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
            (bce / d / len(idx)).sum().backward()
            g.optimizer.step()


@torch.no_grad()
def _evaluate(
    source: ConvSource, x01_dev: Tensor, groups: list[_Group], k_total: int, hold: Tensor, eval_batch: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Held-out BCE sums [K] and squared-error sums per coordinate [K, d], every decoder on the
    same held-out batches (zeros for the stopped ones)."""
    d = x01_dev[0].numel()
    bce_sum = torch.zeros(k_total, dtype=torch.float64)
    se_sum = torch.zeros(k_total, d, dtype=torch.float64)
    for g in groups:
        g.decoder.eval()
    for start in range(0, len(hold), eval_batch):
        idx = hold[start : start + eval_batch]
        feats = source.batch(idx).to(device, torch.float32)
        target = x01_dev[idx.to(device)]
        for g in groups:
            bce, se = _per_decoder(g.decoder(g.inputs(feats)), len(g.members), target)
            bce_sum[g.members] += bce.double().cpu()
            se_sum[g.members] += se.double().cpu()
    return bce_sum, se_sum


def _fit(
    source: ConvSource,
    x01: Tensor,
    groups: list[_Group],
    k_total: int,
    fit: Tensor,
    hold: Tensor,
    s: ReconSettings,
    device: torch.device,
) -> _FoldResult:
    """The training loop of ``train_decoders``: all decoders on the same batches, each stopping
    early on its own held-out loss (stopped decoders are dropped from their group)."""
    n_hold, d = len(hold), x01[0].numel()
    x01_dev = x01.to(device)  # targets live where the decoders do
    stopping = _EarlyStopping(k_total, d, s.patience)
    epochs_run = 0
    eval_batch = max(s.batch_size, 256)
    with Progress(s.max_epochs, f"[score] recon decoders ({k_total} checkpoints)", "epoch", log=logger) as progress:
        for epoch in range(1, s.max_epochs + 1):
            if not groups:
                break
            epochs_run = epoch
            order = fit[torch.randperm(len(fit), generator=torch.Generator().manual_seed(s.seed * 100_003 + epoch))]
            _train_epoch(source, x01_dev, groups, order, s.batch_size, device)
            bce_sum, se_sum = _evaluate(source, x01_dev, groups, k_total, hold, eval_batch, device)
            stopping.update(epoch, bce_sum, se_sum, n_hold, d)
            groups = stopping.still_training(groups)
            progress.set_postfix(f"{sum(len(g.members) for g in groups)} still training")
            progress.update()
    return stopping.result(epochs_run)


@register_estimator("recon")
class ReconEstimator(Estimator):
    """Keys: ``neg_loss`` (selection term), ``loss`` (held-out BCE), ``mse``, ``i_x`` (nats)."""

    needs_conv = True
    x_key = "neg_loss"
    plane_x_key = "i_x"
    description = "reconstruction decoder on the last conv stage (paper's I(X;F) proxy); lower BCE = more I(X;F)"

    def __init__(self, settings: ReconSettings | None = None) -> None:
        self.settings = settings or ReconSettings()

    @classmethod
    def from_config(cls, sc) -> "ReconEstimator":
        r = sc.recon
        return cls(
            ReconSettings(
                hidden_channels=r.hidden_channels,
                lr=r.lr,
                max_epochs=r.max_epochs,
                patience=r.patience,
                batch_size=r.batch_size,
                holdout_fraction=r.holdout_fraction,
                folds=r.folds,
                seed=sc.seed,
            )
        )

    def params(self) -> dict:
        params = asdict(self.settings)
        params.pop("group_size")  # how decoders are batched does not change their results
        return params

    def score(
        self,
        features: Sequence[CheckpointFeatures],
        data: ScoringData,
        conv: ConvSource | None = None,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, float]]:
        if conv is None:
            raise ScoringError("recon needs the checkpoints' last conv stage (a ConvSource)")
        if conv.num_checkpoints != len(features):
            raise ValueError(f"conv source has {conv.num_checkpoints} checkpoints, features {len(features)}")
        return train_decoders(conv, data.x, self.settings, device)
