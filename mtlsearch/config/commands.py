"""``mtlsearch config schema|show``: the config's JSON Schema and a resolved config.

Contract: ``schema`` writes the JSON Schema of :class:`~mtlsearch.config.schema.Config`
(to ``--out FILE`` or stdout) so editors complete and check config YAML files; ``show``
prints the config that ``CONFIG`` (optional) and ``--set`` resolve to, as YAML, after the
same validation a training run does. Both return 0; mistakes raise ``UserError``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mtlsearch.config.load import load_config, to_yaml
from mtlsearch.config.schema import Config
from mtlsearch.errors import UserError
from mtlsearch.outputs import write_file

SCHEMA_ID = "https://mtlsearch.invalid/config.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file."""
    schema = Config.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "mtlsearch config"
    return schema


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; refuse folders and non-JSON files we did not write."""
    if path.is_dir():
        raise UserError(f"--out {path}: is a folder; give a file such as config.schema.json")
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            old = None
        if not isinstance(old, dict) or old.get("$id") != SCHEMA_ID:
            raise UserError(f"--out {path}: exists and is not a schema this command wrote; not replacing it")
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: folder {path.parent} does not exist")
    write_file(path, text)


def run_cli(args: argparse.Namespace) -> int:
    """Dispatch ``mtlsearch config schema`` / ``mtlsearch config show``."""
    if args.config_command == "schema":
        text = json.dumps(json_schema(), indent=2) + "\n"
        if args.out:
            _write_new(Path(args.out), text)
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    cfg = load_config(args.config, args.overrides)
    sys.stdout.write(to_yaml(cfg))
    return 0


__all__ = ["SCHEMA_ID", "json_schema", "run_cli"]
