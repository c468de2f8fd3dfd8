"""A parsed search space: its varying keys, settings, and the config tree of a trial.

Contract: :class:`Space` is what :func:`mtlsearch.space.load_space` returns, already
validated. :meth:`Space.tree` is the one place a trial's config mapping is built
(base, then the static overrides: fixed, profile, ``--set``, then the trial's sampled
values and seed); every config of the space (static, trial, baseline) comes from it.
A :class:`Space` is picklable (Tune ships it to the trial drivers).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlsearch.config import Config, load_config, set_dotted
from mtlsearch.space.distributions import Distribution
from mtlsearch.yamlio import plain

SEED_KEY = "train.seed"
INDEX_KEY = "trial_index"
"""The Tune grid key that numbers the expanded trials (kept in each trial's params.json)."""


@dataclass
class Param:
    """One varying config key: its distribution and optional condition."""

    key: str
    dist: Distribution
    when: dict[str, list[Any]] = field(default_factory=dict)
    line: int = 0

    @property
    def kind(self) -> str:
        """The distribution's YAML name (``grid``, ``loguniform``, ...)."""
        return self.dist.name

    @property
    def args(self) -> list[Any]:
        return self.dist.args

    @property
    def integer(self) -> bool:
        """True when the config field is an int (``quniform`` then samples ints)."""
        return self.dist.integer

    @property
    def discrete(self) -> bool:
        return self.dist.discrete

    def describe(self) -> str:
        """``grid [a, b]`` / ``loguniform(0.5, 8)``, plus ``when ...``."""
        from mtlsearch.space.text import format_value

        text = self.dist.describe()
        if self.when:
            cond = ", ".join(
                f"{k} in [{', '.join(format_value(v) for v in vals)}]" for k, vals in self.when.items()
            )
            text += f"  when {cond}"
        return text

    def active(self, values: dict[str, Any]) -> bool:
        """Whether the condition holds for the trial's ``values`` (dotted keys)."""
        return all(values.get(k) in allowed for k, allowed in self.when.items())

    def sample(self, rng: Any) -> Any:
        return self.dist.sample(rng)

    def to_tune(self) -> Any:
        return self.dist.to_tune()

    def suggest(self, trial: Any) -> Any:
        return self.dist.suggest(trial, self.key)


@dataclass
class SearchSettings:
    algorithm: str = "grid"
    metric: str | list[str] = "loss"
    mode: str | list[str] = "min"
    num_samples: int = 1
    seed: int = 0
    max_failures: int | None = None
    """Retries of a trial after an infrastructure failure (None: the driver's default)."""
    sampler: str = "tpe"
    """Optuna's sampler (:mod:`mtlsearch.execution.strategies`)."""
    population_size: int | None = None

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.metric, list)


@dataclass
class SchedulerSettings:
    type: str = "asha"
    max_t: int = 1
    grace_period: int = 1
    reduction_factor: int = 2
    min_samples_required: int = 3
    perturbation_interval: int = 1
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    synch: bool = False


@dataclass
class Resources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass
class CheckpointPolicy:
    """``checkpoints:``: what finished trials keep once the search ends (:mod:`mtlsearch.prune`)."""

    keep: int = 1
    """Configurations (all their seeds) that keep their last whole checkpoint, best first."""
    others: str = "half"
    """What the other finished trials keep: ``half`` / ``fp32`` weights, or ``none``."""


