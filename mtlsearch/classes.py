"""Label sets of the supported datasets (torch-free, so the CLI starts fast); the class
counts per layout are the class-valued tasks' (:data:`mtlsearch.tasks.NUM_CLASSES`)."""

from __future__ import annotations

IGNORE = 255
"""Ignore value of discrete labels (segmentation, parts, edges, saliency)."""

SYNTHROOMS_CLASSES = (
    "wall", "floor", "ceiling", "window", "picture", "door",
    "cabinet", "bed", "table", "lamp", "bin", "ball",
)
"""SynthRooms semantic classes (index = class id). The last six are objects (saliency)."""
SYNTHROOMS_OBJECT_CLASSES = ("cabinet", "bed", "table", "lamp", "bin", "ball")
