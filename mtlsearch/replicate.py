"""Every configuration an Optuna sampler suggests runs on every seed of ``seeds``, and the
sampler learns the seeds' mean.

Contract: :class:`SeedReplicator` wraps a Tune searcher (``OptunaSearch``). For each
configuration the searcher suggests, it hands Tune one trial per seed (the same values,
``train.seed`` set), which run as separate Ray trials in parallel. Once every seed of a
configuration has finished, the searcher is told, for each of its metrics (one or
several objectives), the mean over the seeds that reported it; a configuration whose
every seed failed is reported as failed. Tune's own ``Repeater`` averages a single
metric only and does not save its groups; this one averages every objective and saves
its groups with the searcher, so ``--resume`` continues half-finished configurations.

``num_samples`` (configurations) becomes ``num_samples x len(seeds)`` Tune trials:
:func:`num_trials`. Intermediate results are not passed on (Optuna's pruning would see one
seed); early-stopping schedulers are refused with several seeds (``space.load``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ray.tune.search import Searcher

from mtlsearch.space.spec import SEED_KEY


def num_trials(num_samples: int, seeds: list[int]) -> int:
    """Tune trials of ``num_samples`` configurations on every seed."""
    return num_samples * len(seeds)


class SeedReplicator(Searcher):
    """``searcher``'s configurations, each on every seed of ``seeds`` (see the contract)."""

    def __init__(self, searcher: Searcher, seeds: list[int], metrics: list[str]) -> None:
        self.searcher = searcher
        self.seeds = list(seeds)
        self.metrics = list(metrics)
        self.groups: dict[str, dict[str, Any]] = {}
        """Configuration id (the searcher's trial id) -> config, seeds handed out, results."""
        self.trial_group: dict[str, str] = {}
        self.open: str | None = None
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        group = self.groups.get(self.open) if self.open else None
        if group is None or len(group["trials"]) == len(self.seeds):
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self.open = trial_id
            group = self.groups[trial_id] = {"config": dict(config), "trials": [], "results": {}}
        seed = self.seeds[len(group["trials"])]
        group["trials"].append(trial_id)
        self.trial_group[trial_id] = self.open
        return {**group["config"], SEED_KEY: seed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results stay with the trial (one seed is not the configuration)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self.trial_group.get(trial_id)
        if key is None:
            return
        group = self.groups[key]
        group["results"][trial_id] = None if error or not result else dict(result)
        if len(group["results"]) < len(self.seeds):
            return
        mean = seed_means(list(group["results"].values()), self.metrics)
        if mean is None:
            self.searcher.on_trial_complete(key, None, error=True)
        else:
            self.searcher.on_trial_complete(key, mean)
        group["done"] = True

    # Tune saves a wrapper's state (get_state) beside its base searcher's own file.
    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "searcher"})

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def seed_means(results: list[dict | None], metrics: list[str]) -> dict[str, float] | None:
    """Per metric, the mean over the results that report a finite value; None when no
    result reports every metric (every seed failed)."""
    out: dict[str, float] = {}
    for metric in metrics:
        values = [float(r[metric]) for r in results
                  if r is not None and isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
        if not values:
            return None
        out[metric] = sum(values) / len(values)
    return out


__all__ = ["SeedReplicator", "num_trials", "seed_means"]
