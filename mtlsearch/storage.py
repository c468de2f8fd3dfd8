"""Where searches, runs and baselines are stored: a local folder or a ``pyarrow.fs`` URI.

Contract:

* :func:`parse` turns a ``--storage`` value (or a search folder given to ``report``)
  into a :class:`Location`. A value with a ``scheme://`` is a URI read by
  ``pyarrow.fs.FileSystem.from_uri`` (``s3://bucket/path?endpoint_override=HOST:PORT
  &scheme=http``, ``gs://bucket/path``, ``file:///abs/path``, ...): its query options
  are kept and travel with every path joined below it. Anything else is a local path,
  made absolute. ``file://`` URIs are local folders.
* :func:`open_storage` also checks the location (the bucket exists and the endpoint
  answers) and is called before any data is generated or Ray starts: a bad URI
  (unknown scheme, unexpected option, unreachable endpoint, missing bucket) is one
  :class:`UserError` naming the value.
* Credentials never appear in messages or in :attr:`Location.display` (user info and
  ``*key*``/``*secret*``/``*token*`` query values are masked); they come from the
  file system's own chain (``AWS_ACCESS_KEY_ID``, ...) or from the URI itself.
* Writes are atomic where the file system allows: local files go through a temporary
  file and a rename; object stores (``s3``, ``gs``) make an object visible only once
  it is complete; other file systems write a temporary file and move it.
* :meth:`Location.ray_storage` is the ``(storage_path, storage_filesystem)`` pair for
  Ray's ``tune.RunConfig`` / ``ray.train.RunConfig`` / ``Tuner.restore`` (local: the
  path and None, today's behaviour; URI: the file-system path and its file system,
  which keeps the endpoint options).
* :func:`sync_down` copies a remote folder into a local cache
  (``<cache>/storage/<hash>/<name>``, refreshed on each call: only changed files are
  fetched, files it wrote that vanished remotely are removed, and it never deletes or
  overwrites a file it did not write). :func:`study_path` is the driver-side SQLite
  file of a search's Optuna study (``<cache>/studies/<hash>/optuna.db``);
  :func:`study_storage` its Optuna storage, which survives Tune's pickling of the searcher
  into another cache folder; :func:`push_study`/:func:`pull_study` copy it beside the
  results and back.
* The cache root is ``$MTLSEARCH_CACHE_DIR`` or ``.cache/mtlsearch`` in the launch folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from mtlsearch.errors import UserError
from mtlsearch.layout import OPTUNA_DB

CACHE_ENV = "MTLSEARCH_CACHE_DIR"
DEFAULT_CACHE = ".cache/mtlsearch"
CACHE_MARKER = ".mtlsearch-storage-cache"
"""Manifest of a :func:`sync_down` folder: the files it wrote, with size and mtime."""
OBJECT_STORES = frozenset({"s3", "gs", "gcs"})
"""Schemes whose objects appear whole once written (no temporary file needed)."""
_SECRET = re.compile(r"key|secret|token|password|credential|signature", re.IGNORECASE)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(value: str | os.PathLike[str]) -> bool:
    """Whether ``value`` names a URI (``scheme://...``) rather than a local path."""
    return isinstance(value, str) and bool(_URI.match(value))


def redact(uri: str) -> str:
    """``uri`` without credentials: user info and secret-looking query values masked."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in parts.netloc and not any(_SECRET.search(k) for k, _ in pairs):
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(f"{k}={'***' if _SECRET.search(k) else v}" for k, v in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def cache_root() -> Path:
    """The driver-side cache folder (``$MTLSEARCH_CACHE_DIR`` or ``.cache/mtlsearch``), absolute."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser().resolve()


class Location:
    """A folder or file on a local disk or a ``pyarrow.fs`` file system.

    ``fs``/``path``: the file system and the path on it (for a local location, the
    absolute path). ``uri``: the full URI with its options (the local path for a local
    location), what to hand to another process. ``display``: the same without
    credentials, for messages. ``location / "a" / "b"`` joins POSIX parts.
    """

    def __init__(self, fs: Any, path: str, uri: str, scheme: str = "") -> None:
        self.fs = fs
        self.path = path
        self.uri = uri
        self.scheme = scheme

    # -- naming ---------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """Whether this is a folder of the local file system (a plain path or ``file://``)."""
        return self.scheme in ("", "file", "local")

    @property
    def local(self) -> Path:
        """The local path (only for local locations)."""
        if not self.is_local:
            raise ValueError(f"{self.display} is not a local path")
        return Path(self.path)

    @property
    def display(self) -> str:
        """The location for messages: the path, or the URI without credentials."""
        return self.path if self.is_local else redact(self.uri)

    @property
    def name(self) -> str:
        """The last path component."""
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def key(self) -> str:
        """A short stable hash naming this location in caches (credentials excluded)."""
        return hashlib.sha256(self.display.encode("utf-8")).hexdigest()[:16]

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Location({self.display!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.uri, self.scheme) == (other.uri, other.scheme)

    def __hash__(self) -> int:
        return hash((self.uri, self.scheme))

    def join(self, *parts: str) -> Location:
        """The location of ``parts`` (relative POSIX paths, no ``..``) below this one."""
        clean: list[str] = []
        for part in parts:
            for piece in str(part).split("/"):
                if piece in ("", "."):
                    continue
                if piece == "..":
                    raise ValueError(f"'..' in a storage path part: {part!r}")
                clean.append(piece)
        if not clean:
            return self
        if self.is_local:
            path = str(Path(self.path, *clean))
            return Location(self.fs, path, path if self.scheme == "" else _with_path(self.uri, path), self.scheme)
        path = posixpath.join(self.path.rstrip("/"), *clean)
        parts_ = urlsplit(self.uri)
        uri_path = posixpath.join(parts_.path.rstrip("/") or "/", *clean)
        uri = urlunsplit((parts_.scheme, parts_.netloc, uri_path, parts_.query, ""))
        return Location(self.fs, path, uri, self.scheme)

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    @property
    def parent(self) -> Location:
        """The enclosing folder (itself at a root or bucket)."""
        if self.is_local:
            path = str(Path(self.path).parent)
            return Location(self.fs, path, path if self.scheme == "" else _with_path(self.uri, path), self.scheme)
        head = posixpath.dirname(self.path.rstrip("/"))
        if not head:
            return self
        parts = urlsplit(self.uri)
        uri_path = posixpath.dirname(parts.path.rstrip("/")) or "/"
        return Location(self.fs, head, urlunsplit((parts.scheme, parts.netloc, uri_path, parts.query, "")),
                        self.scheme)

    # -- queries --------------------------------------------------------------

    def _info(self) -> Any:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        """Whether a file or folder is there."""
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        """Whether a folder is there (on object stores: any object below this prefix)."""
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        """Whether a file is there."""
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.File

    def listdir(self) -> list[str]:
        """Names of the entries directly in this folder (sorted; empty if it is missing)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        return sorted(posixpath.basename(i.path.rstrip("/")) for i in self.fs.get_file_info(selector))

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file below this folder: relative POSIX path -> (size, mtime in ns)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        base = self.path.rstrip("/") + "/"
        out: dict[str, tuple[int, int]] = {}
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and info.path.startswith(base):
                out[info.path[len(base):]] = (int(info.size or 0), int(info.mtime_ns or 0))
        return out

    # -- reading and writing ----------------------------------------------------

    def read_bytes(self) -> bytes:
        """The file's content."""
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        """The file's content decoded (UTF-8 by default)."""
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write the file atomically where the file system allows (see the module docs)."""
        if self.is_local:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return
        self.parent.mkdir()
        if self.scheme in OBJECT_STORES:
            with self.fs.open_output_stream(self.path) as stream:
                stream.write(data)
            return
        tmp = posixpath.join(posixpath.dirname(self.path), f".{self.name}.{uuid.uuid4().hex[:8]}.tmp")
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, self.path)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        """Write ``text`` atomically where the file system allows."""
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Create the folder and its parents (no-op where folders are implicit); the
        arguments exist for ``Path.mkdir`` compatibility and are always true."""
        if self.is_local:
            Path(self.path).mkdir(parents=True, exist_ok=True)
        elif self.scheme not in OBJECT_STORES:
            self.fs.create_dir(self.path, recursive=True)

    def delete_file(self) -> None:
        """Remove the file (missing is fine)."""
        if self.is_file():
            self.fs.delete_file(self.path)

    def upload(self, source: str | Path) -> None:
        """Copy a local file to this location, or a local folder's content into it."""
        import pyarrow.fs as pafs

        source = Path(source)
        if source.is_file():
            self.write_bytes(source.read_bytes())
            return
        self.mkdir()
        pafs.copy_files(str(source.resolve()), self.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def download(self, target: str | Path) -> None:
        """Copy this file to the local file ``target`` (atomically)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open_input_stream(self.path) as stream, open(tmp, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    # -- Ray ----------------------------------------------------------------------

    def ray_storage(self) -> tuple[str, Any]:
        """``(storage_path, storage_filesystem)`` for Ray's ``RunConfig``/``Tuner.restore``."""
        return (self.path, None) if self.is_local else (self.path, self.fs)


def _with_path(uri: str, path: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def parse(value: str | os.PathLike[str] | Location, flag: str = "--storage") -> Location:
    """The :class:`Location` of a ``--storage`` value (no network access; see
    :func:`open_storage` for the checks). Raises :class:`UserError` naming the value."""
    if isinstance(value, Location):
        return value
    if not is_uri(value):
        import pyarrow.fs as pafs

        path = str(Path(os.fspath(value)).expanduser().resolve())
        return Location(pafs.LocalFileSystem(), path, path)
    text = str(value)
    shown = redact(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    # The query (endpoint_override, scheme, region, ...) is kept verbatim for pyarrow.
    uri = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") or parts.path, parts.query, ""))
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, TypeError) as err:
        message = _first_line(err).replace(text, shown).replace(uri, shown)
        raise UserError(f"{flag} {shown!r}: not a storage location pyarrow can open ({message})") from None
    if scheme in ("file", "local"):
        return Location(fs, str(Path(path).resolve()), uri, scheme)
    if not path.strip("/"):
        raise UserError(f"{flag} {shown!r}: give a bucket (and a folder), e.g. s3://bucket/trials")
    return Location(fs, path.rstrip("/"), uri, scheme)


def check(location: Location, flag: str = "--storage") -> None:
    """Refuse a remote location that cannot be used: the endpoint does not answer, the
    bucket is missing, or the path is a file. Local locations are checked by
    :func:`mtlsearch.outputs.check_run_folder`."""
    if location.is_local:
        return
    import pyarrow.fs as pafs

    shown = location.display
    bucket = location.path.split("/", 1)[0]
    try:
        if location.scheme in OBJECT_STORES:
            info = location.fs.get_file_info(bucket)
            if info.type == pafs.FileType.NotFound:
                raise UserError(
                    f"{flag} {shown!r}: bucket {bucket!r} not found (create it first, or check "
                    "the endpoint and credentials)"
                )
        if location.is_file():
            raise UserError(f"{flag} {shown!r} is a file, not a folder")
    except UserError:
        raise
    except (OSError, ValueError) as err:
        message = _first_line(err).replace(location.uri, shown)
        raise UserError(f"{flag} {shown!r}: storage not reachable ({message})") from None


def open_storage(value: str | os.PathLike[str] | Location, flag: str = "--storage") -> Location:
    """:func:`parse` then :func:`check`: the location, usable, or one :class:`UserError`."""
    location = parse(value, flag)
    check(location, flag)
    return location


def study_path(search: Location) -> Path:
    """The driver-side SQLite file of a search's Optuna study: in the search folder for
    local storage, else ``<cache>/studies/<hash>/optuna.db`` (keyed by the location)."""
    if search.is_local:
        return search.local / OPTUNA_DB
    return cache_root() / "studies" / search.key / OPTUNA_DB


def study_storage(search: str | Location) -> Any:
    """The Optuna storage of a search's study (:func:`study_path`): a plain SQLite
    ``RDBStorage`` for local storage; for a URI a :class:`DriverStudyStorage`, which Tune
    pickles with its searcher and which finds the driver's copy again when unpickled
    (``--resume`` from another launch folder or machine, after :func:`pull_study`)."""
    search = parse(search)
    if search.is_local:
        from optuna.storages import RDBStorage

        return RDBStorage(f"sqlite:///{study_path(search)}")
    return _driver_study_storage_class()(search.uri)


@functools.cache
def _driver_study_storage_class() -> type:
    from optuna.storages import RDBStorage

    class DriverStudyStorage(RDBStorage):
        """SQLite storage at the driver's :func:`study_path` of ``search_uri``, recomputed
        on unpickling (the cache folder may differ from where it was pickled)."""

        def __init__(self, search_uri: str) -> None:
            self.search_uri = search_uri
            super().__init__(f"sqlite:///{study_path(parse(search_uri))}")

        def __setstate__(self, state: dict[str, Any]) -> None:
            db = study_path(parse(state["search_uri"]))
            db.parent.mkdir(parents=True, exist_ok=True)
            super().__setstate__({**state, "url": f"sqlite:///{db}"})

    DriverStudyStorage.__module__ = __name__
    DriverStudyStorage.__qualname__ = "DriverStudyStorage"
    return DriverStudyStorage


def __getattr__(name: str) -> Any:
    # DriverStudyStorage is built on first use so that importing this module never
    # imports optuna; pickle finds the class here by name.
    if name == "DriverStudyStorage":
        return _driver_study_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def copy_sqlite(source: str | Path, target: str | Path) -> None:
    """A consistent copy of the SQLite database ``source`` at ``target`` (atomic), even
    while another connection has it open."""
    import sqlite3

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        src = sqlite3.connect(str(source))
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _pushed(local_db: Path) -> Path:
    """Beside the driver's study: the (size, mtime) of the copy it last pushed or pulled."""
    return local_db.with_name(local_db.name + ".synced")


def _remote_stamp(remote: Location) -> list[int] | None:
    import pyarrow.fs as pafs

    info = remote.fs.get_file_info(remote.path)
    if info.type != pafs.FileType.File:
        return None
    return [int(info.size or 0), int(info.mtime_ns or 0)]


def push_study(local_db: str | Path, search: Location) -> None:
    """Copy the driver's study beside the results (``<search>/optuna.db``); no-op for
    local storage, where the study lives there already."""
    local_db = Path(local_db)
    if search.is_local or not local_db.is_file():
        return
    remote = search / OPTUNA_DB
    with tempfile.TemporaryDirectory(prefix="mtlsearch-study-") as tmp:
        snapshot = Path(tmp) / OPTUNA_DB
        copy_sqlite(local_db, snapshot)
        remote.upload(snapshot)
    _pushed(local_db).write_text(json.dumps(_remote_stamp(remote)), encoding="utf-8")


def pull_study(search: Location, local_db: str | Path) -> bool:
    """Bring ``<search>/optuna.db`` down to the driver's study file, unless the remote copy
    is the one this driver last pushed or pulled (the local one may be newer: a search
    killed before it could push), or, with no such record, the local copy is newer.
    Returns whether it was copied."""
    if search.is_local:
        return False
    remote = search / OPTUNA_DB
    stamp = _remote_stamp(remote)
    if stamp is None:
        return False
    local = Path(local_db)
    if local.is_file():
        try:
            synced = json.loads(_pushed(local).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            synced = None
        if synced == stamp or (synced is None and local.stat().st_mtime_ns >= stamp[1]):
            return False
    remote.download(local)
    _pushed(local).write_text(json.dumps(stamp), encoding="utf-8")
    return True


def cache_folder(search: Location, cache: str | Path | None = None) -> Path:
    """Where :func:`sync_down` keeps its copy of ``search`` (the folder itself if local)."""
    if search.is_local:
        return search.local
    root = Path(cache) if cache is not None else cache_root()
    return (root / "storage" / search.key / (search.name or "search")).resolve()


def sync_down(search: Location, cache: str | Path | None = None) -> Path:
    """A local copy of the folder ``search`` (local locations are returned as they are).

    The copy lives in ``<cache>/storage/<hash>/<name>`` (default cache: :func:`cache_root`)
    and is refreshed on each call: new or changed files (size or mtime) are fetched,
    files this function wrote earlier that are gone remotely are removed, and a file it
    did not write is never overwritten or removed (:class:`UserError`). Its manifest is
    :data:`CACHE_MARKER` in the copy.
    """
    if search.is_local:
        return search.local
    dest = cache_folder(search, cache)
    manifest_path = dest / CACHE_MARKER
    try:
        remote = search.files()
    except (OSError, ValueError) as err:
        raise UserError(f"{search.display}: cannot list it ({_first_line(err)})") from None
    if not remote:
        raise UserError(f"search folder not found: {search.display} (nothing stored there)")
    written: dict[str, list[int]] = {}
    if manifest_path.is_file():
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                written = {str(k): list(v) for k, v in data["files"].items()
                           if isinstance(v, list) and len(v) == 2}
        except (OSError, ValueError):
            written = {}
    elif dest.exists() and any(dest.iterdir()):
        raise UserError(f"cache folder {dest} holds files mtlsearch did not write; move it away")
    dest.mkdir(parents=True, exist_ok=True)
    for rel, (size, mtime) in sorted(remote.items()):
        target = dest / rel
        if rel == CACHE_MARKER or dest not in target.resolve().parents:
            continue
        if target.exists() or target.is_symlink():
            if rel not in written or target.is_symlink() or not target.is_file():
                raise UserError(f"cache folder {dest}: {rel!r} was not written by mtlsearch; "
                                "move it away to refresh the copy")
            if written[rel] == [size, mtime] and target.stat().st_size == size:
                continue
        (search / rel).download(target)
        written[rel] = [size, mtime]
        _save_manifest(manifest_path, search, written)
    for rel in sorted(set(written) - set(remote)):
        (dest / rel).unlink(missing_ok=True)
        del written[rel]
    _save_manifest(manifest_path, search, written)
    return dest


def _save_manifest(path: Path, search: Location, files: dict[str, list[int]]) -> None:
    data = {"tool": "mtlsearch", "kind": "storage-cache", "source": search.display, "files": files}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "CACHE_ENV",
    "CACHE_MARKER",
    "Location",
    "cache_folder",
    "cache_root",
    "check",
    "copy_sqlite",
    "is_uri",
    "open_storage",
    "parse",
    "pull_study",
    "push_study",
    "redact",
    "study_path",
    "study_storage",
    "sync_down",
]
