"""The dense prediction tasks, one plug-in module each, and their registry.

Conventions shared by heads, regularizer renders, labels and metrics
(B = batch, H x W = the tensor's own size):

=========  =====================  ==============================  ===================
task       prediction             label                           invalid / ignore
=========  =====================  ==============================  ===================
semseg     logits (B, C, H, W)    int64 (B, H, W), class index    255
depth      metres (B, 1, H, W)    float (B, 1, H, W), metres      0
normals    (B, 3, H, W), any norm float (B, 3, H, W), unit        all-zero vector
edge       logits (B, 1, H, W)    float (B, 1, H, W) in {0, 1}    255
sal        logits (B, 1, H, W)    float (B, 1, H, W) in [0, 1]    255
parts      logits (B, 7, H, W)    int64 (B, H, W), part index     255
=========  =====================  ==============================  ===================

Decoded (numpy, one view) labels: uint8 (H, W) class maps, float32 (H, W) maps and
float32 (H, W, 3) normals, with the same ignore values. A view that lacks a task's label
(e.g. video frames labelled with depth only) carries a label filled with the ignore
value, so every loss skips it.

Contract: everything about a task lives in its module (``semseg.py``, ``depth.py``,
...): a :class:`~mtlsearch.tasks.base.TaskSpec` subclass registered with
``@register_task`` whose hooks give channels, label files and decoding per dataset
format, label checks, augmentation, loss, activation, decoded predictions, preview
colours, metric and rotation by a camera pose. Adding a task is one new module plus its
name in :data:`BUILTIN`. Reported keys and their directions are in
:mod:`~mtlsearch.tasks.keys`.
"""

from __future__ import annotations

import importlib

from mtlsearch.classes import (  # noqa: F401  (re-exported)
    IGNORE,
    SYNTHROOMS_CLASSES,
    SYNTHROOMS_OBJECT_CLASSES,
)
from mtlsearch.tasks.base import (  # noqa: F401  (re-exported)
    Direction,
    LabelCheck,
    LabelFiles,
    TaskSpec,
    resize_label,
    resize_pred,
)
from mtlsearch.tasks.keys import (  # noqa: F401  (re-exported)
    METRIC_PREFIXES,
    MULTIVIEW_PREFIX,
    OUTPUT_PREFIXES,
    SCORE_DIRECTIONS,
    metric_direction,
    metric_directions,
    strip_prefixes,
)
from mtlsearch.tasks.kinds import balanced_bce_loss, cross_entropy_loss  # noqa: F401  (re-exported)
from mtlsearch.tasks.registry import (  # noqa: F401  (re-exported)
    NUM_CLASSES,
    TASKS,
    get_task,
    list_tasks,
    register_task,
    task_loss,
)

BUILTIN = ("semseg", "depth", "normals", "edge", "sal", "parts")
"""The task modules of this package, imported (and so registered) in this order."""

for _module in BUILTIN:
    importlib.import_module(f"{__name__}.{_module}")

from mtlsearch.tasks.depth import depth_l1_loss  # noqa: E402,F401  (re-exported)
from mtlsearch.tasks.normals import normals_l1_loss  # noqa: E402,F401  (re-exported)
