"""Split-level evaluation metrics for the dense prediction tasks, and delta_m.

Every metric accumulates *sufficient statistics* over a whole split (DESIGN §4: not
averaged per image) and scores them at the end::

    m = SegMetric(num_classes=40)
    for batch in loader:
        m.update(pred, target)      # tensors in the tasks.py conventions (any device)
    scores = m.compute()            # {"miou": ..., "pixel_acc": ...}
    m.reset()

Reported keys are ``f"{task}_{name}"`` (``semseg_miou``, ``depth_rmse``, ...); see
:func:`compute_all`; their directions are the task registry's
(:func:`mtlsearch.tasks.metric_directions`).

Reduction across DDP workers (the contract)
-------------------------------------------
All statistics are sums, so the metric over the union of several workers' shards is
the metric over the element-wise SUM of their statistics. Each metric exposes them as
one flat float64 CPU tensor whose length depends only on the constructor arguments
(so it is the same on every worker, whatever data each one saw):

- ``t = m.to_tensor()``: a copy of the statistics;
- ``m.from_tensor(t)``: replace the statistics by ``t`` (e.g. after ``all_reduce``);
- ``m.merge(other)``: add another accumulator of the same kind and arguments;
- ``m.sync(fn)``: ``fn`` receives ``to_tensor()``, reduces it (in place, returning
  ``None``, or returning the reduced tensor) and the result is loaded back. With
  ``torch.distributed``::

      def all_sum(t):
          t = t.to(device)                       # NCCL needs a CUDA tensor
          dist.all_reduce(t, op=dist.ReduceOp.SUM)
          return t.cpu()

      m.sync(all_sum)                            # or sync_metrics(metrics, all_sum): one call

  Every worker must call ``sync`` (a collective), even one that saw no data, and the
  shards must be disjoint: a sampler that pads the split with repeated samples counts
  them twice. Counts stay exact in float64 up to 2**53 pixels.

Metrics without any valid pixel report NaN. Percentages are in [0, 100].
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtlsearch.errors import UserError
from mtlsearch.tasks import (
    IGNORE,
    NUM_CLASSES,
    TASKS,
    metric_direction,
    resize_label,
    resize_pred,
    strip_prefixes,
)

# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------


class Metric(abc.ABC):
    """An accumulator of summable float64 statistics (see the module docstring).

    Subclasses declare ``names`` (the keys :meth:`compute` returns: the metrics of the
    tasks it scores in :data:`mtlsearch.tasks.TASKS`, where their directions live) and
    the shapes of their statistics in :meth:`_spec`.
    """

    names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}
        self.reset()

    @abc.abstractmethod
    def _spec(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of each summable statistic."""

    @abc.abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """Scores over everything accumulated."""

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.state = {k: torch.zeros(shape, dtype=torch.float64) for k, shape in self._spec().items()}

    @property
    def numel(self) -> int:
        """Length of :meth:`to_tensor` (fixed by the constructor arguments)."""
        return sum(math.prod(shape) for shape in self._spec().values())

    def to_tensor(self) -> torch.Tensor:
        """All statistics as one flat float64 CPU tensor (a copy)."""
        return torch.cat([v.reshape(-1) for v in self.state.values()]).clone()

    def from_tensor(self, flat: torch.Tensor) -> None:
        """Replace the statistics by ``flat`` (as produced by :meth:`to_tensor`)."""
        flat = flat.detach().to("cpu", torch.float64).reshape(-1)
        if flat.numel() != self.numel:
            raise ValueError(
                f"{type(self).__name__}.from_tensor: expected {self.numel} values, got {flat.numel()}"
            )
        offset = 0
        for key, value in self.state.items():
            n = value.numel()
            self.state[key] = flat[offset : offset + n].reshape(value.shape).clone()
            offset += n

    def merge(self, other: Metric) -> None:
        """Add the statistics of ``other`` (same class, same constructor arguments)."""
        if type(other) is not type(self) or other.numel != self.numel:
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self.from_tensor(self.to_tensor() + other.to_tensor())

    def sync(self, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
        """Reduce the statistics with ``fn`` (e.g. an all-reduce SUM) and load the result."""
        flat = self.to_tensor()
        out = fn(flat)
        self.from_tensor(flat if out is None else out)


def _squeeze_channel(x: torch.Tensor, what: str) -> torch.Tensor:
    """(B, 1, H, W) -> (B, H, W); (B, H, W) unchanged."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 3:
        return x
    raise ValueError(f"{what}: expected (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")


def _fit(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a (B, C, H, W) prediction to the label size (scores are taken at
    label resolution)."""
    return resize_pred(pred.float(), size)


def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else float("nan")


# ---------------------------------------------------------------------------
# Segmentation (semseg, parts)
# ---------------------------------------------------------------------------


class SegMetric(Metric):
    """mIoU and pixel accuracy (percent) from a confusion matrix over the split.

    ``pred``: logits (B, C, H, W) (argmax; bilinearly resized to the label first if the
    sizes differ) or labels (B, H, W) (nearest-resized). ``target``: (B, H, W) or
    (B, 1, H, W) class indices, ``ignore_index`` skipped.

    mIoU averages the per-class IoU ``TP / (TP + FP + FN)`` over the classes whose union
    ``TP + FP + FN`` is non-zero, i.e. classes that occur in the labels or the predictions
    of the split; classes absent from both are excluded rather than counted as 0 or 1.
    (ATRC's ``MeanIoU`` and MTL-PyTorch count such classes as 0; on the full NYUD/PASCAL
    validation splits, where every class occurs, the conventions agree.) Pixel accuracy = correct / valid pixels.
    """

    names = ("miou", "pixel_acc")

    def __init__(self, num_classes: int, ignore_index: int = IGNORE) -> None:
        if num_classes < 1:
            raise ValueError(f"SegMetric: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        super().__init__()

    def _spec(self) -> dict[str, tuple[int, ...]]:
        return {"confusion": (self.num_classes, self.num_classes)}

    @property
    def confusion(self) -> torch.Tensor:
        """(C, C) pixel counts, rows = label, columns = prediction."""
        return self.state["confusion"]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = _squeeze_channel(target, "SegMetric target").long()
        size = tuple(target.shape[-2:])
        if pred.dim() == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"SegMetric: logits have {pred.shape[1]} channels, expected {self.num_classes}"
                )
            labels = _fit(pred, size).argmax(dim=1)
        elif pred.dim() == 3:
            labels = resize_label(pred.long(), size, "semseg")
        else:
            raise ValueError(f"SegMetric: pred must be (B, C, H, W) or (B, H, W), got {tuple(pred.shape)}")
        if labels.shape != target.shape:
            raise ValueError(f"SegMetric: pred {tuple(labels.shape)} vs target {tuple(target.shape)}")
        valid = target != self.ignore_index
        t, p = target[valid], labels[valid].to(target.device)
        c = self.num_classes
        if t.numel() and (t.min() < 0 or t.max() >= c or p.min() < 0 or p.max() >= c):
            raise ValueError(f"SegMetric: label or prediction outside [0, {c}) (ignore {self.ignore_index})")
        counts = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
        self.state["confusion"] += counts.to("cpu", torch.float64)

    def per_class_iou(self) -> torch.Tensor:
        """IoU of every class in [0, 1]; NaN where the union is zero."""
        cm = self.confusion
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))

    def compute(self) -> dict[str, float]:
        iou = self.per_class_iou()
        present = ~torch.isnan(iou)
        miou = 100.0 * float(iou[present].mean()) if present.any() else float("nan")
        cm = self.confusion
        return {"miou": miou, "pixel_acc": _pct(float(cm.diag().sum()), float(cm.sum()))}


