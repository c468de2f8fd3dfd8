"""Label sets of the supported datasets (torch-free, so the CLI starts fast)."""

from __future__ import annotations

IGNORE = 255
"""Ignore value of discrete labels (segmentation, parts, edges, saliency)."""

SYNTHROOMS_CLASSES = (
    "wall", "floor", "ceiling", "window", "picture", "door",
    "cabinet", "bed", "table", "lamp", "bin", "ball",
)
"""SynthRooms semantic classes (index = class id). The last six are objects (saliency)."""
SYNTHROOMS_OBJECT_CLASSES = ("cabinet", "bed", "table", "lamp", "bin", "ball")

NUM_CLASSES = {
    "synthrooms": {"semseg": len(SYNTHROOMS_CLASSES), "parts": 7},
    "nyud": {"semseg": 40, "parts": 7},
    "pascal": {"semseg": 21, "parts": 7},
}
"""Output channels of the class-valued tasks per dataset layout."""
