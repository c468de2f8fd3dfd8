"""Pydantic validation errors as one-line messages that name the dotted key.

Contract: :func:`first_error` turns a ``ValidationError`` raised by validating a tree
against a pydantic model (``root``: the config or the space-file schema) into the
dotted ``key`` and a short ``reason`` (``"must be > 0, got -1"``), reading allowed keys
and ranges from the model itself. Errors raised with
:func:`mtlsearch.config.schema.key_error` carry the key they blame. No caller parses
messages.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

_TAGS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple", "[key]"}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field annotated ``Model`` or ``Model | None``."""
    import typing

    options = [annotation, *typing.get_args(annotation)]
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    """(model holding the last part of ``loc``, its FieldInfo), or (None, None)."""
    model: Any = root
    info = None
    for part in loc:
        if model is None or not isinstance(part, str):
            return None, None
        info = model.model_fields.get(part)
        if info is None:
            return None, None
        holder = model
        model = _model_of(info.annotation)
    return (holder if info is not None else None), info


def field_type(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The annotation of the field at ``loc`` below ``root`` (constraints stripped:
    ``int`` for a positive integer key), or None when ``loc`` names no field."""
    _, info = _walk(root, loc)
    return info.annotation if info is not None else None


def section_fields(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed in the section at ``loc`` below ``root``, or None when ``loc``
    is not a section."""
    model: Any = root
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        model = _model_of(info.annotation) if info is not None else None
        if model is None:
            return None
    return list(model.model_fields)


def dict_fields(root: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys below ``root`` whose value is a mapping with user-chosen keys
    (``tasks``, ``eval.baselines``): leaves for flattening, open for key checks."""
    out: list[str] = []
    for name, info in root.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += dict_fields(ann, f"{prefix}{name}.")
        elif getattr(ann, "__origin__", None) is dict or ann is dict:
            out.append(f"{prefix}{name}")
    return out


def _num(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _metadata(root: type[BaseModel], loc: tuple[Any, ...]) -> list[Any]:
    """Constraint objects of the field at ``loc``, also of an item of a tuple/list field
    (``data.crop_size[0]``)."""
    import typing

    from pydantic.fields import FieldInfo

    n = len(loc)
    while n and isinstance(loc[n - 1], int):
        n -= 1
    _, info = _walk(root, loc[:n])
    if info is None:
        return []
    if n == len(loc):
        return list(info.metadata)
    args = typing.get_args(info.annotation)
    index = loc[n]
    if not args:
        return []
    item = args[index] if len(args) > index and args[-1] is not Ellipsis else args[0]
    out: list[Any] = []
    for meta in typing.get_args(item)[1:]:
        out += list(meta.metadata) if isinstance(meta, FieldInfo) else [meta]
    return out


def field_range(root: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The interval of the number field at ``loc`` (``"[0, 1]"``, ``"(0, 1]"``) when it
    has both bounds, else None."""
    import annotated_types as at

    metadata = _metadata(root, loc)
    lo = hi = None
    for item in metadata:
        if isinstance(item, at.Ge):
            lo = f"[{_num(item.ge)}"
        elif isinstance(item, at.Gt):
            lo = f"({_num(item.gt)}"
        elif isinstance(item, at.Le):
            hi = f"{_num(item.le)}]"
        elif isinstance(item, at.Lt):
            hi = f"{_num(item.lt)})"
    return f"{lo}, {hi}" if lo and hi else None


def show(value: Any) -> str:
    """A value as the user wrote it (lists and mappings shortened)."""
    if isinstance(value, dict):
        value = dict(value)
    if isinstance(value, (list, tuple, dict)):
        text = repr(_plain(value))
        return text if len(text) <= 80 else text[:77] + "..."
    return repr(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dotted(loc: tuple[Any, ...]) -> str:
    """``("data", "crop_size", 0)`` -> ``data.crop_size[0]`` (pydantic's tags dropped)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _TAGS or "[" in str(part) or "-" in str(part):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def reason(err: dict[str, Any], root: type[BaseModel], what: str = "config key") -> str:
    """A short message for one pydantic error (the key is named by the caller)."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = show(err.get("input"))
    if "message" in ctx:
        return str(ctx["message"])
    bounds = {
        "greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"), "less_than_equal": ("<=", "le"),
    }
    if kind in bounds:
        interval = field_range(root, loc)
        if interval:
            return f"must be in {interval}, got {got}"
        op, name = bounds[kind]
        return f"must be {op} {_num(ctx.get(name))}, got {got}"
    simple = {
        "finite_number": "must be a finite number", "int_type": "expected an integer",
        "int_parsing": "expected an integer", "int_from_float": "expected an integer",
        "float_type": "expected a number", "float_parsing": "expected a number",
        "bool_type": "expected true/false", "bool_parsing": "expected true/false",
        "string_type": "expected a string", "dict_type": "expected a mapping",
        "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
        "list_type": "expected a list", "tuple_type": "expected a list",
        "string_pattern_mismatch": "has characters that are not allowed",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    if kind == "literal_error":
        return f"{got} is not one of {ctx.get('expected')}"
    if kind in ("too_long", "too_short"):
        if ctx.get("field_type") == "Tuple":
            return f"expected a list of {ctx.get('max_length', ctx.get('min_length'))} values, got {got}"
        if kind == "too_short":
            return f"needs at least {ctx.get('min_length')} item(s), got {got}"
        return f"takes at most {ctx.get('max_length')} item(s), got {got}"
    if kind == "extra_forbidden":
        known = section_fields(root, loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return f"unknown {what} ({hint}known: {', '.join(known)})"
    return str(err.get("msg", "")).removeprefix("Value error, ")


def first_error(
    err: ValidationError, root: type[BaseModel], what: str = "config key"
) -> tuple[str, tuple[Any, ...], str]:
    """(dotted key, raw loc, reason) of the first error; a ``key_error`` adds its field."""
    first = err.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    key = dotted(loc)
    field = (first.get("ctx") or {}).get("field") if first["type"] == "config_rule" else None
    if field:
        key = f"{key}.{field}" if key else str(field)
        loc = loc + tuple(str(field).split("."))
    return key, loc, reason(first, root, what)


__all__ = ["dict_fields", "dotted", "field_range", "field_type", "first_error", "reason", "section_fields", "show"]
