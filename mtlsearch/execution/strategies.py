"""Search strategies: Optuna samplers (``search.sampler``) and Tune schedulers (``scheduler.type``).

Contract: :func:`make_sampler` and :func:`make_scheduler` build the objects
:func:`mtlsearch.execution.search.build_tuner` hands to Tune; :func:`sampler_problem` and
:func:`scheduler_problem` say (``(key, reason)``) why a space cannot use the chosen one,
so :mod:`mtlsearch.space.load` refuses it with the file and line before Ray starts.

Samplers (``search.algorithm: optuna``), all seeded by ``search.seed``:

* ``tpe`` (default): ``TPESampler``; single and multi-objective.
* ``nsga2``: ``NSGAIISampler`` (``search.population_size``, default 50; until a
  generation is complete it samples at random); made for multi-objective searches.
* ``cmaes``: ``CmaEsSampler``; single-objective only, needs the ``cmaes`` package
  (extra ``cmaes``); categorical keys are sampled independently (Optuna warns).
* ``gp``: ``GPSampler`` (Gaussian process; needs torch and scipy, both installed with
  mtlsearch).
* ``random``: ``RandomSampler``.

Schedulers (Tune, on ``training_iteration``, i.e. evaluations), one scalar metric:

* ``asha``: ``ASHAScheduler(max_t, grace_period, reduction_factor)``; with several seeds
  :class:`mtlsearch.execution.halving.SeedMeanASHA`, which stops a configuration (all its seeds) on
  the mean of its seeds at each rung. The other schedulers decide on one trial, i.e. one
  seed: with several seeds they are refused (use asha, or one seed).
* ``hyperband``: ``HyperBandScheduler(max_t, reduction_factor)`` (synchronous: pauses
  trials at each rung and continues the best from their checkpoints).
* ``median``: ``MedianStoppingRule(grace_period, min_samples_required)``.
* ``pbt``: ``PopulationBasedTraining(perturbation_interval, quantile_fraction,
  resample_probability, synch)``. Every trial reports a checkpoint at each evaluation; at an
  exploit Tune restarts a weak trial from a strong trial's checkpoint with perturbed
  values of the space's keys, and the training loop lets the config win over the saved
  schedule (``train.lr``; alpha is recomputed from the config at every step), so only
  keys that can change during training may vary: :data:`PBT_MUTABLE`. Others (the
  model, the data, the regularizer's structure) are refused, as are conditional keys,
  multi-worker trials (their Train run restores its own checkpoint, not Tune's) and
  Optuna searches (PBT explores by itself; use grid or random). Under PBT every
  checkpoint of a trial is kept (:func:`checkpoints_to_keep`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

SAMPLERS = ("tpe", "nsga2", "cmaes", "gp", "random")
SCHEDULERS = ("asha", "hyperband", "median", "pbt")
PBT_MUTABLE = (
    "train.lr",
    "regularizer.alpha.max",
    "regularizer.alpha.per_task.",
    "regularizer.cross_view.weight_scale",
    "tasks.",
)
"""Keys PBT may perturb (entries ending in ``.`` are prefixes: per-task alpha, task
loss weights): each is read from the config at every step, after a checkpoint restore."""
SAMPLER_PACKAGES = {"cmaes": ("cmaes", "pip install 'mtlsearch[cmaes]' (or: pip install cmaes)")}
"""Samplers that need a package mtlsearch does not install by default."""


def _mutable(key: str) -> bool:
    return any(key.startswith(m) if m.endswith(".") else key == m for m in PBT_MUTABLE)


# ---------------------------------------------------------------------------
# Checks (called by mtlsearch.space.load)
# ---------------------------------------------------------------------------


def sampler_problem(sampler: str, algorithm: str, multi_objective: bool) -> str | None:
    """Why ``search.sampler`` cannot be used with this search (None if it can)."""
    if algorithm != "optuna":
        return f"{sampler}: a sampler is chosen only with algorithm optuna (got {algorithm})"
    if sampler == "cmaes" and multi_objective:
        return "cmaes is single-objective; use nsga2, tpe or gp for a list of metrics"
    need = SAMPLER_PACKAGES.get(sampler)
    if need and importlib.util.find_spec(need[0]) is None:
        return f"{sampler} needs the {need[0]!r} package, which is not installed: {need[1]}"
    return None


def scheduler_problem(
    kind: str, *, algorithm: str, multi_objective: bool, keys: list[str], conditional: list[str],
    checkpoint_every: int, eval_every: int, seeds: int = 1,
) -> tuple[str | None, str] | None:
    """Why ``scheduler.type: kind`` cannot run this search: ``(key, reason)``, where key
    is a ``space`` key to blame or None for the scheduler section; None if it can."""
    if multi_objective:
        return None, f"{kind} needs one scalar metric; search.metric is a list (use delta_m)"
    if seeds > 1 and kind != "asha":
        return None, (f"{kind} would stop or copy one seed's trial on that seed's own value, not on its "
                      f"configuration's mean over seeds; use scheduler asha (it decides on seed means), "
                      f"or give one seed")
    if kind != "pbt":
        return None
    if algorithm == "optuna":
        return None, "pbt explores values by itself: use algorithm grid or random, not optuna"
    if checkpoint_every > eval_every:
        return None, (f"pbt restarts trials from the checkpoint of an evaluation: train.checkpoint_every "
                      f"({checkpoint_every}) must be 0 or at most train.eval_every ({eval_every})")
    for key in keys:
        if not _mutable(key):
            allowed = ", ".join(m + "*" if m.endswith(".") else m for m in PBT_MUTABLE)
            return key, (f"pbt perturbs only keys that can change during training ({allowed}); "
                         f"{key} cannot (vary it with another scheduler)")
    if conditional:
        return conditional[0], "pbt cannot perturb conditional keys (drop 'when')"
    if not keys:
        return None, "pbt needs at least one key in space to perturb (e.g. train.lr)"
    return None


# ---------------------------------------------------------------------------
# Factories (called by mtlsearch.execution.search.build_tuner)
# ---------------------------------------------------------------------------


def make_sampler(search: Any) -> Any:
    """The Optuna sampler of ``search`` (:class:`mtlsearch.space.spec.SearchSettings`),
    wrapped so that Tune can pickle it whatever the Optuna release (``PortableSampler``)."""
    name = getattr(search, "sampler", None) or "tpe"
    from mtlsearch.execution.samplers import PortableSampler

    size = getattr(search, "population_size", None) if name == "nsga2" else None
    return PortableSampler(name, search.seed, size)


def pbt_mutations(space: Any) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations``: each varying key's values (grid/choice lists) or
    its Tune distribution, so resampling draws from the space itself."""
    out: dict[str, Any] = {}
    for p in space.params:
        out[p.key] = list(p.args) if p.discrete else p.to_tune()
    return out


