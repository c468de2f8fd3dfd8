"""A space's references to its own rows, checked before anything runs: a baseline given
as a row label (``0.5``) or ``key=value`` pairs, and ``when`` values, must be able to
match a planned row, otherwise the table would silently have no baseline, or the key
would silently never be set; and every candidate value, then every planned row's config,
must validate.

Contract: each function raises the space file's one-line ``error:`` (``file.error``)
naming the key and the values it can take, or returns quietly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mtlsearch.config import ConfigError, validate_tree
from mtlsearch.errors import UserError
from mtlsearch.space.expand import check_size
from mtlsearch.space.spec import Param, Space
from mtlsearch.space.text import format_value

if TYPE_CHECKING:
    from mtlsearch.space.load import Origin


def text_matches(text: str, value: Any) -> bool:
    """Whether a row label's text (``0.5``, ``true``, ``semseg+depth``) can be ``value``."""
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return math.isclose(float(text), float(value), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return False
    if isinstance(value, (list, tuple)):
        return text in ("all", "+".join(map(str, value)), format_value(value))
    return text in (str(value), format_value(value))


def label_baseline(file: Origin, label: str, params: list[Param]) -> str:
    """A baseline given as a row label (``0.5``) or ``key=value`` pairs must name a row the
    table can have: every key varied with listed values, every value one of them."""
    def refuse(why: str) -> UserError:
        return file.error(("baseline",), f"{label!r} names no planned row: {why}")

    discrete = [p for p in params if p.discrete]
    parts = [part.strip() for part in label.split(",") if part.strip()]
    if parts and all("=" in part for part in parts):
        for part in parts:
            key, text = (x.strip() for x in part.split("=", 1))
            match = [p for p in params if p.key == key or p.key.rsplit(".", 1)[-1] == key]
            if len(match) != 1:
                varied = ", ".join(p.key for p in params) or "none"
                raise refuse(f"{key} is not {'one' if not match else 'exactly one'} of the varied keys ({varied})")
            if not match[0].discrete:
                raise refuse(f"{match[0].key} is drawn from {match[0].kind}: no planned row has a known value")
            if not any(text_matches(text, v) for v in match[0].args):
                values = ", ".join(format_value(v) for v in match[0].args)
                raise refuse(f"{match[0].key} takes {values}, not {text}")
        return label
    if not params:
        if label != "all":
            raise refuse("the space varies no key, so its one row is 'all'")
        return label
    if len(params) > 1:
        raise refuse("the space varies several keys: name the row as 'key=value, key=value'")
    if not discrete:
        raise refuse(f"{params[0].key} is drawn from {params[0].kind}: no planned row has a known value")
    if not any(text_matches(label, v) for v in params[0].args):
        values = ", ".join(format_value(v) for v in params[0].args)
        raise refuse(f"the rows are the values of {params[0].key}: {values}")
    return label


def check_conditions(file: Origin, space: Space, params: list[Param]) -> None:
    """A ``when`` value its key can never take would silently never match: for a varied
    key, a value outside its listed values; for a key the space does not vary, a value the
    config refuses (a valid value that differs from this profile's is allowed: another
    profile may set it)."""
    by_key = {p.key: p for p in params}
    for param in params:
        for ckey, allowed in param.when.items():
            source = by_key.get(ckey)
            if source is not None and not source.discrete:
                continue
            for value in allowed:
                if source is not None:
                    if value in source.args:
                        continue
                    why = f"{ckey} takes {', '.join(format_value(v) for v in source.args)}"
                else:
                    try:
                        validate_tree(space.tree({ckey: value}))
                        continue
                    except ConfigError as err:
                        why = err.reason if err.key == ckey else str(err)
                raise file.error(("space", param.key, "when", ckey),
                                 f"{format_value(value)} can never match: {why}",
                                 f"space.{param.key}.when.{ckey}")



def check_values(file: Origin, space: Space, params: list[Param], baselines: str | None) -> None:
    """Every candidate value alone, then (grid and random) the config of every trial."""
    path = space.path
    for param in params:
        context = {k: v[0] for k, v in param.when.items()}
        for value in param.dist.candidates():
            try:
                validate_tree(space.tree({**context, param.key: value}))
            except ConfigError as err:
                why = err.reason if err.key == param.key else str(err)
                raise file.error(("space", param.key), f"value {format_value(value)}: {why}",
                                 f"space.{param.key}") from None
    if baselines and space.search.algorithm == "optuna":
        for param in params:
            if param.key.split(".")[0] not in ("regularizer", "aux_heads", "cvm", "eval"):
                raise file.error(("space", param.key), "with baselines: single_task, an optuna search may "
                                 "only vary keys the baselines do not depend on (regularizer.*, aux_heads.*, "
                                 "cvm.*, eval.*)", f"space.{param.key}")
    check_size(space)
    if space.search.algorithm != "optuna":
        varying = {p.key for p in params}
        for trial in space.expand():
            try:
                validate_tree(space.tree(trial))
            except ConfigError as err:
                shown = ", ".join(f"{k}={format_value(v)}" for k, v in trial.items() if k in varying)
                raise UserError(f"{path}: the trial with {shown} has an invalid config: {err}") from None


__all__ = ["check_conditions", "check_values", "label_baseline", "text_matches"]
