"""The typed experiment config: the single source of truth for every default.

YAML files and ``--set key=value`` overrides only change fields declared in
:mod:`mtlsearch.config.schema` (pydantic models). Unknown keys, wrong types and
out-of-range values raise :class:`~mtlsearch.errors.UserError` naming the dotted key,
the value and where it came from, so a typo never silently trains the wrong model.

Entry point: :func:`load_config`. ``mtlsearch config schema|show``:
:mod:`mtlsearch.config.commands`.
"""

from __future__ import annotations

from typing import Any

from mtlsearch.config.load import (
    ConfigError,
    config_fields,
    flatten,
    load_config,
    parse_override,
    read_yaml,
    set_dotted,
    validate_tree,
)
from mtlsearch.config.schema import (
    AlphaConfig,
    AuxHeadsConfig,
    Config,
    CvmConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RegCrossViewConfig,
    RegularizerConfig,
    SynthConfig,
    TrainConfig,
)


def __getattr__(name: str) -> Any:
    # ALL_TASKS is read from the task registry on first use (it imports torch).
    if name == "ALL_TASKS":
        from mtlsearch.config.registries import task_names

        return task_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_TASKS",  # noqa: F822  (module __getattr__)
    "AlphaConfig",
    "AuxHeadsConfig",
    "Config",
    "ConfigError",
    "CvmConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "RegCrossViewConfig",
    "RegularizerConfig",
    "SynthConfig",
    "TrainConfig",
    "config_fields",
    "flatten",
    "load_config",
    "parse_override",
    "read_yaml",
    "set_dotted",
    "validate_tree",
]
