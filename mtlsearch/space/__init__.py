"""YAML search spaces: one documented schema, parsed and validated before Ray starts.

A search space names the config keys that vary, how they vary (grid values or Tune
distributions, optionally conditional on other keys), the seeds every sampled config is
repeated with, the search algorithm and its metric(s), resources and named profiles
(``cpu``, ``paper``). The schema is documented in ``search_spaces/README.md``.

Modules: :mod:`~mtlsearch.space.load` (files, profiles, ``extends``, validation),
:mod:`~mtlsearch.space.schema` (the file's pydantic schema),
:mod:`~mtlsearch.space.distributions` (one class per distribution),
:mod:`~mtlsearch.space.expand` (grids, conditions, draws, seeds, the trial limit),
:mod:`~mtlsearch.space.optuna` (define-by-run), :mod:`~mtlsearch.space.spec` (the parsed
:class:`Space` and the one builder of a trial's config tree), :mod:`~mtlsearch.space.text`.

Entry points: :func:`load_space`, :meth:`Space.expand`, :meth:`Space.trial_config`.
"""

from __future__ import annotations

from mtlsearch.space.distributions import DISTRIBUTIONS, Distribution
from mtlsearch.space.expand import MAX_TRIALS
from mtlsearch.space.load import check_key, load_space
from mtlsearch.space.optuna import DefineByRun
from mtlsearch.space.spec import (
    INDEX_KEY,
    SEED_KEY,
    Param,
    Resources,
    SchedulerSettings,
    SearchSettings,
    Space,
    baseline_hash,
)
from mtlsearch.space.text import describe, format_table, format_value
from mtlsearch.yamlio import LineDict, LineLoader, plain

__all__ = [
    "DISTRIBUTIONS",
    "INDEX_KEY",
    "MAX_TRIALS",
    "SEED_KEY",
    "DefineByRun",
    "Distribution",
    "LineDict",
    "LineLoader",
    "Param",
    "Resources",
    "SchedulerSettings",
    "SearchSettings",
    "Space",
    "baseline_hash",
    "check_key",
    "describe",
    "format_table",
    "format_value",
    "load_space",
    "plain",
]
