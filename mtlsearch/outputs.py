"""The one rule for every command that writes a folder (or a file) given by the user.

Contract:

* The output is built beside the target (``.<name>.tmp-*``) and renamed into place when
  complete, so a failure midway leaves whatever was at the target untouched.
* A target may be a path that does not exist yet or an empty folder; or, when the
  command replaces earlier outputs (``replace=True``: ``report --out``, ``predict --out``,
  ``data synthrooms --force``), a folder holding an earlier mtlsearch output *of the same
  kind*, recognised by its marker file ``.mtlsearch-<kind>`` (JSON: tool, kind, and the
  list of files written). Such a folder is replaced only while it holds nothing but the
  files its marker lists: a file the user added is never deleted. An output written
  before markers existed is recognised only by the command's ``legacy`` check (its own
  file names and nothing else).
* Anything else is refused with a :class:`UserError` naming the flag and the path: an
  existing file where a folder is expected, a symbolic link, a folder without this
  kind's marker, a folder holding files mtlsearch did not write, a path whose parent is a
  file, and a target that is, contains or lies inside a protected folder (the search
  folder a report reads). ``--force`` never extends to unrelated folders.
* Files follow the same rule (:func:`check_file`): a new path, or a file the same
  command wrote, recognised by its content (``data preview --out PNG``: its ``Software``
  text chunk is :func:`png_software`; ``best --out``: its first line). Text files
  (``best --out``, ``config schema --out``) are written atomically by :func:`write_file`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import overload

from mtlsearch.errors import UserError
from mtlsearch.storage import Location

MARKER_PREFIX = ".mtlsearch-"
TOOL = "mtlsearch"


def marker_name(kind: str) -> str:
    """The marker file's name for outputs of ``kind`` (``.mtlsearch-report``)."""
    return f"{MARKER_PREFIX}{kind}"


def _listing(folder: Path) -> list[str]:
    """Every file and symbolic link below ``folder`` (relative POSIX paths, sorted);
    links are listed, never followed."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        for name in files:
            out.append((base / name).relative_to(folder).as_posix())
        for name in dirs:
            if (base / name).is_symlink():
                out.append((base / name).relative_to(folder).as_posix())
    return sorted(out)


def read_marker(folder: Path) -> dict | None:
    """The parsed marker of an mtlsearch output folder, whatever its kind, or None."""
    try:
        names = [p.name for p in folder.iterdir() if p.name.startswith(MARKER_PREFIX)]
    except OSError:
        return None
    for name in sorted(names):
        try:
            data = json.loads((folder / name).read_bytes().decode("utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(data, dict) and data.get("tool") == TOOL
                and name == marker_name(str(data.get("kind")))
                and isinstance(data.get("files"), list)):
            return data
    return None


def write_marker(folder: Path, kind: str) -> Path:
    """Write ``folder/.mtlsearch-<kind>`` listing every file now in ``folder``."""
    path = folder / marker_name(kind)
    files = [f for f in _listing(folder) if f != path.name]
    data = {"tool": TOOL, "kind": kind, "files": files}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies below it (both resolved)."""
    return a == b or b in a.parents


def check_target(
    out: str | Path,
    kind: str,
    *,
    flag: str = "--out",
    replace: bool = True,
    force_hint: str | None = None,
    protect: Sequence[str | Path] = (),
    protect_label: str = "search folder",
    legacy: Callable[[Path], bool] | None = None,
) -> Path:
    """Check that an output folder of ``kind`` may be written at ``out``; return it
    absolute. ``replace``: an earlier output of the same kind may be replaced (without
    it any existing folder is refused, with ``force_hint`` as the remedy). ``protect``:
    inputs (named ``protect_label`` in messages) the target must neither be, contain nor
    lie inside. ``legacy``: recognises
    an earlier output written before markers existed. Raises :class:`UserError`."""
    raw = Path(out)
    target = Path(os.path.abspath(raw))
    shown = f"{flag} {str(raw)!r}"
    resolved = target.resolve()
    for folder in protect:
        p = Path(folder).resolve()
        what = f"the {protect_label} {str(folder)!r}"
        if resolved == p:
            raise UserError(f"{shown} is {what}; choose another folder")
        if _inside(resolved, p):
            raise UserError(f"{shown} lies inside {what}; choose a folder outside it")
        if _inside(p, resolved):
            raise UserError(f"{shown} contains {what}; choose another folder")
    for parent in target.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserError(f"{shown}: {str(parent)!r} is a file, not a folder")
            break
    if target.is_symlink():
        raise UserError(f"{shown} is a symbolic link; give a real folder")
    if not target.exists():
        return target
    if not target.is_dir():
        raise UserError(f"{shown} is a file, not a folder; refusing to replace it")
    if not replace:
        hint = f" (use {force_hint} to replace an earlier {kind} output)" if force_hint else ""
        raise UserError(f"{shown} already exists{hint}")
    present = _listing(target)
    if not present:
        return target
    marker = read_marker(target)
    if marker is None:
        if legacy is not None and legacy(target):
            return target
        raise UserError(
            f"{shown} exists and is not an mtlsearch {kind} output (no {marker_name(kind)} "
            "marker): refusing to replace it; choose a new folder"
        )
    if marker.get("kind") != kind:
        raise UserError(
            f"{shown} holds an mtlsearch {marker.get('kind')} output, not a {kind}: "
            "refusing to replace it; choose another folder"
        )
    written = {str(f) for f in marker["files"]} | {marker_name(kind)}
    foreign = [f for f in present if f not in written]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(
            f"{shown} holds files mtlsearch did not write ({foreign[0]!r}{more}): refusing to "
            "replace it; move them away or choose another folder"
        )
    return target


