"""Optuna samplers that survive Tune's pickling of its searcher, in any Optuna release.

Contract: :class:`PortableSampler` ``(name, seed, population_size)`` is an Optuna
``BaseSampler`` that delegates to the sampler ``name`` of
:data:`mtlsearch.execution.strategies.SAMPLERS` and pickles in every release. Tune pickles the
searcher when it builds and checkpoints a search and unpickles it on ``--resume``; some
releases' samplers hold locks (``NSGAIISampler`` in Optuna 5.1 does), which cannot be
pickled. The state travels as the inner sampler's attributes, each lock replaced by a
fresh one on restore (RNG state and caches survive); if the attributes still cannot be
pickled, the sampler is rebuilt from its settings, which loses only its random state (the
study's trials live in its storage). Imported only when an Optuna search is built.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

import optuna
from optuna.samplers import BaseSampler

BUILDERS: dict[str, Callable[[int | None, int | None], BaseSampler]] = {
    "tpe": lambda seed, _: optuna.samplers.TPESampler(seed=seed),
    "nsga2": lambda seed, size: optuna.samplers.NSGAIISampler(seed=seed, population_size=size or 50),
    "cmaes": lambda seed, _: optuna.samplers.CmaEsSampler(seed=seed),
    "gp": lambda seed, _: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed, _: optuna.samplers.RandomSampler(seed=seed),
}
"""``search.sampler`` name -> factory ``(seed, population_size)``; the names are
:data:`mtlsearch.execution.strategies.SAMPLERS` (a test checks they agree)."""

_LOCKS = (type(threading.Lock()), type(threading.RLock()))


def build(name: str, seed: int | None, population_size: int | None = None) -> BaseSampler:
    """The plain Optuna sampler ``name``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown sampler {name!r} (known: {', '.join(BUILDERS)})")
    return BUILDERS[name](seed, population_size)


class PortableSampler(BaseSampler):
    """The sampler ``name`` behind a pickling that works in every Optuna release."""

    def __init__(self, name: str, seed: int | None, population_size: int | None = None) -> None:
        self.settings = (name, seed, population_size)
        self.inner = build(name, seed, population_size)

    def __getstate__(self) -> dict[str, Any]:
        attrs = dict(vars(self.inner))
        locks = [key for key, value in attrs.items() if type(value) in _LOCKS]
        for key in locks:
            del attrs[key]
        try:
            blob: bytes | None = pickle.dumps(attrs)
        except Exception:  # an attribute of a future release: rebuild from the settings
            blob = None
        return {"settings": self.settings, "attrs": blob, "locks": locks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        self.inner = build(*self.settings)
        if state["attrs"] is None:
            return
        fresh = {key: getattr(self.inner, key, None) for key in state["locks"]}
        vars(self.inner).update(pickle.loads(state["attrs"]))
        for key, lock in fresh.items():  # the rebuilt sampler's own (unused) locks
            setattr(self.inner, key, lock if lock is not None else threading.Lock())

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def __repr__(self) -> str:
        return f"PortableSampler({self.inner!r})"
