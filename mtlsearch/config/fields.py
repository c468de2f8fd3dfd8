"""Field types and validators the config sections share: registry names (tasks,
decoders, timm backbones, checked only while validating), files, unique lists, numbers
from YAML text, and the errors that name the key to blame (:func:`key_error`, :func:`fail`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
)
from pydantic_core import PydanticCustomError, core_schema

from mtlsearch.config import registries

SEED_MAX = 2**63 - 1
"""Largest seed (numpy and torch take 64-bit seeds)."""
IMAGE_SIDE_MAX = 4096
"""Largest image side in pixels for crops, validation padding and SynthRooms."""


def key_error(field: str, message: str) -> PydanticCustomError:
    """A validation error blamed on ``field`` (dotted, relative to the model raising it)."""
    return PydanticCustomError("config_rule", "{message}", {"message": message, "field": field})


def fail(kind: str, message: str) -> PydanticCustomError:
    """A validation error with a finished one-line ``message`` (no templating)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def near_below_far(section: str, near: float, far: float) -> None:
    """The rule of a depth range (``regularizer``, ``cvm``): ``near`` below ``far``."""
    if near >= far:
        raise key_error("near", f"must be below {section}.far ({far}), got {near}")


def float_from_text(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: accept numeric strings for float keys."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Int = Annotated[int, Strict()]
PosInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
Seed = Annotated[int, Strict(), Field(ge=0, le=SEED_MAX)]
Float = Annotated[float, BeforeValidator(float_from_text), Strict()]
PosFloat = Annotated[float, Strict(), Field(gt=0), BeforeValidator(float_from_text)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0), BeforeValidator(float_from_text)]
Fraction = Annotated[float, Strict(), Field(gt=0, le=1), BeforeValidator(float_from_text)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Side = Annotated[int, Strict(), Field(gt=0, le=IMAGE_SIDE_MAX)]
SideOrZero = Annotated[int, Strict(), Field(ge=0, le=IMAGE_SIDE_MAX)]


class _RegistryName(str):
    """A string checked against a registry while validating; its JSON Schema lists
    the registry's names when they can be read (``mtlsearch config schema``)."""

    kind = "name"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        raise NotImplementedError

    @classmethod
    def check(cls, value: str) -> str:
        known = cls.names()
        if value not in known:
            raise fail("unknown_name", f"unknown {cls.kind} {value!r} (known: {', '.join(known)})")
        return value

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(
            cls.check, core_schema.str_schema(strict=True)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        try:
            out["enum"] = list(cls.names())
        except Exception:  # noqa: BLE001  (a registry that cannot load: schema stays a string)
            out.pop("enum", None)
        return out


class TaskName(_RegistryName):
    """A task of the task registry (``mtlsearch.tasks``)."""

    kind = "task"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return registries.task_names()


class DecoderName(_RegistryName):
    """A decoder registered in ``mtlsearch.models.decoders``."""

    kind = "decoder"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return registries.decoder_names()


def check_backbone(name: str) -> str:
    if not name:
        raise fail("backbone", "expected a timm model name, got ''")
    if not registries.is_backbone(name):
        close = registries.close_backbones(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise fail("backbone", f"{name!r} is not a timm model{hint}")
    return name


BACKBONE_KWARGS_RESERVED = (
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path",
    "cache_dir", "features_only", "out_indices", "feature_cfg", "feature_cls", "feature_location",
    "dynamic_img_size", "dynamic_img_pad",
)
"""``timm.create_model`` arguments that mtlsearch sets itself (or that would download)."""


def check_backbone_kwargs(value: dict[str, Any]) -> dict[str, Any]:
    reserved = [k for k in value if k in BACKBONE_KWARGS_RESERVED]
    if reserved:
        raise fail(
            "backbone_kwargs",
            f"{', '.join(reserved)} cannot be set here (mtlsearch sets it; weights come only from "
            "model.pretrained_path)",
        )
    return value


@functools.cache
def backbone_problem(backbone: str, out_indices: tuple[int, ...], kwargs_json: str) -> str | None:
    """:func:`registries.out_indices_problem` with ``model.backbone_kwargs`` (as JSON)."""
    from mtlsearch.models.backbones import out_indices_problem

    return out_indices_problem(backbone, out_indices, json.loads(kwargs_json))


def check_file(path: str) -> str:
    if path and not Path(path).expanduser().is_file():
        raise fail("file", f"weights file not found: {path}")
    return path


def unique(values: list[Any]) -> list[Any]:
    for i, value in enumerate(values):
        if value in values[:i]:
            raise fail("unique", f"{value!r} is listed twice")
    return values
