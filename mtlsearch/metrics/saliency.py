"""Saliency scores: max F-measure (beta^2 = 0.3) over fixed thresholds.

Contract: :class:`SaliencyMetric` follows :class:`~mtlsearch.metrics.base.Metric`; ATRC's
protocol by default, InvPT's (a second sigmoid on the probabilities) with
``eval.sal_protocol: invpt``.
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
    counts (not a mean of per-image F, nor F of mean per-image precision/recall). An
    undefined F (no predicted or no label positive) counts as 0.

    ``protocol`` (``eval.sal_protocol``):

    - ``"atrc"`` (default): ATRC's ``MaxF`` (``src/data/metrics.py``: thresholds
      ``arange(0.05, 1, 0.05)`` on the probability, ``>=``, ``beta_squared=0.3``, counts
      summed over the split), shared by the ``SaliencyMeterWithBeta`` of later MTL code
      bases. Matches the official evaluators' maxF exactly (up to their 1e-8 guards).
    - ``"invpt"``: InvPT's ``SaliencyMeter`` (``evaluation/eval_sal.py``) receives the
      softmax probability x 255, divides by 255 and then applies ``torch.sigmoid`` again
      ("squash logits into probabilities") before thresholding. A probability in [0, 1]
      becomes ``sigmoid(prob)`` in [0.5, 0.731], so every threshold <= 0.5 predicts every
      pixel, every threshold >= 0.75 none, and only 0.55, 0.60, 0.65, 0.70 discriminate
      (probability >= logit(t): 0.2007, 0.4055, 0.6190, 0.8473): five distinct operating
      points (with "everything") instead of 19, about one point of maxF lower on PASCAL
      (measured against the official evaluator). 3DMTL's PASCAL table copies InvPT's numbers, so compare with it under
      this protocol.

    MTL-PyTorch's older ``eval_sal.py`` instead averages per-image precision/recall over
    15 thresholds in [0.2, 0.9] with beta = 1; we do not follow that one.
    """

    names = ("maxf",)
    PROTOCOLS = ("atrc", "invpt")
    """Values of ``protocol`` (``eval.sal_protocol``)."""

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        *,
        beta_sq: float = 0.3,
        from_logits: bool = True,
        ignore_index: int = IGNORE,
        protocol: str = "atrc",
    ) -> None:
        if protocol not in self.PROTOCOLS:
            raise ValueError(f"SaliencyMetric: protocol must be one of {self.PROTOCOLS}, got {protocol!r}")
        values = _default_sal_thresholds() if thresholds is None else tuple(float(t) for t in thresholds)
        if not values or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"SaliencyMetric: thresholds must be increasing, got {values}")
        self.thresholds = torch.tensor(values, dtype=torch.float64)
        self.beta_sq = float(beta_sq)
        self.from_logits = from_logits
        self.ignore_index = ignore_index
        self.protocol = protocol
        super().__init__()

    def _spec(self) -> dict[str, tuple[int, ...]]:
        t = len(self.thresholds)
        return {"tp": (t,), "pred_pos": (t,), "label_pos": (1,)}

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _single_channel(pred, target, "SaliencyMetric", from_logits=self.from_logits)
        valid = target != self.ignore_index
        prob = pred[valid].double().cpu()
        if self.protocol == "invpt":
            prob = torch.sigmoid(prob)  # InvPT's second sigmoid, on probabilities
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
