"""The pydantic schema of a search-space file (its structure and ranges).

Contract: :class:`SpaceFile` validates the top level of a space file with the chosen
profile's ``search`` / ``scheduler`` / ``resources`` / ``max_concurrent_trials`` merged in:
unknown keys, wrong types, NaN/inf and out-of-range numbers are refused, and
``mtlsearch.config.errors.first_error`` turns the error into a dotted key and a reason.
What needs the config (config keys, distributions, metric names against the trained
tasks, every trial's config) is checked by :mod:`mtlsearch.space.load`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

from mtlsearch.execution.strategies import SAMPLERS, SCHEDULERS

SEED_MAX = 2**63 - 1
MAX_SAMPLES = 1_000_000
"""Most ``search.num_samples`` (random and grid searches are also bounded by
:data:`mtlsearch.space.expand.MAX_TRIALS`)."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""A search name is a folder name: letters, digits, ``_ . -``; no ``/``."""


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("space_rule", "{message}", {"message": message})


def _path_or_mapping(what: str) -> Any:
    def check(value: Any) -> Any:
        if value is None or isinstance(value, (str, dict)):
            return value
        raise _fail(f"expected {what}, got {value!r}")

    return BeforeValidator(check)


def _mapping(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    raise _fail(f"expected a mapping, got {value!r}")


MAX_ADAPTIVE_SEEDS = 100
"""Most seeds ``seeds: {initial, max}`` may ask for."""


def _seeds(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):  # adaptive replication: {initial: k, max: m}
        unknown = [k for k in value if k not in ("initial", "max")]
        if unknown or set(value) != {"initial", "max"}:
            raise _fail(f"adaptive replication takes exactly initial and max, got {value!r}")
        initial, most = value["initial"], value["max"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (initial, most)):
            raise _fail(f"initial and max must be integers, got {value!r}")
        if initial < 2:
            raise _fail(f"initial must be at least 2 (an interval needs two seeds), got {initial}")
        if initial > most:
            raise _fail(f"initial ({initial}) must not exceed max ({most})")
        if most > MAX_ADAPTIVE_SEEDS:
            raise _fail(f"max must be at most {MAX_ADAPTIVE_SEEDS}, got {most}")
        return dict(value)
    seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(seeds, list) or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise _fail(f"expected a list of distinct integers, got {value!r}")
    for s in seeds:
        if not 0 <= s <= SEED_MAX:
            raise _fail(f"seeds must lie in [0, 2^63), got {s}")
    return seeds


def _folder_name(value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, str) or not re.match(NAME_PATTERN, value):
        raise _fail(f"expected a folder-safe name ([A-Za-z0-9_.-], no '/'), got {value!r}")
    return value


def _names(value: Any) -> Any:
    """A metric name or a non-empty list of them; ``mode`` likewise."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise _fail(f"expected a name or a non-empty list of names, got {value!r}")


def _tracking(value: Any) -> Any:
    """A list of tracker names, or a mapping of tracker name to its options (or null)."""
    from mtlsearch.execution.tracking import tracking_problem

    why = tracking_problem(value)
    if why:
        raise _fail(why)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SearchSection(_Section):
    """``search:``: the algorithm, what it optimises, how many trials, its seed."""

    algorithm: Literal["grid", "random", "optuna"] | None = None
    """Default: grid when every key is discrete, else random."""
    metric: Annotated[Any, BeforeValidator(_names)] = None
    """A reported metric (``loss``, ``delta_m``, ``<task>_<metric>``) or a list (optuna)."""
    mode: Annotated[Any, BeforeValidator(_names)] = None
    """``max`` / ``min`` (or a list, one per metric); default: the metric's direction."""
    num_samples: Annotated[int, Strict(), Field(ge=1, le=MAX_SAMPLES)] | None = None
    seed: Annotated[int, Strict(), Field(ge=0, le=SEED_MAX)] | None = None
    max_failures: Annotated[int, Strict(), Field(ge=0, le=1000)] | None = None
    """Retries of a trial after a node or worker failure (user errors fail once)."""
    sampler: Literal[SAMPLERS] | None = None
    """Optuna's sampler (algorithm optuna; default tpe), see :mod:`mtlsearch.execution.strategies`."""
    population_size: Annotated[int, Strict(), Field(ge=2, le=100_000)] | None = None
    """NSGA-II's population (default 50)."""


class SchedulerSection(_Section):
    """``scheduler:``: a Tune scheduler (:mod:`mtlsearch.execution.strategies`), in evaluations."""

    type: Literal[SCHEDULERS] = "asha"
    max_t: Annotated[int, Strict(), Field(ge=1)] | None = None
    grace_period: Annotated[int, Strict(), Field(ge=1)] | None = None
    reduction_factor: Annotated[int, Strict(), Field(ge=2)] | None = None
    min_samples_required: Annotated[int, Strict(), Field(ge=1)] | None = None
    """median: trials needed before the median stops any (default 3)."""
    perturbation_interval: Annotated[int, Strict(), Field(ge=1)] | None = None
    """pbt: evaluations between exploits (default 1)."""
    quantile_fraction: Annotated[float, Strict(), Field(gt=0, le=0.5)] | None = None
    """pbt: bottom fraction that copies the top fraction (default 0.25)."""
    resample_probability: Annotated[float, Strict(), Field(ge=0, le=1)] | None = None
    """pbt: chance a perturbed value is drawn afresh from the space (default 0.25)."""
    synch: Annotated[bool, Strict()] | None = None
    """pbt: exploit only once every trial has reached the interval (default false; pauses
    the faster trials, so small populations whose trials do not overlap still exploit)."""


class ResourcesSection(_Section):
    """``resources:``: what one trial reserves."""

    workers: Annotated[int, Strict(), Field(ge=1, le=4096)] = 1
    cpus_per_worker: Annotated[float, Strict(), Field(gt=0, le=4096)] = 1.0
    gpus_per_worker: Annotated[float, Strict(), Field(ge=0, le=64)] = 0.0


class CheckpointsSection(_Section):
    """``checkpoints:``: what finished trials keep once the search ends (:mod:`mtlsearch.prune`)."""

    keep: Annotated[int, Strict(), Field(ge=0, le=MAX_SAMPLES)] = 1
    """The best ``keep`` configurations by their mean over seeds keep every seed's last
    whole checkpoint (weights, optimizer, schedule, RNG)."""
    others: Literal["half", "fp32", "none"] = "half"
    """What every other finished trial keeps: its last weights in float16 (``half``) or
    float32 (``fp32``), without optimizer state, or nothing (``none``)."""


class SpaceFile(_Section):
    """The top level of a search-space file (search_spaces/README.md)."""

    name: Annotated[Any, BeforeValidator(_folder_name)] = None
    """Search name -> ``trials/<name>/`` (default: the file name)."""
    description: Annotated[str, Strict()] | None = None
    paper: Annotated[str, Strict(), Field(pattern=r"^[^/]+/[^/]+$")] | None = None
    """``paper/table`` such as ``3dmtl/table6_render_tasks``."""
    base: Annotated[Any, _path_or_mapping("a config file path or a mapping")] = None
    fixed: Annotated[Any, BeforeValidator(_mapping)] = None
    space: Annotated[Any, BeforeValidator(_mapping)] = None
    seeds: Annotated[Any, BeforeValidator(_seeds)] = None
    baseline: Annotated[Any, _path_or_mapping("a row label or a mapping of config keys")] = None
    baselines: Literal["single_task"] | None = None
    search: SearchSection | None = None
    scheduler: SchedulerSection | None = None
    resources: ResourcesSection | None = None
    max_concurrent_trials: Annotated[int, Strict(), Field(ge=1, le=100_000)] | None = None
    profiles: Annotated[Any, BeforeValidator(_mapping)] = None
    tracking: Annotated[Any, BeforeValidator(_tracking)] = None
    """Trackers: ``[tensorboard, mlflow, wandb]`` or a mapping of tracker to options
    (:mod:`mtlsearch.execution.tracking`)."""
    checkpoints: CheckpointsSection | None = None
    """Checkpoint policy applied when the search ends; absent: every checkpoint stays."""


PROFILE_SECTIONS = ("resources", "max_concurrent_trials", "search", "scheduler", "tracking", "checkpoints")
"""Non-config keys a profile may also set (merged over the space's own)."""
TOP_KEYS = tuple(SpaceFile.model_fields)


__all__ = [
    "MAX_SAMPLES",
    "NAME_PATTERN",
    "PROFILE_SECTIONS",
    "TOP_KEYS",
    "CheckpointsSection",
    "ResourcesSection",
    "SchedulerSection",
    "SearchSection",
    "SpaceFile",
]