def build_tree(
    base_tree: dict[str, Any], static: list[tuple[str, Any]], values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The nested config mapping: ``base_tree``, then ``static`` overrides in order, then
    ``values`` (None values, inactive keys, and :data:`INDEX_KEY` skipped)."""
    tree = copy.deepcopy(base_tree)
    for key, value in static:
        set_dotted(tree, key, copy.deepcopy(value))
    for key, value in (values or {}).items():
        if key != INDEX_KEY and value is not None:
            set_dotted(tree, key, copy.deepcopy(value))
    return tree


@dataclass
class Space:
    """A validated search space with its chosen profile and ``--set`` overrides applied."""

    path: Path
    name: str
    description: str
    paper: str | None
    base_tree: dict[str, Any]
    static: list[tuple[str, Any]]
    """Dotted overrides for every trial: fixed, then the profile, then ``--set``."""
    params: list[Param]
    seeds: list[int]
    baseline: dict[str, Any] | str | None
    baselines: str | None
    search: SearchSettings
    scheduler: SchedulerSettings | None
    resources: Resources
    max_concurrent_trials: int
    profiles: list[str]
    profile: str | None
    overrides: list[str]
    raw: dict[str, Any]
    tracking: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Trackers and their options (:mod:`mtlsearch.execution.tracking`); empty: TensorBoard only."""
    cli_sections: dict[str, Any] = field(default_factory=dict)
    """Section values given on the command line (``--num-samples`` ...), merged last."""
    adaptive_initial: int | None = None
    """``seeds: {initial: k, max: m}``: k (``seeds`` is then 0..m-1); None: every seed."""
    checkpoints: CheckpointPolicy | None = None
    """The checkpoint policy applied when the search ends; None: every checkpoint stays."""

    # -- configs ------------------------------------------------------------

    def tree(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """The nested config mapping of a trial (``values``: sampled dotted keys)."""
        return build_tree(self.base_tree, self.static, values)

    def static_config(self) -> Config:
        """The config shared by all trials (base + fixed + profile + --set)."""
        return load_config(self.tree())

    def trial_config(self, values: dict[str, Any]) -> Config:
        """One trial's config: the static config with its sampled values and seed."""
        return load_config(self.tree(values))

    # -- trials -------------------------------------------------------------

    @property
    def ablated_keys(self) -> list[str]:
        """Keys that vary between trials (``train.seed`` when several seeds)."""
        keys = [p.key for p in self.params]
        if len(self.seeds) > 1:
            keys.append(SEED_KEY)
        return keys

    def count_trials(self) -> int:
        """Trials of a grid or random search, counted without building them."""
        from mtlsearch.space.expand import count_trials

        return count_trials(self)

    def expand(self) -> list[dict[str, Any]]:
        """The trials of a grid or random search, each a dict of dotted keys
        (see :func:`mtlsearch.space.expand.expand`)."""
        from mtlsearch.space.expand import expand

        return expand(self)

    def define_by_run(self) -> Any:
        """Optuna define-by-run space: suggests active keys in order, inactive -> None."""
        from mtlsearch.space.optuna import DefineByRun

        return DefineByRun(self.params, self.static_config().flat(), self.seeds[0])

    def baseline_config(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """The single-task-baseline view of a trial: regularizer, aux heads and cross-view
        parts off, first seed, no per-task weights (the hash key of the baseline cache)."""
        cfg = load_config(self.tree(values)).to_dict()
        defaults = Config().to_dict()
        cfg["name"] = "baseline"
        cfg["regularizer"] = defaults["regularizer"]
        cfg["aux_heads"]["enabled"] = False
        cfg["cvm"] = defaults["cvm"]
        cfg["eval"]["baselines"] = {}
        cfg["eval"]["outputs"] = ["heads"]
        cfg["eval"]["multiview"] = False
        cfg["data"]["num_views"] = 1
        cfg["data"]["source_tasks"] = []
        cfg["train"]["seed"] = self.seeds[0]
        cfg["tasks"] = {}
        return cfg

    def to_json(self) -> dict[str, Any]:
        """The parsed space as a plain dict (for ``mtlsearch.json``)."""
        return plain(self.raw)


def baseline_hash(tree: dict[str, Any]) -> str:
    """Stable short hash of a baseline-relevant config mapping."""
    text = json.dumps(tree, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


__all__ = [
    "INDEX_KEY",
    "SEED_KEY",
    "CheckpointPolicy",
    "Param",
    "Resources",
    "SchedulerSettings",
    "SearchSettings",
    "Space",
    "baseline_hash",
    "build_tree",
]
