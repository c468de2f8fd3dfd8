"""Building a :class:`Config` from defaults, a YAML file or mapping, and dotted overrides.

Contract:

* :func:`validate_tree` turns a nested mapping into a ``Config`` or raises
  :class:`ConfigError`: a ``UserError`` that carries the dotted ``key`` it blames and
  the ``reason`` (``"train.lr: must be > 0, got -1.0"``). Callers that know where a key
  came from (a search space, a profile) use ``err.key`` to name their own file and line;
  nobody parses the message.
* :func:`load_config` names the source: ``FILE line N: key: reason`` for a key from a
  file, ``--set key: reason`` for a key an override set.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mtlsearch.config.errors import dict_fields, first_error, show
from mtlsearch.config.schema import Config
from mtlsearch.errors import UserError
from mtlsearch.yamlio import LineDict, line_of, load_mapping, plain

DICT_FIELDS = tuple(dict_fields(Config))
"""Config keys whose value is a mapping with user-chosen keys (``tasks``,
``eval.baselines``, ...): leaves for :func:`flatten`, read from the schema."""


class ConfigError(UserError):
    """An invalid config value: ``key`` (dotted) and ``reason`` (one line)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray copies and pickles exceptions raised in trials and workers.
        return (type(self), (self.key, self.reason))


# ---------------------------------------------------------------------------
# Dotted keys
# ---------------------------------------------------------------------------


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys; leaves (incl. the tasks dict) kept whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in DICT_FIELDS:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c = value`` inside nested dicts, creating levels as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML (``32``, ``true``, ``[a, b]``)."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"override {text!r} has an empty key")
    if any(not part for part in key.split(".")):
        raise UserError(f"--set {key}: empty part in the dotted key")
    from mtlsearch.yamlio import parse

    try:
        value = parse(raw, "the value") if raw.strip() else ""
    except UserError as err:
        raise UserError(f"--set {key}: cannot parse value {raw!r}: {err}") from None
    if isinstance(value, str):
        value = _float_or_str(value) if _looks_numeric(value) else value
    return key, plain(value)


def _float_or_str(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _looks_numeric(text: str) -> bool:
    return any(c.isdigit() for c in text) and isinstance(_float_or_str(text), float)


def config_fields() -> dict[str, Any]:
    """Every dotted key with its default, for docs and validation of search spaces."""
    return Config().flat()


# ---------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------


def validation_error(err: ValidationError) -> ConfigError:
    """The first error of a pydantic ``ValidationError`` as a :class:`ConfigError`."""
    key, _, reason = first_error(err, Config)
    return ConfigError(key or "config", reason)


def validate_tree(tree: Any) -> Config:
    """Validate a nested mapping into a :class:`Config` (ConfigError on a bad value)."""
    if not isinstance(tree, dict):
        raise ConfigError("config", f"expected a mapping, got {show(tree)}")
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise validation_error(err) from None


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def read_yaml(path: str | Path) -> LineDict:
    """Read a config YAML mapping (bytes, UTF-8, bounded safe loader); errors name the
    file and line. The mapping keeps its keys' lines (:class:`LineDict`)."""
    return load_mapping(path, "config file")


def touches(key: str, override: str) -> bool:
    """Whether setting the dotted ``override`` can be the cause of an error at ``key``."""
    return (
        key == override
        or key.startswith((override + ".", override + "["))
        or override.startswith(key + ".")
    )


def _blame(
    err: ConfigError, items: list[tuple[str, Any]], from_cli: bool, path: Path | None, tree: Any
) -> UserError:
    """Name where the bad key came from: the last override touching it (``--set`` for
    CLI overrides), else the file and line."""
    key = err.key
    for okey, _ in reversed(items):
        if touches(key, okey):
            if not from_cli:
                return err
            if key == okey or not okey.startswith(key + "."):
                return UserError(f"--set {err}")
            return UserError(f"--set {okey}: {err}")
    if path is not None:
        loc = tuple(key.replace("[", ".[").split("."))
        line = line_of(tree, tuple(int(p[1:-1]) if p.startswith("[") else p for p in loc))
        where = f"{path} line {line}" if line else str(path)
        return UserError(f"{where}: {err}")
    return err


def load_config(
    source: str | Path | dict[str, Any] | Config | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Build a :class:`Config` from defaults, a YAML file or dict, then dotted overrides.

    ``overrides`` is a list of ``"key=value"`` strings (CLI ``--set``) or a mapping
    of dotted keys to values (search spaces). Raises :class:`UserError` naming the key
    (and the file and line, or the ``--set``, it came from).
    """
    path: Path | None = None
    if isinstance(source, Config):
        tree: dict[str, Any] = source.to_dict()
    elif source is None:
        tree = {}
    elif isinstance(source, dict):
        tree = copy.deepcopy(source)
    else:
        path = Path(source)
        tree = read_yaml(path)
    lined = tree
    if overrides:
        tree = plain(tree)
    items = list(overrides.items()) if isinstance(overrides, dict) else [
        parse_override(text) for text in overrides or []
    ]
    for key, value in items:
        set_dotted(tree, key, value)
    try:
        return validate_tree(tree)
    except ConfigError as err:
        raise _blame(err, items, not isinstance(overrides, dict), path, lined) from None


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (``mtlsearch config show``), keys in schema order."""
    return yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False, default_flow_style=None)


__all__ = [
    "DICT_FIELDS",
    "ConfigError",
    "config_fields",
    "flatten",
    "load_config",
    "parse_override",
    "read_yaml",
    "set_dotted",
    "to_yaml",
    "touches",
    "validate_tree",
    "validation_error",
]
