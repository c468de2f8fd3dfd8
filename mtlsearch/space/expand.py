"""Expansion of a grid or random search into its trials: grids, conditions, draws, seeds.

Contract:

* :func:`count_trials` counts the trials *before* any is built (a product when no
  condition depends on another varying key, else an enumeration that stops as soon as
  the count passes :data:`MAX_TRIALS`), so a huge space is refused at once.
* :func:`expand` refuses spaces above :data:`MAX_TRIALS` (``UserError`` with the number)
  and returns the trials in a fixed order: grid points in ``space`` order, then
  ``num_samples`` seeded draws of the other keys (random search), each repeated once per
  seed (``train.seed``). A conditional key whose condition fails is ``None`` once, so a
  grid never repeats a trial. Optuna searches sample online and have nothing to expand.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlsearch.errors import UserError
from mtlsearch.space.spec import SEED_KEY, Param

if TYPE_CHECKING:
    from mtlsearch.space.spec import Space

MAX_TRIALS = 10_000
"""Most trials a grid or random search may expand to (search_spaces/README.md)."""


def grid_params(space: Space) -> list[Param]:
    """The keys a grid point fixes: ``grid`` keys, and every key of a grid search."""
    every = space.search.algorithm == "grid"
    return [p for p in space.params if every or p.kind == "grid"]


def grid_points(params: list[Param], static: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Product of the discrete values in order (lazily); inactive keys take None once."""

    def walk(i: int, point: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(params):
            yield point
            return
        param = params[i]
        if param.active({**static, **point}):
            for value in param.args:
                yield from walk(i + 1, {**point, param.key: copy.deepcopy(value)})
        else:
            yield from walk(i + 1, {**point, param.key: None})

    return walk(0, {})


def count_grid_points(params: list[Param], static: dict[str, Any], stop: int) -> int:
    """Number of grid points; enumerates (up to ``stop + 1``) only when a condition
    depends on another varying key."""
    varying = {p.key for p in params}
    if not any(k in varying for p in params for k in p.when):
        total = 1
        for p in params:
            total *= len(p.args) if p.active(static) else 1
        return total
    n = 0
    for _ in grid_points(params, static):
        n += 1
        if n > stop:
            break
    return n


def count_trials(space: Space, limit: int = MAX_TRIALS) -> int:
    """Trials of a grid/random search; above ``limit`` the count may be a lower bound
    (enumeration stops there)."""
    static = space.static_config().flat()
    samples = 1 if space.search.algorithm == "grid" else space.search.num_samples
    per_point = samples * len(space.seeds)
    return count_grid_points(grid_params(space), static, limit // max(per_point, 1) + 1) * per_point


def _exact(space: Space) -> bool:
    """Whether :func:`count_grid_points` multiplies (exact) rather than enumerates."""
    params = grid_params(space)
    varying = {p.key for p in params}
    return not any(k in varying for p in params for k in p.when)


def check_size(space: Space, limit: int = MAX_TRIALS) -> None:
    """Refuse a grid/random search above ``limit`` trials, naming the number."""
    if space.search.algorithm == "optuna":
        return
    n = count_trials(space, limit)
    if n > limit:
        samples = "" if space.search.algorithm == "grid" else f" x {space.search.num_samples} samples"
        raise UserError(
            f"{space.path}: the {space.search.algorithm} search expands to {n} trials"
            f"{'' if _exact(space) else ' or more'} "
            f"(grid points{samples} x {len(space.seeds)} seed(s)), above the limit of {limit}; "
            "shrink the space, or use algorithm optuna"
        )


def expand(space: Space) -> list[dict[str, Any]]:
    """The trials of a grid or random search, each a dict of dotted keys."""
    if space.search.algorithm == "optuna":
        raise ValueError("an optuna search samples its trials online; nothing to expand")
    check_size(space)
    static = space.static_config().flat()
    grid = grid_params(space)
    rng = np.random.default_rng(space.search.seed)
    samples = 1 if space.search.algorithm == "grid" else space.search.num_samples
    configs: list[dict[str, Any]] = []
    for point in grid_points(grid, static):
        for _ in range(samples):
            values: dict[str, Any] = {}
            for param in space.params:
                if param.key in point:
                    values[param.key] = point[param.key]
                elif param.active({**static, **values}):
                    values[param.key] = param.sample(rng)
                else:
                    values[param.key] = None
            configs.append(values)
    return [{**values, SEED_KEY: seed} for values in configs for seed in space.seeds]


__all__ = ["MAX_TRIALS", "check_size", "count_grid_points", "count_trials", "expand", "grid_params", "grid_points"]