def make_scheduler(space: Any) -> Any:
    """The Tune scheduler of ``space`` (None without a ``scheduler`` section)."""
    sc = space.scheduler
    if sc is None:
        return None
    from ray.tune import schedulers

    metric, mode = space.search.metric, space.search.mode
    common = {"time_attr": "training_iteration", "metric": metric, "mode": mode}
    if sc.type == "asha" and len(space.seeds) > 1:
        from mtlsearch.execution.halving import SeedMeanASHA

        return SeedMeanASHA(metric=metric, mode=mode, seeds=len(space.seeds), max_t=sc.max_t,
                            grace_period=sc.grace_period, reduction_factor=sc.reduction_factor)
    if sc.type == "asha":
        return schedulers.ASHAScheduler(
            **common, max_t=sc.max_t, grace_period=sc.grace_period, reduction_factor=sc.reduction_factor
        )
    if sc.type == "hyperband":
        return schedulers.HyperBandScheduler(**common, max_t=sc.max_t, reduction_factor=sc.reduction_factor)
    if sc.type == "median":
        return schedulers.MedianStoppingRule(
            **common, grace_period=sc.grace_period, min_samples_required=sc.min_samples_required
        )
    if sc.type == "pbt":
        return schedulers.PopulationBasedTraining(
            **common,
            perturbation_interval=sc.perturbation_interval,
            hyperparam_mutations=pbt_mutations(space),
            quantile_fraction=sc.quantile_fraction,
            resample_probability=sc.resample_probability,
            synch=sc.synch,
        )
    raise ValueError(f"unknown scheduler {sc.type!r} (known: {', '.join(SCHEDULERS)})")


def checkpoints_to_keep(space: Any) -> int | None:
    """Tune checkpoints kept per trial: 2, or all of them under PBT (a weak trial may be
    sent to any recent checkpoint of a strong one; deleting it breaks the exploit)."""
    sc = space.scheduler
    return None if sc is not None and sc.type == "pbt" else 2


def mutable_keys(space: Any) -> list[str]:
    """Keys whose value a trial must take from Tune's config rather than its planned row
    (PBT changes them when it exploits another trial)."""
    sc = space.scheduler
    return [p.key for p in space.params] if sc is not None and sc.type == "pbt" else []


__all__ = [
    "PBT_MUTABLE",
    "SAMPLERS",
    "SCHEDULERS",
    "checkpoints_to_keep",
    "make_sampler",
    "make_scheduler",
    "mutable_keys",
    "pbt_mutations",
    "sampler_problem",
    "scheduler_problem",
]
