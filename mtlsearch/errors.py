"""Errors: the user's mistakes and our own.

Contract: :class:`UserError` (bad input) is printed by the CLI as one ``error:`` line, no
traceback. Any other exception is a bug: the CLI prints one line naming it and the log
file that holds its full traceback (:func:`log_internal_error`), or lets it raise with
``--debug`` / ``MTLSEARCH_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from mtlsearch.layout import ERROR_LOG


class UserError(Exception):
    """A mistake the user can fix (bad argument, key, file or value).

    The CLI prints ``error: <message>`` and exits with status 2, no traceback.
    The message must name the offending key, file or value.
    """


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss: the run stops as failed.

    The message names the iteration and the non-finite loss parts. Every DDP worker
    raises it at the same step (the check is all-reduced), so a run never hangs on it.
    """


# ---------------------------------------------------------------------------
# Internal errors: one line on the terminal, the traceback in a log file
# ---------------------------------------------------------------------------

DEBUG_ENV = "MTLSEARCH_DEBUG"
"""Set to 1 (or pass ``--debug``) to let an internal error raise with its traceback."""
FALLBACK_LOG_DIR = Path(".cache") / "mtlsearch" / "errors"
"""Where a traceback goes when the command has no local search or run folder (yet)."""

_log_folder: Path | None = None


def set_error_folder(folder: Path | None) -> None:
    """The local search or run folder the current command writes (its error log's home)."""
    global _log_folder
    _log_folder = folder


def debug_enabled() -> bool:
    """True when internal errors should raise (``--debug`` or ``MTLSEARCH_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def log_internal_error(err: BaseException, argv: list[str] | None = None) -> Path:
    """Append ``err``'s full traceback to the error log and return the log's path: the
    search or run folder's :data:`ERROR_LOG`, else a new file under
    :data:`FALLBACK_LOG_DIR` (nothing the user wrote is touched). ``argv``: the command's
    arguments, recorded above the traceback (default ``sys.argv[1:]``)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if _log_folder is not None and _log_folder.is_dir():
        path = _log_folder / ERROR_LOG
    else:
        FALLBACK_LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = FALLBACK_LOG_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    with path.open("a", encoding="utf-8") as f:
        command = " ".join(sys.argv[1:] if argv is None else argv)
        f.write(f"--- {stamp} mtlsearch {command}\n{text}\n")
    return path.resolve()


def internal_error_line(err: BaseException, path: Path, what: str = "internal error") -> str:
    """The one line printed for an internal error (a bug, not the user's input)."""
    return (f"error: {what}: {type(err).__name__}: {err} (full traceback in {path}; "
            f"rerun with --debug or {DEBUG_ENV}=1 to raise it)")
