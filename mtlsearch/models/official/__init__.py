"""Official checkpoints of the base models, converted to our full-model state_dict.

Contract: each module of this package (one per official code base: ``invpt``, ``mtinet``)
defines ``convert(official: dict[str, Tensor]) -> Conversion`` that maps the official
``state_dict`` (already unwrapped from ``model``/``state_dict`` and stripped of ``module.``)
to the names of :class:`mtlsearch.models.mtl.MultiTaskModel`. It raises ``UserError`` for
keys it does not know or shapes that cannot be right, and lists in ``dropped`` the official
weights it leaves out on purpose (those the official forward never reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Conversion:
    """Our state_dict, and the official keys left out on purpose."""

    state_dict: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)
