"""The task contract: :class:`TaskSpec`, whose hooks are all the rest of the code knows
of a dense prediction task.

Contract: a task is a :class:`TaskSpec` subclass in its own module of this package,
registered with :func:`~mtlsearch.tasks.registry.register_task`. Its class attributes
say what it outputs and reports; its hooks (methods, with the defaults below for a
one-channel float map) do everything that depends on the task: label files per dataset
format and their decoding, label checks, augmentation, loss, activation, decoded
predictions, preview colours, metric, rotation by a camera pose and renders. Callers
look a task up by name and call its hooks; none of them compares task names.

Also here: :class:`LabelFiles` (one task's files in one dataset format),
:class:`LabelCheck` (what ``data check`` learns from one label) and the resizing of
batched labels and predictions shared by every task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

Direction = Literal["max", "min"]
"""Whether a larger (``"max"``) or smaller (``"min"``) value of a score is better."""

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def empty_loss(pred: torch.Tensor) -> torch.Tensor:
    """A zero loss that keeps ``pred`` in the graph (no valid pixel in the batch)."""
    return pred.sum() * 0.0


def resize_label(label: torch.Tensor, size: tuple[int, int], task: str | None = None) -> torch.Tensor:
    """Resize a batched label to ``size``: nearest for every task (discrete labels, and
    depth and normals too, so invalid pixels never blend into valid ones). ``task`` is
    accepted for older callers and unused."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    squeeze = label.dim() == 3
    x = label.unsqueeze(1) if squeeze else label
    out = F.interpolate(x.float(), size=size, mode="nearest")
    out = out.squeeze(1) if squeeze else out
    return out.to(label.dtype)


