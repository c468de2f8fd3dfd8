"""Nested, seeded subsets of the training split (``data.fraction``).

One seeded permutation of the scenes (or of the images when there are no scenes) is
drawn and a prefix of ``ceil(fraction * n)`` of them kept, so for one seed the 25 %
subset is inside the 50 % subset, which is inside the full split, by construction.
Drawing by scene keeps every view of a kept scene (multi-view neighbours stay
available). The validation split is never subsampled.
"""

from __future__ import annotations

import math

import numpy as np

from mtlsearch.errors import UserError


def fraction_subset(
    ids: list[str], fraction: float, seed: int = 0, scenes: dict[str, str] | None = None
) -> list[str]:
    """The ids kept for ``fraction`` in (0, 1], in their original order.

    ``scenes`` maps id -> scene; when given, whole scenes are drawn. At least one scene
    (or image) is always kept.
    """
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"data.fraction: must be in (0, 1], got {fraction}")
    if fraction == 1.0 or not ids:
        return list(ids)
    units = sorted({scenes[i] for i in ids}) if scenes else sorted(set(ids))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    order = rng.permutation(len(units))
    n_keep = max(1, math.ceil(fraction * len(units) - 1e-9))
    kept = {units[j] for j in order[:n_keep]}
    if scenes:
        return [i for i in ids if scenes[i] in kept]
    return [i for i in ids if i in kept]
