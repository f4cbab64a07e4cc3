"""Training the ``recon`` decoders: seeds, fit / stop / eval rows, early stopping, statistics.

``train_decoders`` trains ``seeds`` decoders per checkpoint side by side (``recon_decoder``'s
grouped module, one Adam per group), each stopping on its own loss on held-out training rows
(``_EarlyStopping``; a stopped decoder is cut out of its group), and reports the validation
statistics at each decoder's best epoch with seeds x folds jackknife replicates. The method and
its fidelity notes: ``recon.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.progress import Progress
from harness.training import num_threads

from .base import ConvSource, Estimate
from .fold_stats import coordinate_stats, fold_moments
from .recon_decoder import GroupedDecoder, to_unit_interval
from .replicates import jackknife_replicates

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2**20  # activation memory per group of decoders trained as one module

SINGLE_THREAD_MACS = 1e8  # CPU: below this many multiply-adds per training step, use one thread


def decoder_threads(device: torch.device, step_macs: float) -> int:
    """Torch threads the decoders train with: one for small CPU decoders, else the configured ones.

    Small decoders' convolutions gain nothing from intra-op threads, and on shared cores extra
    threads spin (5-20x slower in measurements on 2 cores). The choice depends only on the
    configured threads (``set_threads``) and the decoders' size, never on the machine's load, and
    every estimate records it (``threads``): thread counts can change float sums.
    """
    if device.type != "cpu" or step_macs >= SINGLE_THREAD_MACS:
        return torch.get_num_threads()
    return 1


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
    runs, threads = [], decoder_threads(device, step_macs)
    with num_threads(threads):
        for r in range(s.seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s.seed * 1_000_003 + r)
                single = GroupedDecoder(1, feat_channels, out_channels, s.hidden_channels, out_size, s.align_corners)
            fit, stop = stop_split(train_rows, s, r)
            split = _Split(fit, stop, eval_rows, folds, int(folds.max()) + 1)
            groups = _new_groups(single, k_total, chunk, s.lr, device)
            runs.append(_fit(source, x01, groups, k_total, split, s, r, device))
    return _estimates(x01[eval_rows], folds, runs, threads)


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


def _group_size(s: ReconSettings, feat_channels: int, out_channels: int, out_size: tuple[int, ...]) -> int:
    """Decoders per grouped module: ``group_size``, or as many as fit ``CHUNK_BYTES`` of activations."""
    if s.group_size > 0:
        return s.group_size
    per_decoder_bytes = 4 * 4 * s.batch_size * (feat_channels + s.hidden_channels + out_channels) * math.prod(out_size)
    return max(1, CHUNK_BYTES // max(per_decoder_bytes, 1))


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


def _per_decoder(logits: Tensor, k: int, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample and decoder: BCE summed over coordinates [B, k], squared error [B, k, d]."""
    b = target.shape[0]
    z = logits.reshape(b, k, *target.shape[1:])
    t = target.unsqueeze(1).expand_as(z)
    bce = F.binary_cross_entropy_with_logits(z, t, reduction="none").reshape(b, k, -1)
    se = (torch.sigmoid(z) - t).pow(2).reshape(b, k, -1)
    return bce.sum(dim=2), se


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

    def earliest_stop(self) -> int:
        """The epoch by which every active decoder stops if none improves again (its best epoch +
        ``patience``); the expected length of training, not the ``max_epochs`` cap."""
        return max((self.best_epoch[k] + self.patience for k, a in enumerate(self.active) if a), default=0)

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
    with Progress(s.patience + 1, desc, "epoch", log=logger) as progress:
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
            # the total is the patience rule's stop (the 1,000-epoch cap is a safety net only)
            progress.set_total(max(epoch, min(s.max_epochs, stopping.earliest_stop())))
            progress.set_postfix(
                f"{sum(len(g.members) for g in groups)} still training, all stop by epoch "
                f"{progress.total} unless they improve (patience {s.patience})"
            )
            progress.update()
    return stopping.result(epochs_run)


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


def _stats(bce: Tensor, se: Tensor, n: Tensor, sx: Tensor, sxx: Tensor, keep: Tensor) -> dict[str, float]:
    """Reported values on the folds ``keep`` (bool [F]) from per-fold sums (module doc)."""
    rows = float(n[keep].sum())
    loss = float(bce[keep].sum()) / (rows * se.shape[-1])
    return {"loss": loss, "neg_loss": -loss, **coordinate_stats(se, n, sx, sxx, keep)}


def _estimates(x_eval: Tensor, folds: Tensor, runs: list[_SeedResult], threads: int) -> list[Estimate]:
    """Per checkpoint: values averaged over seeds, seeds x folds jackknife replicates, diagnostics
    (with the decoders' torch ``threads``)."""
    n_folds = int(folds.max()) + 1
    n, sx, sxx = fold_moments(x_eval, folds, n_folds)
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
        values.update(_diagnostics(runs, k), threads=float(threads))
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
