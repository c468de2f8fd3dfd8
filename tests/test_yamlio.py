"""The one YAML reader: UTF-8 only, bounded aliases and depth, lines, through every loader."""

from __future__ import annotations

import codecs
import time
from pathlib import Path

import pytest

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.space import load_space
from mtlsearch.yamlio import MAX_ALIASES, MAX_DEPTH, LineDict, load_mapping, parse

LOADERS = {"config": load_config, "space": load_space}

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)


def _write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "input.yaml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


BAD_FILES = {
    "utf16": ("name: x\n".encode("utf-16"), "not UTF-8 text (UTF-16)"),
    "utf32": (codecs.BOM_UTF32_LE + "name: x\n".encode("utf-32-le"), "not UTF-8 text (UTF-32)"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (binary data)"),
    "control": (b"\x1c\x02garbage\x07: 1\n", "not UTF-8 text (binary data: control character"),
    "c1_control": ("a: \x86\n".encode(), "unacceptable character #x0086"),
    "latin1": ("name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (invalid byte at offset 9)"),
    "laughs": (BILLION_LAUGHS, "values once aliases are expanded"),
    "aliases": ("a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n", f"more than {MAX_ALIASES} aliases"),
    "deep": ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
    "deep_maps": ("a: " + "{b: " * 5_000 + "1" + "}" * 5_000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
    "recursive": ("a: &a [*a]\n", "invalid YAML"),
    "list": ("- 1\n- 2\n", "the top level must be a mapping, got list"),
    "scalar": ("just text\n", "the top level must be a mapping, got str"),
    "duplicate": ("name: x\nname: y\n", "line 2: invalid YAML: duplicate key 'name'"),
    "syntax": ("a: [1, 2\n", "invalid YAML"),
    "python_tag": ("a: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_yaml_files_fail_cleanly_in_every_loader(tmp_path, loader, case):
    data, fragment = BAD_FILES[case]
    path = _write(tmp_path, data)
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        LOADERS[loader](path)
    message = str(info.value)
    assert time.monotonic() - start < 5
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_missing_and_folder_paths(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="search space file not found"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is not a file"):
        load_config(tmp_path)


def test_utf8_bom_and_empty_files(tmp_path):
    path = _write(tmp_path, codecs.BOM_UTF8 + b"train: {lr: 0.5}\n")
    assert load_config(path).train.lr == 0.5
    empty = _write(tmp_path, b"")
    assert load_config(empty) == load_config()
    with pytest.raises(UserError, match="empty"):
        load_space(empty)


def test_mappings_remember_lines(tmp_path):
    path = _write(tmp_path, "a: 1\nb:\n  c: 2\n  d: [1, 2]\n")
    data = load_mapping(path)
    assert isinstance(data, LineDict) and isinstance(data["b"], LineDict)
    assert (data.line_of("a"), data.line_of("b"), data["b"].line_of("d")) == (1, 2, 4)


def test_shallow_aliases_are_fine():
    assert parse("a: &a {x: 1}\nb: *a\n", "t") == {"a": {"x": 1}, "b": {"x": 1}}
