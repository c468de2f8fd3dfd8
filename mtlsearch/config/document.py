"""``configs/default.yaml``: every config key with its default and docstring, generated.

Contract: :func:`default_yaml` walks the pydantic models of
:mod:`mtlsearch.config.schema` (the single source of defaults) and returns a YAML
document holding every key at its default, each preceded by its docstring as ``#``
comments and each section by its class docstring. Loading the document gives exactly
``Config()``. ``tests/test_workflow.py`` regenerates it and compares it with the file,
so the shipped file cannot drift; rewrite it with
``python -m mtlsearch.config.document configs/default.yaml``.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from mtlsearch.config.schema import Config, Section
from mtlsearch.yamlio import plain

HEADER = """\
# The default mtlsearch config: every key, its default and what it means.
# GENERATED from mtlsearch/config/schema.py by mtlsearch.config.document; do not edit
# (a test regenerates it and fails on any difference). Copy the keys you change into
# your own config; a config file only overrides these defaults.
"""
WIDTH = 92
"""Comment lines are wrapped to this many characters (before indentation)."""


def _comment(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    body = " ".join(inspect.cleandoc(text).split())
    return [f"{indent}# {line}" for line in textwrap.wrap(body, WIDTH - len(indent))]


def _scalar(value: Any) -> str:
    """One value in YAML flow style (lists, tuples and mappings on one line)."""
    text = yaml.safe_dump(plain(value), default_flow_style=True, width=10_000, sort_keys=False)
    text = text.strip()
    return text[:-4].rstrip() if text.endswith("\n...") or text.endswith(" ...") else text


def _section(model: BaseModel, indent: str) -> list[str]:
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, Section):
            lines.append("")
            lines += _comment(field.description or type(value).__doc__, indent)
            lines.append(f"{indent}{name}:")
            lines += _section(value, indent + "  ")
            continue
        lines += _comment(field.description, indent)
        lines.append(f"{indent}{name}: {_scalar(value)}")
    return lines


def default_yaml() -> str:
    """The text of ``configs/default.yaml`` for the current schema."""
    lines = [HEADER.rstrip("\n"), *(_comment(Config.__doc__, ""))]
    lines += _section(Config(), "")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m mtlsearch.config.document [FILE]``: write (or print) the document."""
    args = sys.argv[1:] if argv is None else argv
    text = default_yaml()
    if not args:
        sys.stdout.write(text)
        return 0
    Path(args[0]).write_text(text, encoding="utf-8")
    print(f"wrote {args[0]}", file=sys.stderr)
    return 0


__all__ = ["default_yaml", "main"]

if __name__ == "__main__":
    sys.exit(main())