def resize_pred(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a prediction map to ``size``."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


class LabelFiles:
    """Where one task's labels live in one dataset format, and how they decode.

    ``folder`` (relative to the dataset root) holds ``<id><ext>`` files, the first of
    ``exts`` that exists (the first one when none does); the format provides the task
    when the folder exists. ``decode(path)`` returns the label in the task's numpy
    convention. A format with other rules subclasses it (a fallback folder, a label
    derived from another file, a mask read from a second file; ``decode`` may then be
    None)."""

    def __init__(self, folder: str, exts: tuple[str, ...],
                 decode: Callable[[Path], np.ndarray] | None = None) -> None:
        self.folder = folder
        self.exts = exts
        self.decode = decode

    def provided(self, root: Path) -> bool:
        """Whether the dataset at ``root`` has this task's labels."""
        return (root / self.folder).is_dir()

    def path(self, root: Path, id_: str) -> Path:
        """The label file of ``id_`` (named in error messages even when missing)."""
        base = root / self.folder
        for ext in self.exts:
            path = base / f"{id_}{ext}"
            if path.is_file():
                return path
        return base / f"{id_}{self.exts[0]}"

    def read(self, reader: Any, id_: str) -> np.ndarray:
        """The decoded label of ``id_`` (``reader``: the dataset's reader, for formats
        whose labels need more than their own file)."""
        if self.decode is None:
            raise NotImplementedError(f"{type(self).__name__} reads {self.folder} without a decoder")
        return self.decode(self.path(reader.root, id_))

    def absent(self, label: np.ndarray) -> bool:
        """Whether a decoded label carries no annotation at all (its view then has
        ``has = False`` for the task)."""
        return False

    def num_classes(self, reader: Any) -> int | None:
        """The dataset's own class count (e.g. from its metadata), or None for the
        task's count of the layout."""
        return None


@dataclass
class LabelCheck:
    """What ``mtlsearch data check`` learns from one decoded label: a problem (or None),
    the class ids it holds (class-valued tasks) and ranges to summarise (name -> (lo, hi))."""

    problem: str | None = None
    classes: frozenset[int] | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


def colormap_rgba(values: np.ndarray, valid: np.ndarray, cmap: str,
                  limits: tuple[float, float] | None) -> np.ndarray:
    """uint8 RGBA (H, W, 4) of a scalar map through matplotlib's ``cmap``, scaled to
    ``limits`` (default: the valid values' range, as ``imshow`` scales); invalid pixels
    transparent (``imshow``'s colour for masked data)."""
    import matplotlib
    from matplotlib.colors import Normalize

    data = np.ma.masked_array(np.asarray(values, dtype=np.float64), mask=~valid)
    norm = Normalize(*(limits or (None, None)))
    norm.autoscale_None(data)
    rgba = matplotlib.colormaps[cmap](norm(data), bytes=True)
    rgba[~valid] = 0
    return rgba


class TaskSpec:
    """A task's contract. Class attributes describe it; methods are its hooks.

    Conventions (B = batch, H x W = the tensor's own size): predictions are
    ``(B, channels, H, W)`` tensors; batched labels are ``(B, 1, H, W)`` float maps unless
    a task says otherwise; decoded (numpy) labels are ``(H, W)`` maps of ``label_dtype``
    (``(H, W, label_channels)`` when ``label_channels``); invalid pixels hold ``ignore``.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    """Label family: ``classes``, ``regression``, ``normals`` or ``binary`` (descriptive;
    behaviour lives in the hooks)."""
    metric: ClassVar[str]
    """Primary metric, reported as ``f"{name}_{metric}"``."""
    metrics: ClassVar[Mapping[str, Direction]]
    """Every metric the task reports -> its direction."""
    ignore: ClassVar[float]
    """Label value of invalid pixels (and of views without the label)."""
    scorer: ClassVar[str]
    """The :mod:`mtlsearch.metrics` class that computes ``metrics``."""
    title: ClassVar[str]
    """Column title in previews of a dataset."""
    label_dtype: ClassVar[type] = np.float32
    label_channels: ClassVar[int] = 0
    """0: decoded labels are (H, W); c: (H, W, c)."""
    out_channels: ClassVar[int] = 1
    """Output channels (class-valued tasks: per layout, :attr:`classes`)."""
    classes: ClassVar[Mapping[str, int]] = {}
    """Class-valued tasks: output channels per dataset layout."""
    files: ClassVar[Mapping[str, LabelFiles]] = {}
    """Dataset format (a reader's ``format``) -> where this task's labels are."""
    cmap: ClassVar[str] = "viridis"
    """matplotlib colour map of the task's previews."""
    unpadded: ClassVar[bool] = False
    """Scored per image on its part without validation padding (a metric whose tolerance
    depends on the image size)."""
    ray_depth: ClassVar[bool] = False
    """Rendered by the regularizer as the expected ray depth (metres) rather than by
    compositing field values, unless ``regularizer.depth_mode: raw``; a raw value belongs
    to the input view, so cross-view renders need the expected depth."""

    # -- outputs and labels ----------------------------------------------------

    def channels(self, layout: str = "synthrooms", classes: Mapping[str, int] | None = None) -> int:
        """Output channels for dataset ``layout`` (``classes``: the dataset's own class
        counts per task, which class-valued tasks prefer)."""
        return self.out_channels

    @property
    def discrete(self) -> bool:
        """Labels that must be resized with nearest-neighbour sampling."""
        return False

    @property
    def mode(self) -> Direction:
        """Direction of the primary metric."""
        return self.metrics[self.metric]

    def empty_label(self, size: tuple[int, int]) -> np.ndarray:
        """A decoded label of ``size`` filled with ``ignore`` (a view without the label)."""
        shape = (*size, self.label_channels) if self.label_channels else size
        return np.full(shape, self.ignore, dtype=self.label_dtype)

    def transform_label(self, window: np.ndarray, inside: np.ndarray, scale: float, flip: bool) -> torch.Tensor:
        """A decoded label after augmentation, as a sample tensor. ``window``: the label
        resampled (nearest) onto the output grid, already mirrored when ``flip``;
        ``inside``: (H, W) pixels that came from the image (the rest is padding); the
        scene was scaled by ``scale`` (depths divide by it)."""
        out = np.where(inside, window, window.dtype.type(self.ignore))
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None]

    def label_array(self, label: torch.Tensor) -> np.ndarray:
        """A sample's label tensor (no batch dimension) as a decoded map."""
        return label[0].numpy()

    def check_label(self, label: np.ndarray, num_classes: int) -> LabelCheck:
        """Problems of a decoded label and figures to summarise (``num_classes``: the
        dataset's class count of the task, for class-valued tasks)."""
        return LabelCheck()

    def example_label(self, batch: int, size: tuple[int, int], channels: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """A random valid batched label (benchmarks and tests)."""
        return torch.rand(batch, 1, *size, generator=generator)

    # -- training ----------------------------------------------------------------

    def loss(self, pred: torch.Tensor, target: torch.Tensor, cfg: Any = None) -> torch.Tensor:
        """Loss of a prediction against a label of the same size (``cfg``: the run's
        config, whose ``loss`` section holds task settings; None: their defaults)."""
        raise NotImplementedError

    def output_bias(self, model_cfg: Any) -> float | None:
        """Initial bias of every output layer of the task (``model`` config section), or
        None to keep the layers' own initialisation."""
        return None

    # -- predictions -------------------------------------------------------------

    def activate(self, pred: torch.Tensor) -> torch.Tensor:
        """A batched prediction after the task's activation (probabilities, unit
        vectors, metres)."""
        return pred

    def deactivate(self, value: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`activate` up to what the metrics read, so an average of
        activated predictions scores like a raw one."""
        return value

    def decode_prediction(self, pred: torch.Tensor) -> np.ndarray:
        """One image's prediction (C, H, W) as saved by ``mtlsearch predict``."""
        return pred[0].numpy().astype(np.float32)

    def summary(self, value: np.ndarray) -> str:
        """A few words on a decoded prediction (``mtlsearch predict`` prints them)."""
        return self.name

    def valid(self, label: np.ndarray) -> np.ndarray:
        """(H, W) pixels of a decoded label that hold a value (not ``ignore``)."""
        return np.asarray(label) != self.ignore

    def colour_scale(self, label: np.ndarray, channels: int) -> tuple[float, float] | None:
        """The colour range shared by a view's label and predictions in previews
        (None: each panel scaled to its own values)."""
        return None

    def preview(self, value: np.ndarray, limits: tuple[float, float] | None = None,
                prediction: bool = False) -> np.ndarray:
        """uint8 RGBA (H, W, 4) picture of a decoded label, invalid pixels transparent, or
        with ``prediction`` of a decoded prediction (every pixel drawn); ``limits``: the
        colour range (default: the drawn values' range)."""
        value = np.asarray(value)
        valid = np.ones(value.shape[:2], dtype=bool) if prediction else self.valid(value)
        return colormap_rgba(value, valid, self.cmap, limits)

    # -- metrics -----------------------------------------------------------------

    def build_metric(self, num_classes: int | None, cfg_eval: Any) -> Any:
        """A fresh :class:`~mtlsearch.metrics.base.Metric` of the task (``cfg_eval``: the
        ``eval`` config section)."""
        return self.metric_class()()

    def metric_class(self) -> type:
        """The metric class named by :attr:`scorer`."""
        import mtlsearch.metrics

        return getattr(mtlsearch.metrics, self.scorer)

    # -- geometry ----------------------------------------------------------------

    def rotate(self, values: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """Values (B, N, C), channels last, seen from a camera rotated by ``rotation``
        (B, 3, 3) (new-from-old): unchanged unless the task predicts directions."""
        return values

    def finish_render(self, value: torch.Tensor) -> torch.Tensor:
        """A composited render (B, C, h, w) in the prediction convention."""
        return value