def install(tmp: Path, target: Path, kind: str, **check: object) -> None:
    """Mark ``tmp`` as a ``kind`` output and rename it to ``target``, replacing (after
    checking it again with ``check``'s arguments) an earlier output there."""
    write_marker(tmp, kind)
    check_target(target, kind, **check)  # type: ignore[arg-type]
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        if old is not None and not target.exists():
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def output_folder(out: str | Path, kind: str, **check: object) -> Iterator[Path]:
    """Check ``out`` (see :func:`check_target`), yield a private folder beside it to
    write into, then install it at ``out``; on any error the private folder is removed
    and ``out`` is left as it was."""
    target = check_target(out, kind, **check)  # type: ignore[arg-type]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        install(tmp, target, kind, **check)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@overload
def check_run_folder(storage: str | Path, name: str | None, *, name_flag: str = ...,
                     storage_flag: str = ...) -> Path: ...


@overload
def check_run_folder(storage: Location, name: str | None, *, name_flag: str = ...,
                     storage_flag: str = ...) -> Location: ...


def check_run_folder(storage: str | Path | Location, name: str | None, *, name_flag: str = "--name",
                     storage_flag: str = "--storage") -> Path | Location:
    """``storage/name`` absolute, for a run or search folder: ``name`` (unless None) must
    be a plain folder name (letters, digits, ``-``, ``_``, ``.``; not ``.`` or ``..``) and
    a local ``storage`` must not be, or lie inside, a file. Checked before any data is
    generated or Ray starts. A :class:`~mtlsearch.storage.Location` (local or URI, already
    checked by :func:`mtlsearch.storage.open_storage`) gives a ``Location`` back."""
    text = "" if name is None else str(name)
    plain = text.replace("-", "").replace("_", "").replace(".", "")
    if name is not None and (not plain.isascii() or not plain.isalnum() or len(text) > 200):
        raise UserError(f"{name_flag}: expected a folder name of letters, digits, '-', '_' or '.', "
                        f"got {text!r}")
    if isinstance(storage, Location):
        if storage.is_local:
            check_run_folder(storage.local, name, name_flag=name_flag, storage_flag=storage_flag)
        return storage / text
    root = Path(os.path.abspath(storage))
    for folder in (root, *root.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                where = "" if folder == root else f" ({str(folder)!r} is a file)"
                raise UserError(f"{storage_flag} {str(storage)!r} is not a folder{where}")
            break
    return root / text


def png_software(kind: str) -> str:
    """The PNG ``Software`` text that marks a file written by mtlsearch's ``kind``."""
    return f"{TOOL} {kind}"


def check_file(
    out: str | Path,
    *,
    flag: str = "--out",
    expected: str,
    ours: Callable[[Path], bool],
    writer: str,
) -> Path:
    """Check that a file may be written at ``out``: its folder exists, it is neither a
    symbolic link nor a folder (``expected`` names what to give instead), and a file
    already there is one ``ours`` recognises as written by ``writer`` (``mtlsearch best``).
    Returns it absolute; raises :class:`UserError`."""
    raw = Path(out)
    target = Path(os.path.abspath(raw))
    shown = f"{flag} {str(raw)!r}"
    if not target.parent.is_dir():
        raise UserError(f"{shown}: folder {str(target.parent)!r} not found")
    if target.is_symlink():
        raise UserError(f"{shown} is a symbolic link; give a real file")
    if target.is_dir():
        raise UserError(f"{shown} is a folder, expected {expected}")
    if target.exists() and not ours(target):
        raise UserError(
            f"{shown} exists and was not written by {writer}: refusing to "
            "overwrite it; choose a new file name"
        )
    return target


def write_file(target: Path, text: str, *, flag: str = "--out") -> None:
    """Write ``text`` to ``target`` (already checked, e.g. by :func:`check_file`)
    atomically: a temporary file beside it, renamed into place. Raises
    :class:`UserError` naming ``flag``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{flag} {target}: cannot write: {err.strerror or err}") from None


def _png_software_of(path: Path) -> str | None:
    """The ``Software`` text chunk of the PNG at ``path`` (None if unreadable or absent)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.info.get("Software")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def check_file_target(out: str | Path, kind: str, *, flag: str = "--out") -> Path:
    """Check that a PNG file of ``kind`` may be written at ``out``: a new path, or a PNG
    an earlier run of the same command wrote. Returns it absolute."""
    return check_file(
        out, flag=flag, expected="a PNG file name",
        ours=lambda path: _png_software_of(path) == png_software(kind), writer=f"mtlsearch {kind}",
    )


__all__ = [
    "MARKER_PREFIX",
    "check_file",
    "check_file_target",
    "check_run_folder",
    "check_target",
    "install",
    "marker_name",
    "output_folder",
    "png_software",
    "read_marker",
    "write_file",
    "write_marker",
]
