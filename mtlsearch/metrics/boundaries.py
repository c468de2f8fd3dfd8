"""Boundary scores (edge): ODS/OIS F-measure through pyEdgeEval's BSDS matcher,
made reproducible by reseeding the matcher (refused when that is impossible).

Contract: :class:`EdgeMetric` follows :class:`~mtlsearch.metrics.base.Metric`; a
pyEdgeEval that cannot be reseeded raises :class:`~mtlsearch.errors.UserError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mtlsearch.errors import UserError
from mtlsearch.metrics.base import (
    Metric,
    _single_channel,
)
from mtlsearch.tasks import (
    IGNORE,
)

# ---------------------------------------------------------------------------
# Boundaries (edge)
# ---------------------------------------------------------------------------


def _seism_prf(
    cnt_r: np.ndarray, sum_r: np.ndarray, cnt_p: np.ndarray, sum_p: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 from match counts with SEISM's conventions for empty sets:
    no boundary in the labels -> R = 1, P = 0; no predicted boundary -> R = 0, P = 1."""
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(a, dtype=np.float64) for a in (cnt_r, sum_r, cnt_p, sum_p))
    rec = np.where(sum_r > 0, cnt_r / np.maximum(sum_r, 1), 1.0)
    prec = np.where(sum_p > 0, cnt_p / np.maximum(sum_p, 1), 1.0)
    rec = np.where((sum_r > 0) & (sum_p == 0), 0.0, rec)
    prec = np.where(sum_r == 0, 0.0, prec)
    den = prec + rec
    f1 = np.where(den > 0, 2 * prec * rec / np.where(den > 0, den, 1), 0.0)
    return prec, rec, f1


def _edge_engine() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """pyEdgeEval's matcher, thinning and NMS, imported on first use (they pull in cv2)."""
    try:
        from pyEdgeEval._lib import correspond_pixels
        from pyEdgeEval.preprocess import binary_thin, fast_nms
    except ImportError as err:
        raise UserError(
            f"edge evaluation needs pyEdgeEval==0.2.8 with opencv-python-headless ({err}); "
            "reinstall the package: pip install -e ."
        ) from None
    reseed = _matcher_reseed()

    def seeded_correspond_pixels(*args: Any, **kwargs: Any) -> Any:
        reseed(MATCHER_SEED)
        return correspond_pixels(*args, **kwargs)

    return seeded_correspond_pixels, binary_thin, fast_nms


MATCHER_SEED = 1
"""Seed of the BSDS matcher's random outlier edges, set before every matching."""

RESEED_SYMBOLS = ("_ZN6Random4randE", "_ZN6Random6reseedEm")
"""The matcher's global generator ``Random::rand`` and ``Random::reseed(uint64)``, as
pyEdgeEval 0.2.8's ``correspond_pixels`` extension exports them (Itanium C++ names)."""


@functools.lru_cache(maxsize=1)
def _matcher_reseed() -> Callable[[int], None]:
    """``Random::rand.reseed`` of pyEdgeEval's C++ matcher (BSDS seeds it from the clock),
    so edge scores are reproducible. pyEdgeEval has no Python API for it, so it is called
    through ctypes; a build that does not export the symbols raises a UserError rather
    than scoring edges non-reproducibly."""
    import ctypes
    import importlib

    module = importlib.import_module("pyEdgeEval._lib.correspond_pixels")
    path = getattr(module, "__file__", None)
    try:
        lib = ctypes.CDLL(path)
        rng = ctypes.addressof(ctypes.c_char.in_dll(lib, RESEED_SYMBOLS[0]))
        func = getattr(lib, RESEED_SYMBOLS[1])
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise UserError(
            f"edge evaluation cannot be made reproducible: pyEdgeEval's matcher ({path}) does "
            f"not export {' and '.join(RESEED_SYMBOLS)} ({err}), so its clock-seeded outlier "
            "edges would change scores between runs; install the pinned build: "
            "pip install --force-reinstall pyedgeeval==0.2.8"
        ) from None
    func.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    func.restype = None
    return lambda seed: func(rng, seed)