# ---------------------------------------------------------------------------
# Depth
# ---------------------------------------------------------------------------


class DepthMetric(Metric):
    """Depth RMSE (metres) and absolute relative error over the valid pixels of a split.

    ``pred`` (B, 1, H, W) metres (bilinearly resized to the label if needed); ``target``
    (B, 1, H, W) metres, 0 = invalid. ``rmse = sqrt(sum (p - t)^2 / N)`` and
    ``abs_rel = sum |p - t| / t / N`` with N the number of valid pixels of the whole split
    (not a mean of per-image values).
    """

    names = ("rmse", "abs_rel")

    def _spec(self) -> dict[str, tuple[int, ...]]:
        return {"sum_sq": (1,), "sum_abs_rel": (1,), "count": (1,)}

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = _squeeze_channel(target, "DepthMetric target").double()
        pred4 = pred if pred.dim() == 4 else pred.unsqueeze(1)
        pred = _squeeze_channel(_fit(pred4, tuple(target.shape[-2:])), "DepthMetric pred").double()
        if pred.shape != target.shape:
            raise ValueError(f"DepthMetric: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
        valid = target > 0
        p, t = pred[valid], target[valid]
        err = p - t
        self.state["sum_sq"] += float((err * err).sum())
        self.state["sum_abs_rel"] += float((err.abs() / t).sum())
        self.state["count"] += float(valid.sum())

    def compute(self) -> dict[str, float]:
        n = float(self.state["count"])
        if n == 0:
            return {"rmse": float("nan"), "abs_rel": float("nan")}
        return {
            "rmse": math.sqrt(float(self.state["sum_sq"]) / n),
            "abs_rel": float(self.state["sum_abs_rel"]) / n,
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
        target = _squeeze_channel(target, "EdgeMetric target")
        pred4 = pred if pred.dim() == 4 else pred.unsqueeze(1)
        pred = _squeeze_channel(_fit(pred4, tuple(target.shape[-2:])), "EdgeMetric pred")
        if self.from_logits:
            pred = torch.sigmoid(pred)
        if pred.shape != target.shape:
            raise ValueError(f"EdgeMetric: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
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
        target = _squeeze_channel(target, "SaliencyMetric target")
        pred4 = pred if pred.dim() == 4 else pred.unsqueeze(1)
        pred = _squeeze_channel(_fit(pred4, tuple(target.shape[-2:])), "SaliencyMetric pred")
        if self.from_logits:
            pred = torch.sigmoid(pred)
        if pred.shape != target.shape:
            raise ValueError(f"SaliencyMetric: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
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


# ---------------------------------------------------------------------------
# Registry, directions, delta_m
# ---------------------------------------------------------------------------

def metric_class(task: str) -> type[Metric]:
    """The metric class of ``task`` (its registry entry's ``scorer``)."""
    if task not in TASKS:
        raise UserError(f"tasks.{task}: no metric for this task (known: {', '.join(TASKS)})")
    return globals()[TASKS[task].scorer]


def flatten_baselines(baselines: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{task: {metric: value}}`` (``eval.baselines``) -> ``{"task_metric": value}``."""
    return {f"{task}_{name}": float(v) for task, per in baselines.items() for name, v in per.items()}


def check_baselines(
    baselines: Mapping[str, Mapping[str, float]], tasks: Iterable[str] | None = None
) -> dict[str, float]:
    """Validate ``eval.baselines`` and flatten it; UserError names the bad key.

    With ``tasks`` (the config's tasks) and non-empty baselines, every task must have a
    baseline: delta_m averages over all T tasks, so a missing one is refused up front.
    """
    for task, per in baselines.items():
        if task not in TASKS:
            raise UserError(f"eval.baselines.{task}: unknown task (known: {', '.join(TASKS)})")
        if not per:
            raise UserError(f"eval.baselines.{task}: no metric given (e.g. {TASKS[task].metric})")
        for name, value in per.items():
            if name not in TASKS[task].metrics:
                known = ", ".join(TASKS[task].metrics)
                raise UserError(f"eval.baselines.{task}.{name}: unknown metric (known: {known})")
            if not math.isfinite(float(value)) or float(value) == 0:
                raise UserError(f"eval.baselines.{task}.{name}: must be a non-zero number, got {value}")
    if baselines and tasks is not None:
        missing = [t for t in tasks if t not in baselines]
        if missing:
            raise UserError(
                f"eval.baselines: no single-task baseline for {', '.join(missing)}; delta_m "
                f"needs one for every task (given: {', '.join(baselines)})"
            )
    return flatten_baselines(baselines)


def _task_of(key: str) -> tuple[str, str]:
    """``render_depth_rmse`` -> (``render_depth``, ``depth``): the term a key belongs to
    (prefix kept, so renders and heads are never mixed) and its task."""
    rest = strip_prefixes(key)
    task = rest.split("_", 1)[0]
    if task not in TASKS or rest == task:
        raise UserError(f"delta_m: {key!r} is not a task metric key such as semseg_miou or depth_rmse")
    return key[: len(key) - len(rest)] + task, task


def delta_m(
    results: Mapping[str, float],
    baselines: Mapping[str, float],
    lower_is_better: Mapping[str, bool] | set[str] | None = None,
    *,
    tasks: Iterable[str] | None = None,
) -> float:
    """Multi-task gain over single-task baselines, percent (DESIGN §4), the one place
    it is computed: ``(1/T) sum_t (-1)^{l_t} (M_mt,t - M_st,t) / |M_st,t| * 100``.

    ``baselines`` holds flat reported keys (``semseg_miou``, ``render_depth_rmse``). One
    term per task: a baseline naming several metrics of one task contributes the mean of
    their gains, so it never counts as extra tasks. T is ``tasks`` when given (each needs
    a baseline), else the tasks the baselines name. ``lower_is_better``: a set of keys
    where lower is better, or ``{key: bool}``; keys it does not name (and all keys when it
    is ``None``) take :func:`mtlsearch.tasks.metric_direction`.

    Raises :class:`UserError` when a task has no baseline, a baseline metric is missing
    from ``results`` or not finite there, a baseline is zero or not finite, or a key is
    not a task metric: delta_m over fewer tasks than asked would not be comparable.
    """
    wanted = list(tasks) if tasks is not None else None
    per_task: dict[str, list[float]] = {}
    named: set[str] = set()
    for key, base in baselines.items():
        group, task = _task_of(key)
        named.add(task)
        if wanted is not None and task not in wanted:
            continue
        base = float(base)
        if not math.isfinite(base) or base == 0:
            raise UserError(f"delta_m: baseline {key} must be a finite non-zero number, got {base}")
        if key not in results:
            raise UserError(f"delta_m: the results have no {key} (a baseline names it)")
        value = float(results[key])
        if not math.isfinite(value):
            raise UserError(f"delta_m: {key} is {value}, not a finite score")
        if isinstance(lower_is_better, Mapping) and key in lower_is_better:
            lower = bool(lower_is_better[key])
        elif isinstance(lower_is_better, (set, frozenset)):
            lower = key in lower_is_better
        else:
            direction = metric_direction(key)
            if direction is None:
                raise UserError(f"delta_m: {key!r} is not a known metric")
            lower = direction == "min"
        sign = -1.0 if lower else 1.0
        per_task.setdefault(group, []).append(sign * (value - base) / abs(base) * 100.0)
    if wanted is not None:
        missing = [t for t in wanted if t not in named]
        if missing:
            raise UserError(f"delta_m: no single-task baseline for {', '.join(missing)}")
    if not per_task:
        raise UserError("delta_m: no baseline given")
    terms = [sum(v) / len(v) for v in per_task.values()]
    return sum(terms) / len(terms)


def build_metrics(
    tasks: Iterable[str],
    num_classes: Mapping[str, int] | int | None = None,
    cfg_eval: Any = None,
    *,
    layout: str = "synthrooms",
) -> dict[str, Metric]:
    """One fresh metric per task.

    ``num_classes``: ``{task: classes}``, an int (semseg's class count), or ``None`` (the
    layout's counts from tasks.py). ``cfg_eval``: an ``EvalConfig`` (``edge_max_dist``,
    ``edge_thresholds``; its ``baselines`` are validated) or ``None`` for the defaults.
    """
    if cfg_eval is None:
        from mtlsearch.config import EvalConfig

        cfg_eval = EvalConfig()
    check_baselines(getattr(cfg_eval, "baselines", {}) or {})
    if layout not in NUM_CLASSES:
        raise UserError(f"data.layout: unknown layout {layout!r} (known: {', '.join(NUM_CLASSES)})")
    counts = dict(NUM_CLASSES[layout])
    if isinstance(num_classes, int):
        counts["semseg"] = num_classes
    elif num_classes is not None:
        counts.update(num_classes)
    out: dict[str, Metric] = {}
    for task in tasks:
        cls = metric_class(task)
        if cls is SegMetric:
            out[task] = SegMetric(counts[task])
        elif cls is EdgeMetric:
            out[task] = EdgeMetric(max_dist=cfg_eval.edge_max_dist, thresholds=cfg_eval.edge_thresholds)
        else:
            out[task] = cls()
    return out


def compute_all(metrics: Mapping[str, Metric], prefix: str = "") -> dict[str, float]:
    """``{f"{prefix}{task}_{name}": value}`` for every metric (prefix e.g. ``render_``)."""
    return {
        f"{prefix}{task}_{name}": value
        for task, metric in metrics.items()
        for name, value in metric.compute().items()
    }


def sync_metrics(metrics: Mapping[str, Metric], fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
    """Reduce all metrics with one call of ``fn`` on their concatenated statistics (the
    same order on every worker: iterate the same mapping)."""
    parts = [m.to_tensor() for m in metrics.values()]
    if not parts:
        return
    flat = torch.cat(parts)
    out = fn(flat)
    flat = (flat if out is None else out).detach().to("cpu", torch.float64).reshape(-1)
    offset = 0
    for metric in metrics.values():
        metric.from_tensor(flat[offset : offset + metric.numel])
        offset += metric.numel


__all__ = [
    "DepthMetric",
    "EdgeMetric",
    "Metric",
    "NormalsMetric",
    "SaliencyMetric",
    "SegMetric",
    "build_metrics",
    "check_baselines",
    "compute_all",
    "delta_m",
    "edge_thresholds",
    "flatten_baselines",
    "metric_class",
    "sync_metrics",
]
