"""Geometric scores: depth (RMSE, abs rel, log RMSE, sq rel) and surface normals (angular
errors and within-threshold fractions from a fine histogram).

Contract: both follow :class:`~mtlsearch.metrics.base.Metric`; every score is accumulated
per pixel over the whole split, as the official evaluators do. Depth
predictions are clamped to 1e-9 before scoring by default, as the official MTI-Net/InvPT
evaluators do (``eval.depth_clamp``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mtlsearch.metrics.base import (
    Metric,
    _fit,
    _single_channel,
)

# ---------------------------------------------------------------------------
# Depth
# ---------------------------------------------------------------------------


DEPTH_FLOOR = 1e-9
"""Depth predictions are clamped to this value (metres) before scoring, as the official
evaluators do (MTI-Net: ``clamp(pred, min=1e-9)``; InvPT: ``pred[pred <= 0] = 1e-9``)."""


class DepthMetric(Metric):
    """Depth errors over the valid pixels of a split: ``rmse`` (metres), ``abs_rel``,
    ``log_rmse`` and ``sq_rel``.

    ``pred`` (B, 1, H, W) metres (bilinearly resized to the label if needed); ``target``
    (B, 1, H, W) metres, 0 = invalid (valid: ``target > 0``). With ``p`` the prediction,
    ``t`` the label and N the number of valid pixels of the whole split (sums accumulated
    per pixel over the split, not means of per-image values, as the official depth
    meters accumulate)::

        rmse     = sqrt(sum (p - t)^2 / N)
        abs_rel  = sum |p - t| / t / N
        sq_rel   = sum (p - t)^2 / t / N
        log_rmse = sqrt(sum (ln p' - ln t)^2 / N),  p' = max(p, DEPTH_FLOOR)

    ``clamp=True`` (default, ``eval.depth_clamp``; the official protocol) first replaces
    predictions at or below 0 by :data:`DEPTH_FLOOR` (1e-9 m), as MTI-Net's and InvPT's
    ``DepthMeter`` do (InvPT's ``get_output`` also clamps at 0 before); a negative
    prediction then counts as 0 m, not as its raw value, which lowers the errors (issue
    21: RMSE 0.64871 unclamped vs 0.64210 official on the same predictions).
    ``clamp=False`` scores the raw predictions (the previous behaviour) in ``rmse``,
    ``abs_rel`` and ``sq_rel``; ``log_rmse`` always uses ``p'`` (the logarithm of a
    non-positive prediction is undefined; 1e-9 is the official floor, so such a pixel
    contributes ``(ln 1e-9 - ln t)^2``, about 429 for t = 1 m: a heavy but finite penalty).

    Differences from the official code: InvPT also drops labels >= 80 m (``max_depth``);
    NYUD's depths are below 10 m, so this changes nothing there. MTI-Net's online meter
    reports ``rmse`` and ``log_rmse``, InvPT's ``rmse`` (and ``abs_rel`` in its
    accumulator); ``sq_rel`` follows the later meters of the same code family
    (``sum (t - p)^2 / t / N``).
    """

    names = ("rmse", "abs_rel", "log_rmse", "sq_rel")

    def __init__(self, *, clamp: bool = True) -> None:
        self.clamp = bool(clamp)
        super().__init__()

    def _spec(self) -> dict[str, tuple[int, ...]]:
        return {
            "sum_sq": (1,), "sum_abs_rel": (1,), "sum_log_sq": (1,), "sum_sq_rel": (1,),
            "count": (1,),
        }

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _single_channel(pred, target, "DepthMetric")
        pred, target = pred.double(), target.double()
        valid = target > 0
        p, t = pred[valid], target[valid]
        floored = p.clamp_min(DEPTH_FLOOR)
        if self.clamp:
            p = floored
        err = p - t
        sq = err * err
        log_err = torch.log(floored) - torch.log(t)
        self.state["sum_sq"] += float(sq.sum())
        self.state["sum_abs_rel"] += float((err.abs() / t).sum())
        self.state["sum_log_sq"] += float((log_err * log_err).sum())
        self.state["sum_sq_rel"] += float((sq / t).sum())
        self.state["count"] += float(valid.sum())

    def compute(self) -> dict[str, float]:
        n = float(self.state["count"])
        if n == 0:
            return {k: float("nan") for k in self.names}
        return {
            "rmse": math.sqrt(float(self.state["sum_sq"]) / n),
            "abs_rel": float(self.state["sum_abs_rel"]) / n,
            "log_rmse": math.sqrt(float(self.state["sum_log_sq"]) / n),
            "sq_rel": float(self.state["sum_sq_rel"]) / n,
        }


# ---------------------------------------------------------------------------
# Surface normals
# ---------------------------------------------------------------------------


class NormalsMetric(Metric):
    """Angular error of surface normals in degrees over the valid pixels of a split.

    ``pred`` (B, 3, H, W) of any norm, L2-normalised per pixel (a zero prediction counts
    as 90 degrees); ``target`` (B, 3, H, W) unit vectors, the all-zero vector = invalid.
    Reports ``mean_err``, ``median_err``, ``rmse`` (degrees) and ``within_11_25``,
    ``within_22_5``, ``within_30`` (percent of pixels with error strictly below the bound).

    Mean, RMSE and the within-fractions are exact. The median comes from a histogram of
    ``NORMAL_HIST_BINS`` bins of 0.01 degree over [0, 180] (bounded memory, summable across
    workers): each of the two middle order statistics (one when N is odd) is replaced by
    the centre of its bin, so the median is within 0.005 degree of the exact one.
    """

    BIN_DEG = 0.01
    BINS = 18000
    BOUNDS = (11.25, 22.5, 30.0)
    names = ("mean_err", "median_err", "rmse", "within_11_25", "within_22_5", "within_30")

    def _spec(self) -> dict[str, tuple[int, ...]]:
        return {
            "sum": (1,), "sum_sq": (1,), "count": (1,),
            "within": (len(self.BOUNDS),), "hist": (self.BINS,),
        }

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if target.dim() != 4 or target.shape[1] != 3 or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"NormalsMetric: expected (B, 3, H, W) pred and target, got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target = target.double()
        pred = _fit(pred, tuple(target.shape[-2:])).double()
        valid = target.abs().sum(dim=1) > 0
        p = F.normalize(pred, dim=1).permute(0, 2, 3, 1)[valid]
        t = F.normalize(target, dim=1).permute(0, 2, 3, 1)[valid]
        # 2 atan2(|p - t|, |p + t|): the angle, accurate near 0 and 180 degrees (unlike acos)
        deg = torch.rad2deg(2 * torch.atan2((p - t).norm(dim=-1), (p + t).norm(dim=-1)))
        self.state["sum"] += float(deg.sum())
        self.state["sum_sq"] += float((deg * deg).sum())
        self.state["count"] += float(deg.numel())
        self.state["within"] += torch.tensor(
            [float((deg < b).sum()) for b in self.BOUNDS], dtype=torch.float64
        )
        bins = (deg / self.BIN_DEG).floor().long().clamp(0, self.BINS - 1)
        self.state["hist"] += torch.bincount(bins, minlength=self.BINS).to("cpu", torch.float64)

    def compute(self) -> dict[str, float]:
        n = float(self.state["count"])
        if n == 0:
            return {k: float("nan") for k in self.names}
        cum = torch.cumsum(self.state["hist"], 0)
        # bins of the two middle order statistics (the same one when N is odd)
        ranks = torch.tensor([math.floor((n + 1) / 2), math.ceil((n + 1) / 2)], dtype=torch.float64)
        lo, hi = (int(k) for k in torch.searchsorted(cum, ranks))
        within = self.state["within"]
        return {
            "mean_err": float(self.state["sum"]) / n,
            "median_err": ((lo + hi) / 2 + 0.5) * self.BIN_DEG,
            "rmse": math.sqrt(float(self.state["sum_sq"]) / n),
            "within_11_25": 100.0 * float(within[0]) / n,
            "within_22_5": 100.0 * float(within[1]) / n,
            "within_30": 100.0 * float(within[2]) / n,
        }
