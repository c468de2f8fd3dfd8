"""The search folder's layout: every file and folder name of a search and of a trial, and
the trial statuses, defined once.

Contract: a search folder (``<storage>/<name>/``) holds what mtlsearch writes
(:data:`META_FILE`, :data:`OPTUNA_DB`, :data:`REPLICATION_FILE`, :data:`ERROR_LOG`) beside
what Tune writes (its experiment state and one folder per trial). A trial folder holds
Tune's records (:data:`PARAMS_FILE`, :data:`RESULT_FILE`, :data:`PROGRESS_FILE`,
:data:`TUNE_ERROR_FILE`), Tune's checkpoint folders (``checkpoint_000003/``, each with
mtlsearch's :data:`CHECKPOINT_FILE`) and mtlsearch's own files (:data:`CONFIG_FILE`,
:data:`FATAL_FILE`, :data:`TENSORBOARD_DIR`). Single-task baselines shared by the searches
of one storage live in :data:`BASELINES_DIR` beside them. Modules that read or write any of
these import the name from here; nothing else spells them. A report folder's file names
are here too (:data:`TABLE_FILES`, ...).
"""

from __future__ import annotations

from pathlib import Path

# --- the search folder ------------------------------------------------------------
META_FILE = "mtlsearch.json"
"""The search's metadata (:class:`mtlsearch.records.SearchMeta`), written by ``search``."""
OPTUNA_DB = "optuna.db"
"""The Optuna study (SQLite) of an ``algorithm: optuna`` search."""
REPLICATION_FILE = "replication.json"
"""Adaptive replication's decisions (seeds per configuration)."""
ERROR_LOG = "mtlsearch-error.log"
"""Tracebacks of internal errors during a command on this search (one line is printed)."""

# --- a trial folder (Tune's names, read by mtlsearch) -----------------------------
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
TUNE_ERROR_FILE = "error.txt"
TUNE_TRIAL_FILES = (PARAMS_FILE, RESULT_FILE, PROGRESS_FILE, TUNE_ERROR_FILE)
"""Any of these marks a folder as a Tune trial folder."""
CHECKPOINT_DIR_GLOB = "checkpoint_*"
"""Tune's checkpoint folders inside a trial folder."""

# --- a trial folder (mtlsearch's names) -------------------------------------------
CONFIG_FILE = "config.yaml"
"""The trial's full, resolved config (the one ``best --out`` and retrain read)."""
FATAL_FILE = "fatal_error.txt"
"""A user error or NaN loss: Tune must not retry the trial."""
TENSORBOARD_DIR = "tensorboard"
"""TensorBoard event files of a trial (and of a baseline)."""
CHECKPOINT_FILE = "checkpoint.pt"
"""mtlsearch's state inside each of Tune's checkpoint folders."""
CHECKPOINT_TMP_FILE = ".checkpoint.pt.tmp"
"""A checkpoint being replaced (``mtlsearch prune``), renamed to :data:`CHECKPOINT_FILE`."""

# --- beside the searches of one storage --------------------------------------------
BASELINES_DIR = "_baselines"
BASELINES_FILE = "baselines.json"

# --- a report folder (``mtlsearch report``) ---------------------------------------
RESULTS_FILE = "results.parquet"
"""One row per trial."""
CURVES_FILE = "curves.parquet"
"""One row per (trial, report)."""
PLOTS_DIR = "plots"
TABLE_FILES = {"md": "table.md", "tex": "table.tex", "csv": "table.csv", "html": "report.html"}
"""Table format (``--format``) -> the file it writes; the order is the default's."""

# --- trial statuses (Tune's, as collect reports them) ----------------------------
FINISHED = "TERMINATED"
ERROR = "ERROR"
RUNNING = "RUNNING"
PENDING = "PENDING"
INTERRUPTED = "INTERRUPTED"
UNFINISHED = (RUNNING, PENDING, INTERRUPTED)


def checkpoint_files(trial_dir: Path) -> list[Path]:
    """mtlsearch's checkpoint files of a trial folder, oldest first (Tune numbers them)."""
    return sorted(trial_dir.glob(f"{CHECKPOINT_DIR_GLOB}/{CHECKPOINT_FILE}"))


def is_trial_dir(path: Path) -> bool:
    """Whether ``path`` holds one of Tune's trial records."""
    return any((path / name).exists() for name in TUNE_TRIAL_FILES)


__all__ = [
    "BASELINES_DIR",
    "BASELINES_FILE",
    "CHECKPOINT_DIR_GLOB",
    "CURVES_FILE",
    "CHECKPOINT_FILE",
    "CHECKPOINT_TMP_FILE",
    "CONFIG_FILE",
    "ERROR",
    "ERROR_LOG",
    "FATAL_FILE",
    "FINISHED",
    "INTERRUPTED",
    "META_FILE",
    "OPTUNA_DB",
    "PARAMS_FILE",
    "PENDING",
    "PLOTS_DIR",
    "PROGRESS_FILE",
    "REPLICATION_FILE",
    "RESULTS_FILE",
    "RESULT_FILE",
    "RUNNING",
    "TABLE_FILES",
    "TENSORBOARD_DIR",
    "TUNE_ERROR_FILE",
    "TUNE_TRIAL_FILES",
    "UNFINISHED",
    "checkpoint_files",
    "is_trial_dir",
]
