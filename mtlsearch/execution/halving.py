"""Asynchronous successive halving (ASHA) that decides on configuration means over seeds.

Contract: :class:`SeedMeanASHA` is a Tune scheduler for searches that run every
configuration on several seeds (``seeds: [0, 1, ...]``). A configuration is a trial's
config without the seed and the planned-row index; its seeds are separate Tune trials.
Rungs sit at ``grace_period * reduction_factor**k`` evaluations below ``max_t``, as in
Tune's ``ASHAScheduler``. A configuration is judged at a rung once every one of its live
seeds has reported there: its value is the mean of those seeds' values, compared with the
means of the configurations judged at that rung before it; if it is not in the top
``1 / reduction_factor`` of them, the configuration stops. The seed whose report completes
the rung stops at once; its siblings stop at their next report (each seed is its own
trial). A seed that reached a rung earlier keeps running meanwhile. A seed that fails
leaves its configuration with fewer live seeds; a configuration with none left is never
judged. Every trial stops at ``max_t``.

Why not Tune's ``ASHAScheduler``: it stops each seed on that seed's own value, so a
configuration is dropped for one unlucky seed and kept for one lucky seed.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from mtlsearch.space.spec import INDEX_KEY, SEED_KEY


def config_key(config: dict[str, Any]) -> str:
    """The configuration a trial belongs to: its config without seed and row index."""
    rest = {k: v for k, v in config.items() if k not in (SEED_KEY, INDEX_KEY)}
    return json.dumps(rest, sort_keys=True, default=str)


def rungs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Rung milestones (evaluations) below ``max_t``, smallest first."""
    out, t = [], float(grace_period)
    while t < max_t:
        out.append(int(round(t)))
        t *= reduction_factor
    return out


class SeedMeanASHA(FIFOScheduler):
    """ASHA on configuration means over seeds (see the module contract)."""

    def __init__(self, *, metric: str, mode: str, seeds: int, max_t: int, grace_period: int,
                 reduction_factor: float, time_attr: str = "training_iteration") -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.seeds = seeds
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        self.time_attr = time_attr
        self.milestones = rungs(max_t, grace_period, reduction_factor)
        self.judged: dict[int, list[float]] = {m: [] for m in self.milestones}
        """Rung -> the means (sign-adjusted: larger is better) of the configurations judged there."""
        self.values: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        """Configuration -> rung -> trial id -> that seed's value at the rung."""
        self.decided: dict[str, set[int]] = defaultdict(set)
        self.stopped: set[str] = set()
        self.failed: dict[str, set[str]] = defaultdict(set)
        self.group: dict[str, str] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def _score(self, result: dict[str, Any]) -> float | None:
        value = result.get(self._metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return float(value) if self._mode == "max" else -float(value)

    def _cutoff(self, judged: list[float]) -> float | None:
        if not judged:
            return None
        return float(np.nanpercentile(judged, (1 - 1 / self.reduction_factor) * 100))

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.group[trial.trial_id] = config_key(trial.config)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        key = self.group.setdefault(trial.trial_id, config_key(trial.config))
        if key in self.stopped:
            return TrialScheduler.STOP
        t = result.get(self.time_attr, 0)
        score = self._score(result)
        action = TrialScheduler.CONTINUE
        for milestone in self.milestones:
            if t < milestone or score is None:
                continue
            at_rung = self.values[key][milestone]
            at_rung.setdefault(trial.trial_id, score)
            if milestone in self.decided[key] or len(at_rung) < self.seeds - len(self.failed[key]):
                continue
            self.decided[key].add(milestone)
            mean = float(np.mean(list(at_rung.values())))
            cutoff = self._cutoff(self.judged[milestone])
            self.judged[milestone].append(mean)
            if cutoff is not None and mean < cutoff:
                self.stopped.add(key)
                action = TrialScheduler.STOP
        if t >= self.max_t:
            action = TrialScheduler.STOP
        return action

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        key = self.group.get(trial.trial_id)
        if key is not None:
            self.failed[key].add(trial.trial_id)
            for at_rung in self.values[key].values():
                at_rung.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        judged = ", ".join(f"{m}: {len(v)}" for m, v in self.judged.items())
        return f"SeedMeanASHA: configurations judged per rung {{{judged}}}, {len(self.stopped)} stopped"


__all__ = ["SeedMeanASHA", "config_key", "rungs"]