def edge_thresholds(thresholds: int | Sequence[float]) -> np.ndarray:
    """An int T gives ``linspace(1/(T+1), 1 - 1/(T+1), T)`` (BSDS/pyEdgeEval; T = 99 is
    SEISM's 0.01..0.99 as MTL-PyTorch runs it); a sequence is used as given."""
    if isinstance(thresholds, (int, np.integer)):
        if thresholds < 1:
            raise UserError(f"eval.edge_thresholds: must be >= 1, got {thresholds}")
        t = int(thresholds)
        return np.linspace(1.0 / (t + 1), 1.0 - 1.0 / (t + 1), t)
    arr = np.asarray(list(thresholds), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or np.any(np.diff(arr) <= 0):
        raise UserError(f"edge thresholds: need an increasing, non-empty list, got {list(thresholds)}")
    return arr


class EdgeMetric(Metric):
    """Boundary F-measure at the optimal dataset scale (``odsf``) and optimal image scale
    (``oisf``), percent, in the spirit of MATLAB SEISM as used by MTL-PyTorch/ATRC/InvPT.

    ``pred`` (B, 1, H, W) logits (``from_logits=True``: sigmoid) or probabilities;
    ``target`` (B, 1, H, W) in {0, 1} (> 0.5 = boundary), ``ignore_index`` = unlabelled.
    Per image, at label resolution:

    1. (``nms=True``) non-maximum suppression of the probability map with pyEdgeEval's
       ``fast_nms`` (a port of Dollár's ``edgesNmsMex``: triangle smoothing of radius 1,
       orientation from the radius-4-smoothed map, suppression radius r=1, border
       suppression s=5, multiplier m=1.01; edges within 5 px of the image border are
       attenuated; surviving values are those of the smoothed map, so a crisp 1-px line
       of probability p keeps about p/2). Pixels with the ignore label are then set to 0
       (never predicted).
    2. For each threshold t: ``prob > t`` (SEISM's strict comparison), morphological
       thinning (``thinning=True``; pyEdgeEval's port of ``bwmorph(.., 'thin', Inf)``).
    3. Matching with pyEdgeEval's ``correspond_pixels``: the BSDS ``correspondPixels`` C++
       (min-cost one-to-one bipartite assignment, CSA) compiled with Cython, tolerance
       ``max_dist`` x image diagonal, outlier cost 100 — the engine SEISM calls through
       ``edgesEvalImg``. Label pixels are used as given (not thinned).
    4. Counts (matched labels, label pixels, matched predictions, predicted pixels) are
       summed over the split per threshold; ``odsf`` = max over thresholds of the F of the
       summed counts; ``oisf`` = F of the sums of each image's counts at its own best
       threshold (SEISM's ``general_ods``/``general_ois``, with its empty-set conventions:
       no label boundary -> R = 1, P = 0; no predicted boundary -> R = 0, P = 1).

    Differences from MATLAB SEISM: the thresholds (default ``eval.edge_thresholds = 21``
    evenly spaced in (0, 1) instead of the 99 (0.01..0.99) MTL-PyTorch passes to SEISM;
    set 99 to reproduce them, as the paper profiles do; SEISM's 101-point grid only adds
    0 and 1, which never give the optimum; a coarser grid can lower ODS/OIS slightly); SEISM's reader
    itself only thresholds and thins, so NMS is a preprocessing choice (``nms=False``
    skips it); the probability map is evaluated as float instead of an 8-bit PNG; NMS and
    thinning are Python/Cython ports, not the MATLAB/MEX originals; ODS is not interpolated between
    thresholds (as SEISM, unlike BSDS ``edgesEvalDir``); ignore pixels do not exist in
    SEISM; the tolerance and NMS use the evaluated tensor, so pass each image unpadded
    (:func:`mtlsearch.evaluate.update_metric` crops validation padding, so the tolerance is
    SEISM's fraction of the real image's diagonal and no edge is suppressed at the padding); BSDS draws the matcher's outlier edges with a clock-seeded
    random generator, so its counts can differ between runs in ties; here it is reseeded
    with :data:`MATCHER_SEED` before every matching, so scores are reproducible.

    Cost: one matching per image and threshold, about 20 ms at 96 x 128 and 0.2-0.8 s at
    480 x 640 on one CPU core (more for noisy maps with many candidate pixels), so the
    number of thresholds and validation images bounds evaluation time.
    """

    names = ("odsf", "oisf")

    def __init__(
        self,
        max_dist: float = 0.011,
        thresholds: int | Sequence[float] = 21,
        *,
        from_logits: bool = True,
        nms: bool = True,
        thinning: bool = True,
        ignore_index: int = IGNORE,
    ) -> None:
        if not max_dist > 0:
            raise UserError(f"eval.edge_max_dist: must be positive, got {max_dist}")
        self.max_dist = float(max_dist)
        self.thresholds = edge_thresholds(thresholds)
        self.from_logits = from_logits
        self.nms = nms
        self.thinning = thinning
        self.ignore_index = ignore_index
        super().__init__()

    def _spec(self) -> dict[str, tuple[int, ...]]:
        t = len(self.thresholds)
        return {"cnt_r": (t,), "sum_r": (t,), "cnt_p": (t,), "sum_p": (t,), "ois": (4,), "images": (1,)}

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _single_channel(pred, target, "EdgeMetric", from_logits=self.from_logits)
        probs = pred.detach().double().cpu().numpy()
        labels = target.detach().double().cpu().numpy()
        for prob, label in zip(probs, labels):
            self._update_image(prob, label)

    def _update_image(self, prob: np.ndarray, label: np.ndarray) -> None:
        correspond_pixels, binary_thin, fast_nms = _edge_engine()
        ignore = label == self.ignore_index
        gt = (label > 0.5) & ~ignore
        if self.nms:
            prob = fast_nms(np.ascontiguousarray(prob, dtype=np.float64))
        prob = np.where(ignore, 0.0, prob)
        n = len(self.thresholds)
        cnt_r, sum_r, cnt_p, sum_p = (np.zeros(n) for _ in range(4))
        n_gt = float(gt.sum())
        for i, thr in enumerate(self.thresholds):
            bmap = prob > thr
            if self.thinning:
                bmap = binary_thin(bmap)
            sum_r[i] = n_gt
            sum_p[i] = float(bmap.sum())
            if n_gt > 0 and sum_p[i] > 0:
                match_pred, match_gt, _, _ = correspond_pixels(bmap, gt, max_dist=self.max_dist)
                cnt_p[i] = float((match_pred > 0).sum())
                cnt_r[i] = float((match_gt > 0).sum())
        _, _, f1 = _seism_prf(cnt_r, sum_r, cnt_p, sum_p)
        best = int(np.argmax(f1))
        self.state["cnt_r"] += torch.from_numpy(cnt_r)
        self.state["sum_r"] += torch.from_numpy(sum_r)
        self.state["cnt_p"] += torch.from_numpy(cnt_p)
        self.state["sum_p"] += torch.from_numpy(sum_p)
        self.state["ois"] += torch.tensor([cnt_r[best], sum_r[best], cnt_p[best], sum_p[best]], dtype=torch.float64)
        self.state["images"] += 1.0

    def pr_curve(self) -> dict[str, np.ndarray]:
        """Split-level ``thresholds``, ``precision``, ``recall``, ``f1`` (fractions)."""
        s = {k: v.numpy() for k, v in self.state.items()}
        prec, rec, f1 = _seism_prf(s["cnt_r"], s["sum_r"], s["cnt_p"], s["sum_p"])
        return {"thresholds": self.thresholds.copy(), "precision": prec, "recall": rec, "f1": f1}

    def compute(self) -> dict[str, float]:
        if float(self.state["sum_r"].sum()) == 0 and float(self.state["sum_p"].sum()) == 0:
            # no image, or only unlabelled ones (and nothing predicted): undefined
            return {"odsf": float("nan"), "oisf": float("nan")}
        ods = float(self.pr_curve()["f1"].max())
        _, _, ois = _seism_prf(*self.state["ois"].numpy())
        return {"odsf": 100.0 * ods, "oisf": 100.0 * float(ois)}
