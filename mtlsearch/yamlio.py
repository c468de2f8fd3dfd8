"""The one YAML reader of config, space and profile files: safe, bounded, line-aware.

Contract:

* A file is read as bytes and decoded as UTF-8 (a UTF-8 byte-order mark is dropped);
  UTF-16/32 text, binary data and invalid UTF-8 raise ``UserError("FILE: not UTF-8
  text ...")``. Files over :data:`MAX_BYTES` are refused.
* Parsing is ``yaml.SafeLoader`` (no Python tags) with bounds that keep a hostile
  file from hanging or crashing the process: at most :data:`MAX_ALIASES` aliases,
  nesting at most :data:`MAX_DEPTH` levels, at most :data:`MAX_NODES` values once
  aliases are expanded ("billion laughs"). Duplicate keys are refused.
* Every mapping is a :class:`LineDict` that knows its own line and each key's line
  (1-based), so validation errors can name ``FILE line N``.
* :func:`load_mapping` requires a mapping at the top level (an empty file is ``{}``).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

import yaml

from mtlsearch.errors import UserError

MAX_BYTES = 8 * 1024 * 1024
"""Largest YAML file read (8 MiB): config and space files are a few kilobytes."""
MAX_ALIASES = 100
"""Most ``*alias`` references in one file."""
MAX_DEPTH = 50
"""Deepest nesting of mappings and lists in one file."""
MAX_NODES = 100_000
"""Most values in one file with every alias expanded."""


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Characters no YAML text holds (YAML allows tab, LF and CR only)."""


class LineDict(dict):
    """A mapping from YAML that remembers its own line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}

    def line_of(self, key: Any) -> int:
        """The line of ``key`` (the mapping's own line when the key is not in it)."""
        return self.key_lines.get(key, self.line)


class _LimitError(yaml.YAMLError):
    """A bound of this module was exceeded (reported like a syntax error)."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class LineLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounded aliases and depth, mappings as :class:`LineDict`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _LimitError(f"more than {MAX_ALIASES} aliases", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark,
            ) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Number of values below ``node`` with aliases expanded (shared nodes memoised)."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            raise _LimitError("an alias refers to a value that contains it", node.start_mark)
        return memo[key]
    memo[key] = -1  # in progress: reaching it again means a recursive alias
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = total
    return total


def decode(data: bytes, path: str | Path) -> str:
    """UTF-8 text of ``data``; anything else raises ``UserError`` naming ``path``."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise UserError(f"{path}: not UTF-8 text (UTF-32); save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UserError(f"{path}: not UTF-8 text (UTF-16); save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\x00" in data:
        raise UserError(f"{path}: not UTF-8 text (binary data)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (invalid byte at offset {err.start})") from None
    control = _CONTROL.search(text)
    if control:
        raise UserError(f"{path}: not UTF-8 text (binary data: control character at offset {control.start()})")
    return text


def read_text(path: str | Path, what: str = "file") -> str:
    """Read ``path`` as bytes and decode it as UTF-8; missing, unreadable, too large or
    non-UTF-8 files raise ``UserError`` naming the file (``what`` says which kind)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{path}: {size} bytes is too large for a {what} (at most {MAX_BYTES})")
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    return decode(data, path)


def parse(text: str, source: str | Path) -> Any:
    """Parse YAML text with :class:`LineLoader` and the bounds above; errors name
    ``source`` and the line."""
    loader = None
    try:
        loader = LineLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise _LimitError(f"{size} values once aliases are expanded (at most {MAX_NODES})")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        if isinstance(err, yaml.reader.ReaderError):
            problem = f"unacceptable character #x{err.character:04x} at offset {err.position}"
        problem = " ".join(str(problem).split())
        raise UserError(f"{source}{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise UserError(f"{source}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_mapping(path: str | Path, what: str = "file", empty_ok: bool = True) -> LineDict:
    """Read a YAML file whose top level is a mapping (``{}`` for an empty file unless
    ``empty_ok`` is false); every error is a one-line ``UserError`` naming the file."""
    data = parse(read_text(path, what), path)
    if data is None:
        if not empty_ok:
            raise UserError(f"{path}: the {what} is empty")
        out = LineDict()
        out.line = 1
        return out
    if not isinstance(data, LineDict):
        raise UserError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def plain(value: Any) -> Any:
    """Deep copy of YAML data as plain dicts and lists (JSON-ready)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def line_of(tree: Any, loc: tuple[Any, ...]) -> int:
    """The line of the deepest key of ``loc`` found in a tree of :class:`LineDict`
    (0 when the tree carries no lines)."""
    line = 0
    node = tree
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.line_of(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
    return line


__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "LineDict",
    "LineLoader",
    "decode",
    "line_of",
    "load_mapping",
    "parse",
    "plain",
    "read_text",
]
