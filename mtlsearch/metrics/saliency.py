"""Saliency scores: max F-measure (beta^2 = 0.3) over fixed thresholds.

Contract: :class:`SaliencyMetric` follows :class:`~mtlsearch.metrics.base.Metric`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtlsearch.metrics.base import (
    Metric,
    _single_channel,
)
from mtlsearch.tasks import (
    IGNORE,
)

# ---------------------------------------------------------------------------
# Saliency
# ---------------------------------------------------------------------------


def _default_sal_thresholds() -> tuple[float, ...]:
    return tuple(round(0.05 * k, 10) for k in range(1, 20))


class SaliencyMetric(Metric):
    """maxF (percent): the maximum over thresholds of the F-beta measure, beta^2 = 0.3.

    ``pred`` (B, 1, H, W) logits (``from_logits=True``: sigmoid) or probabilities;
    ``target`` (B, 1, H, W) in [0, 1], binarised as ``target > 0.5``, ``ignore_index``
    skipped. A pixel is predicted salient at threshold t when ``prob >= t``, thresholds
    0.05, 0.10, ..., 0.95. True positives, predicted positives and label positives are
    summed over the whole split per threshold and F is computed from those split-level
    counts (not a mean of per-image F, nor F of mean per-image precision/recall): this is
    the convention of ATRC's ``MaxF`` (``src/data/metrics.py``: thresholds
    ``arange(0.05, 1, 0.05)``, ``>=``, ``beta_squared=0.3``, counts summed over the split),
    shared by the ``SaliencyMeterWithBeta`` of later MTL code bases. An undefined F (no
    predicted or no label positive) counts as 0, as there. Note that MTL-PyTorch's older
    ``eval_sal.py`` instead averages per-image precision/recall over 15 thresholds in
    [0.2, 0.9] with beta = 1; we do not follow that one.
    """

    names = ("maxf",)

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        *,
        beta_sq: float = 0.3,
        from_logits: bool = True,
        ignore_index: int = IGNORE,
    ) -> None:
        values = _default_sal_thresholds() if thresholds is None else tuple(float(t) for t in thresholds)
        if not values or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"SaliencyMetric: thresholds must be increasing, got {values}")
        self.thresholds = torch.tensor(values, dtype=torch.float64)
        self.beta_sq = float(beta_sq)
        self.from_logits = from_logits
        self.ignore_index = ignore_index
        super().__init__()

    def _spec(self) -> dict[str, tuple[int, ...]]:
        t = len(self.thresholds)
        return {"tp": (t,), "pred_pos": (t,), "label_pos": (1,)}

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _single_channel(pred, target, "SaliencyMetric", from_logits=self.from_logits)
        valid = target != self.ignore_index
        prob = pred[valid].double().cpu()
        pos = (target[valid] > 0.5).cpu()
        t = len(self.thresholds)
        # level k = number of thresholds <= prob: the pixel is positive at thresholds [0, k)
        level = torch.bucketize(prob, self.thresholds, right=True)
        at_least = torch.bincount(level, minlength=t + 1).flip(0).cumsum(0).flip(0)[1:]
        at_least_pos = torch.bincount(level[pos], minlength=t + 1).flip(0).cumsum(0).flip(0)[1:]
        self.state["pred_pos"] += at_least.double()
        self.state["tp"] += at_least_pos.double()
        self.state["label_pos"] += float(pos.sum())

    def compute(self) -> dict[str, float]:
        tp, pp, lp = self.state["tp"], self.state["pred_pos"], self.state["label_pos"]
        if float(pp[0]) == 0 and float(lp) == 0:
            return {"maxf": float("nan")}
        prec = tp / pp
        rec = tp / lp
        f = (1 + self.beta_sq) * prec * rec / (self.beta_sq * prec + rec)
        f = torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        return {"maxf": 100.0 * float(f.max())}
