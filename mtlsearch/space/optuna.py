"""The Optuna define-by-run space of an ``algorithm: optuna`` search.

Contract: :class:`DefineByRun` is the picklable callable Tune's ``OptunaSearch`` calls
with an Optuna trial: it asks for each varying key in ``space`` order, only while the
key's condition holds (inactive keys are ``None`` and never appear in the study), and
returns the trial's dotted values plus the single seed. The suggestion of each key is
its distribution's :meth:`~mtlsearch.space.distributions.Distribution.suggest`.
"""

from __future__ import annotations

from typing import Any

from mtlsearch.space.spec import SEED_KEY, Param


class DefineByRun:
    """Optuna define-by-run space (a picklable callable, as Tune pickles its searcher)."""

    def __init__(self, params: list[Param], static: dict[str, Any], seed: int) -> None:
        self.params = params
        self.static = static
        self.seed = seed

    def __call__(self, ot_trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param in self.params:
            active = param.active({**self.static, **values})
            values[param.key] = param.suggest(ot_trial) if active else None
        values[SEED_KEY] = self.seed
        return values


__all__ = ["DefineByRun"]
