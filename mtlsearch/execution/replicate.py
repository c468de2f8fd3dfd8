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
seed); with several seeds only ASHA may stop trials, and it decides on configuration means
(:mod:`mtlsearch.execution.halving`); the other schedulers are refused (``space.load``).

:class:`AdaptiveSeeds` (``seeds: {initial: k, max: m}``, any algorithm) replicates
adaptively instead: ``k`` seeds for every configuration, then one more at a time only
while its 95% interval of the search metric overlaps the best configuration's, up to
``m``; each configuration's seeds and decision go to :data:`REPLICATION_FILE`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ray.tune.search import Searcher

from mtlsearch.layout import REPLICATION_FILE
from mtlsearch.space.spec import INDEX_KEY, SEED_KEY


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




# ---------------------------------------------------------------------------
# Adaptive replication: more seeds only while a configuration might still be the best
# ---------------------------------------------------------------------------


def interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-based ``level`` confidence interval of the mean
    (infinite with fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, -math.inf, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


class AdaptiveSeeds(Searcher):
    """Each configuration first runs on ``initial`` seeds; after that, one more seed at a
    time (up to ``max``) only while its 95% interval of the search metric overlaps the
    best configuration's (the best itself while some other undecided interval overlaps
    it). Configurations come from ``source``: a list of planned rows (grid, random; the
    search's ``planned`` trials, ``max`` seeds each) or an Optuna searcher, which is told
    a configuration's seed mean once it is decided. With a list, no decision is taken
    before every configuration has its initial seeds (the rivals must be known)."""

    def __init__(self, source: Searcher | list[dict[str, Any]], seeds: list[int], initial: int,
                 metric: str, mode: str, folder: str | None = None, max_configs: int | None = None) -> None:
        # Tune treats a searcher with a ``searcher`` attribute as a wrapper (saving the
        # inner one separately); over planned rows this one is the base searcher itself.
        if isinstance(source, Searcher):
            self.searcher = source
        self.rows = None if isinstance(source, Searcher) else list(source)
        self.seeds = list(seeds)
        self.initial = initial
        self.metric_name, self.mode_name = metric, mode
        self.folder = folder
        self.max_configs = max_configs
        self.configs: list[dict[str, Any]] = []
        """Per configuration: config, index (row order), seeds handed out, results, decided."""
        self.trial_config: dict[str, int] = {}
        self.queue: list[int] = []
        self.exhausted = False
        super().__init__(metric=metric, mode=mode)

    # -- Tune's Searcher interface ------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        inner = self._inner()
        return True if inner is None else inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if not self.queue and not self.exhausted:
            self._next_configuration(trial_id)
        if self.queue:
            index = self.queue.pop(0)
            group = self.configs[index]
            seed = self.seeds[len(group["trials"])]
            group["trials"].append(trial_id)
            self.trial_config[trial_id] = index
            if self.rows is not None:  # the planned row of this configuration and seed
                row = group["row"] * len(self.seeds) + self.seeds.index(seed)
                return {**self.rows[row], INDEX_KEY: row}
            return {**group["config"], SEED_KEY: seed}
        running = any(len(g["results"]) < len(g["trials"]) for g in self.configs)
        return None if running or not all(g["decided"] for g in self.configs) else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results stay with the trial."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        index = self.trial_config.get(trial_id)
        if index is None:
            return
        value = None if error or not result else result.get(self.metric_name)
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        self.configs[index]["results"][trial_id] = float(value) if ok else None
        self._decide()

    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "searcher"})

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        inner = self._inner()
        if inner is not None:
            inner.save(checkpoint_path)
            return
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        inner = self._inner()
        if inner is not None:
            inner.restore(checkpoint_path)
            return
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def _inner(self) -> Searcher | None:
        return self.__dict__.get("searcher")

    # -- the decisions ----------------------------------------------------------------

    def _next_configuration(self, trial_id: str) -> None:
        if self.rows is not None:
            row = len(self.configs)
            if row * len(self.seeds) >= len(self.rows):
                self.exhausted = True
                self._record()
                return
            config = {k: v for k, v in self.rows[row * len(self.seeds)].items() if k != SEED_KEY}
        else:
            if self.max_configs is not None and len(self.configs) >= self.max_configs:
                self.exhausted = True
                self._record()
                return
            config = self._inner().suggest(trial_id)
            if config is None:
                return
            if config == Searcher.FINISHED:
                self.exhausted = True
                self._record()
                return
            row = len(self.configs)
        self.configs.append({"config": dict(config), "row": row, "key": trial_id, "trials": [],
                             "results": {}, "decided": False})
        self.queue.extend([len(self.configs) - 1] * self.initial)

    def _values(self, group: dict[str, Any]) -> list[float]:
        return [v for v in group["results"].values() if v is not None]

    def _decide(self) -> None:
        """Give more seeds to the configurations still in contention; decide the others."""
        ready = [g for g in self.configs if not g["decided"] and len(g["results"]) == len(g["trials"])
                 and len(g["trials"]) >= self.initial]
        if not ready:
            return
        if self.rows is not None and not (self.exhausted or len(self.configs) * len(self.seeds) >= len(self.rows)):
            return
        if self.rows is not None and any(len(g["results"]) < self.initial for g in self.configs):
            return  # every rival's initial seeds first
        known = [g for g in self.configs if len(self._values(g)) >= 2]
        if not known:
            for g in ready:
                self._finish(g)
            return
        sign = 1 if self.mode_name == "max" else -1
        best = max(known, key=lambda g: sign * interval(self._values(g))[0])
        _, best_low, best_high = interval(self._values(best))
        for g in ready:
            values = self._values(g)
            if len(g["trials"]) >= len(self.seeds) or len(values) < 2:
                self._finish(g)
                continue
            _, low, high = interval(values)
            if g is best:
                rivals = [r for r in known if r is not best and not r["decided"]]
                contested = any(interval(self._values(r))[2] >= best_low and interval(self._values(r))[1] <= best_high
                                for r in rivals)
            else:
                contested = high >= best_low and low <= best_high
            if contested:
                self.queue.append(self.configs.index(g))
            else:
                self._finish(g)
        self._record()

    def _finish(self, group: dict[str, Any]) -> None:
        group["decided"] = True
        inner = self._inner()
        if inner is not None:
            values = self._values(group)
            if values:
                inner.on_trial_complete(group["key"], {self.metric_name: sum(values) / len(values)})
            else:
                inner.on_trial_complete(group["key"], None, error=True)
        self._record()

    def _record(self) -> None:
        """Each configuration's seeds and decision, for ``status`` and the reader."""
        if not self.folder:
            return
        import json
        from pathlib import Path

        folder = Path(self.folder)
        if not folder.is_dir():
            return
        rows = [{"config": g["config"], "seeds": self.seeds[: len(g["trials"])],
                 "values": [g["results"].get(t) for t in g["trials"]], "decided": g["decided"]}
                for g in self.configs]
        tmp = folder / f".{REPLICATION_FILE}.tmp"
        tmp.write_text(json.dumps({"initial": self.initial, "max": len(self.seeds), "metric": self.metric_name,
                                   "mode": self.mode_name, "exhausted": self.exhausted,
                                   "configurations": rows}, indent=1, default=str))
        tmp.replace(folder / REPLICATION_FILE)


__all__ = ["REPLICATION_FILE", "AdaptiveSeeds", "SeedReplicator", "interval", "num_trials", "seed_means"]
