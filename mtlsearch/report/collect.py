"""Read a search folder (``trials/<name>/``) into two tables: one row per trial, one row
per reported evaluation.

Reading is tolerant by design: a search may still be running or may have been killed,
so files can be missing, ``result.json`` can end in a half-written line and Tune's
saved experiment state may be absent, stale or unreadable. Each trial's own files
(``params.json``, ``result.json`` or ``progress.csv``, ``error.txt``) give its config,
reports and error; statuses and the trials that never wrote a folder come from Tune's
public :class:`ray.tune.ExperimentAnalysis` (which, like Tune's own restore, loads the
cloudpickled trial state: report only search folders you trust), else are inferred from
the files.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtlsearch.config import flatten, parse_override
from mtlsearch.errors import UserError
from mtlsearch.layout import (
    CHECKPOINT_DIR_GLOB,
    CHECKPOINT_FILE,
    ERROR,
    FINISHED,
    INTERRUPTED,
    META_FILE,
    PARAMS_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    RUNNING,
    TUNE_ERROR_FILE,
    is_trial_dir,
)
from mtlsearch.metrics import delta_m, flatten_baselines
from mtlsearch.records import SearchMeta
from mtlsearch.report.papers import direction_of, primary_metrics, readable
from mtlsearch.space.spec import SEED_KEY  # the one seed key (tables and plots import it from here)

BOOKKEEPING = {
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
    "time_since_restore", "iterations_since_restore", "iteration", "experiment_tag",
    "should_checkpoint", "experiment_id", "workers",
}
"""Keys of Tune's result rows that are not metrics."""

_TRIAL_DIR = re.compile(r"^(?:(?P<trainable>.+?)_)?(?P<id>[0-9a-f]{5}_\d{5})(?:_|$)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure|Warning)\b.*")


@dataclass
class Search:
    """A search folder read into memory."""

    path: Path
    name: str
    meta: SearchMeta
    """The search's metadata (an empty record for a plain Tune folder without one)."""
    results: pd.DataFrame
    """One row per trial (see :func:`collect`)."""
    curves: pd.DataFrame
    """One row per (trial, report)."""
    ablated_keys: list[str]
    metric_keys: list[str]
    """Reported metric keys, in first-seen order (no Tune bookkeeping)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Config values shared by every trial (constant params and overrides), dotted keys."""
    notes: list[str] = field(default_factory=list)
    param_keys: list[str] = field(default_factory=list)
    """Keys of the trials' ``params.json`` (columns of ``results``), in first-seen order:
    the config keys a trial was given, the seed and Tune's grid index among them."""

    @property
    def tasks(self) -> list[str]:
        if self.meta.tasks:
            return list(self.meta.tasks)
        found = []
        for task, key in primary_metrics().items():
            if f"final_{key}" in self.results.columns:
                found.append(task)
        return found


# ---------------------------------------------------------------------------
# Low-level readers
# ---------------------------------------------------------------------------


def read_json_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Parse a JSON-lines file; return the rows and how many lines were unreadable
    (a search killed mid-write leaves a truncated last line)."""
    rows: list[dict[str, Any]] = []
    bad = 0
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return rows, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def read_tune_state(search_dir: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Trial id -> ``{"status", "relative_logdir", "config", "last_result"}`` from Tune's
    saved experiment state, read through the public :class:`ray.tune.ExperimentAnalysis`,
    and a note when that state exists but cannot be read (``({}, None)`` without one)."""
    import logging

    from ray.tune import ExperimentAnalysis

    from mtlsearch.execution import map_legacy_modules

    map_legacy_modules()  # a search started before mtlsearch.execution existed

    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns per unreadable result.json; collect notes them
    try:
        # Absolute: Tune reads a relative folder as a URI without a scheme and fails.
        analysis = ExperimentAnalysis(str(Path(search_dir).resolve()))
    except ValueError as err:
        if "No experiment snapshot file" in str(err):
            return {}, None  # Tune saved no state here (a copied or hand-made folder)
        return {}, f"Tune's experiment state unreadable ({err}): statuses inferred from the trial files"
    except Exception as err:  # any corrupt state (pickle, JSON, types): fall back to the files
        return {}, (f"Tune's experiment state unreadable ({type(err).__name__}: {err}): "
                    "statuses inferred from the trial files")[:400]
    finally:
        quiet.setLevel(level)
    out: dict[str, dict[str, Any]] = {}
    for trial in analysis.trials:
        last = trial.last_result
        out[str(trial.trial_id)] = {
            "status": trial.status,
            "relative_logdir": Path(trial.path).name if trial.path else None,
            "config": trial.config if isinstance(trial.config, dict) else {},
            "last_result": last if isinstance(last, dict) else {},
        }
    return out, None


def error_summary(text: str, max_lines: int = 3, max_chars: int = 400) -> str:
    """The exception line(s) of a Tune ``error.txt`` (its first line is only
    'Failure # 1 (occurred at ...)'), without colour codes."""
    lines = [_ANSI.sub("", line).rstrip() for line in text.splitlines()]
    start = None
    for i, line in enumerate(lines):
        if _EXC_LINE.match(line):
            start = i
    if start is None:
        picked = [line.strip() for line in lines if line.strip()][:max_lines]
    else:
        picked = [line for line in lines[start:start + max_lines] if line.strip()]
    summary = " | ".join(picked)
    return summary[:max_chars]


def parse_trial_dir(name: str) -> tuple[str | None, str | None]:
    """``"<trainable>_<trial_id>_..."`` or a bare ``"<trial_id>"`` (mtlsearch names trial
    folders by id) -> (trainable or None, trial_id), or (None, None)."""
    match = _TRIAL_DIR.match(name)
    if not match:
        return None, None
    return match.group("trainable"), match.group("id")


def latest_checkpoint(search_dir: Path, trial_id: str, trial_dir: Path | None) -> Path | None:
    """The newest ``checkpoint.pt`` of a trial: Train's ``_train/<trial_id>*/checkpoint_*/``
    first, then Tune checkpoints inside the trial folder."""
    candidates: list[Path] = []
    train_root = search_dir / "_train"
    if train_root.is_dir():
        for run in train_root.glob(f"{trial_id}*"):
            candidates.extend(run.glob(f"{CHECKPOINT_DIR_GLOB}/{CHECKPOINT_FILE}"))
    if not candidates and trial_dir is not None:
        candidates.extend(trial_dir.glob(f"{CHECKPOINT_DIR_GLOB}/{CHECKPOINT_FILE}"))
    candidates = [c for c in candidates if c.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.parent.name))


def _flat_params(config: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and key not in ("tasks",):
            for sub, v in flatten(value, f"{key}.").items():
                flat[sub] = v
        else:
            flat[key] = value
    return flat


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _flat_result(row: dict[str, Any]) -> dict[str, Any]:
    """Flatten nested metric dicts (``{"a": {"b": 1}}`` -> ``a/b``), drop the config."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "config":
            continue
        if isinstance(value, dict):
            for sub, v in _flat_result(value).items():
                out[f"{key}/{sub}"] = v
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------


def _is_trial_dir(path: Path) -> bool:
    if not path.is_dir() or path.name.startswith((".", "_")):
        return False
    return is_trial_dir(path)


RECENT_S = 120.0
"""A trial missing from Tune's state whose files changed this recently counts as RUNNING."""


def _infer_status(has_error: bool, rows: list[dict[str, Any]], trial_dir: Path | None) -> str:
    """Status of a trial Tune's state does not list: error.txt -> ERROR, a last report
    with ``done: true`` -> TERMINATED, files written in the last :data:`RECENT_S`
    seconds -> RUNNING, else INTERRUPTED."""
    if has_error:
        return ERROR
    if rows and rows[-1].get("done") is True:
        return FINISHED
    if trial_dir is not None:
        times = [p.stat().st_mtime for p in trial_dir.iterdir() if p.is_file()]
        if times and time.time() - max(times) < RECENT_S:
            return RUNNING
    return INTERRUPTED


def _resources(meta: SearchMeta) -> str:
    if meta.search.resources is not None:
        return readable(meta.search.resources)
    keys = ("workers", "num_workers", "cpus_per_worker", "gpus_per_worker", "use_gpu")
    older = meta.search.model_extra or {}  # folders from before ``resources`` was a mapping
    picked = {k: older[k] for k in keys if k in older}
    return readable(picked) if picked else ""


def single_task_baselines(meta: SearchMeta) -> tuple[dict[str, float], str]:
    """The search's single-task baselines as ``{metric key: value}`` plus a note.

    Accepts the flat form, the ``eval.baselines`` form ``{task: {metric: value}}`` and
    the search's cache form ``{hash: {"path", "metrics": {task: {metric: value}}}}``;
    several cache entries (baselines that differ per trial) give ``{}`` and a note, and
    the trials' own reported ``delta_m`` is used instead."""
    raw = meta.single_task_baselines
    if not raw:
        return {}, ""
    values = list(raw.values())
    if all(isinstance(v, (int, float)) for v in values):
        return {str(k): float(v) for k, v in raw.items()}, ""
    if all(isinstance(v, dict) and "metrics" in v for v in values):
        if len(values) > 1:
            return {}, f"{len(values)} single-task baseline settings: using the trials' reported delta_m"
        raw = values[0]["metrics"]
    try:
        return flatten_baselines(raw), ""
    except (AttributeError, TypeError, ValueError):
        return {}, "single_task_baselines in mtlsearch.json not understood; ignored"


def _fixed_from_meta(meta: SearchMeta) -> dict[str, Any]:
    """Config values the search pinned for every trial: its static config (base + fixed +
    profile + overrides, ``static_config``), overrides (``k=v`` strings or a mapping) and
    constant mappings of the space (``base``/``config``/``fixed``)."""
    fixed: dict[str, Any] = {}
    if meta.static_config:
        fixed.update(flatten(meta.static_config))
    space = meta.space or {}
    for key in ("base", "config", "fixed"):
        if isinstance(space.get(key), dict):
            fixed.update(flatten(space[key]))
    overrides = meta.overrides
    if isinstance(overrides, dict):
        fixed.update(overrides)
    elif isinstance(overrides, list):
        for item in overrides:
            try:
                key, value = parse_override(str(item))
            except UserError:
                continue
            fixed[key] = value
    return fixed


def _trial_reports(tdir: Path | None, st: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """A trial's reports, flattened: ``result.json``, else ``progress.csv``, else Tune's
    saved last result; and how many lines of ``result.json`` were unreadable."""
    rows: list[dict[str, Any]] = []
    bad = 0
    if tdir is not None:
        rows, bad = read_json_lines(tdir / RESULT_FILE)
        if not rows and (tdir / PROGRESS_FILE).is_file():
            try:
                rows = pd.read_csv(tdir / PROGRESS_FILE, on_bad_lines="skip").to_dict("records")
            except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError):
                rows = []
    if not rows and st.get("last_result"):
        rows = [st["last_result"]]
    return [_flat_result(r) for r in rows], bad


def _trial_status(tdir: Path | None, st: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, str]:
    """A trial's status (Tune's, else inferred from its files) and its error's summary."""
    error_path = tdir / TUNE_ERROR_FILE if tdir is not None and (tdir / TUNE_ERROR_FILE).is_file() else None
    status = st.get("status") or _infer_status(error_path is not None, rows, tdir)
    if status != ERROR:
        return status, ""
    if error_path is None:
        return status, "error (no error.txt found)"
    return status, error_summary(error_path.read_text(errors="replace"))


def _curves(tid: str, status: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """One curve row per report of a trial, and each numeric metric's values in order."""
    curves, series = [], {}
    for i, r in enumerate(rows):
        curve: dict[str, Any] = {"trial_id": tid, "status": status, "report": i}
        for key in ("training_iteration", "iteration", "time_total_s"):
            if _numeric(r.get(key)) is not None:
                curve[key] = _numeric(r[key])
        for key, value in r.items():
            num = _numeric(value)
            if key in BOOKKEEPING or num is None or isinstance(value, bool):
                continue
            series.setdefault(key, []).append(num)
            curve[key] = num
        curves.append(curve)
    return curves, series


def _scores(series: dict[str, list[float]], single: dict[str, float]) -> dict[str, float]:
    """``final_<key>`` (last finite value), ``best_<key>`` (for scored metrics) and
    ``delta_m`` (reported, else computed here once against the single-task baselines)."""
    out: dict[str, float] = {}
    for key, values in series.items():
        clean = [v for v in values if not math.isnan(v)]
        out[f"final_{key}"] = clean[-1] if clean else float("nan")
        d = direction_of(key)
        if d is not None:
            out[f"best_{key}"] = (max(clean) if d == "max" else min(clean)) if clean else float("nan")
    finals = {k[len("final_"):]: v for k, v in out.items() if k.startswith("final_")}
    if "delta_m" in finals:
        out["delta_m"] = finals["delta_m"]
    elif single:
        try:
            out["delta_m"] = delta_m(finals, single)
        except UserError:  # some task's score is missing (e.g. the trial failed)
            out["delta_m"] = float("nan")
    else:
        out["delta_m"] = float("nan")
    return out


def collect(trials_dir: str | Path) -> Search:
    """Read every trial of the search in ``trials_dir`` (finished, stopped, failed,
    running or interrupted).

    ``results`` columns: ``trial_id, trial_dir, status, error, <dotted config keys>
    (lists as readable strings), seed, final_<key>, best_<key>`` (best by direction,
    only for scored metrics), ``delta_m, iterations, reports, wall_time_s, resources,
    checkpoint``. Raises :class:`UserError` naming the folder when it is missing or holds
    no search.
    """
    path = Path(trials_dir)
    if not path.is_dir():
        raise UserError(f"search folder not found: {path}")
    notes: list[str] = []
    found = SearchMeta.read(path)
    meta = found or SearchMeta()
    state, state_note = read_tune_state(path)
    if state_note:
        notes.append(state_note)
    trial_dirs = sorted(p for p in path.iterdir() if _is_trial_dir(p))
    if found is None and not state and not trial_dirs:
        raise UserError(
            f"{path} is not a search folder (no {META_FILE}, Tune experiment state or trial folders)"
        )
    if found is None:
        notes.append(f"{META_FILE} missing: ablated keys inferred from the trials' params")
    name = meta.name or path.name

    by_logdir = {s.get("relative_logdir"): tid for tid, s in state.items() if s.get("relative_logdir")}
    entries: dict[str, dict[str, Any]] = {}
    for tdir in trial_dirs:
        _, parsed_id = parse_trial_dir(tdir.name)
        tid = by_logdir.get(tdir.name) or parsed_id or tdir.name
        entries[tid] = {"dir": tdir}
    for tid in state:
        entries.setdefault(tid, {"dir": None})

    results_rows: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    metric_keys: list[str] = []
    param_keys: list[str] = []
    single, single_note = single_task_baselines(meta)
    if single_note:
        notes.append(single_note)
    truncated = 0

    for tid, entry in entries.items():
        tdir: Path | None = entry["dir"]
        st = state.get(tid, {})
        params = _read_json(tdir / PARAMS_FILE) if tdir else None
        if not isinstance(params, dict):
            params = st.get("config") or {}
        params = _flat_params(params)
        rows, bad = _trial_reports(tdir, st)
        truncated += bad
        status, error = _trial_status(tdir, st, rows)

        row: dict[str, Any] = {
            "trial_id": tid,
            "trial_dir": tdir.name if tdir else "",
            "status": str(status),
            "error": error,
        }
        for key, value in params.items():
            if key not in param_keys:
                param_keys.append(key)
            row[key] = None if value is None else readable(value)
        seed = params.get(SEED_KEY)
        row["seed"] = (int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool)
                       and math.isfinite(seed) else None)

        curves, series = _curves(tid, str(status), rows)
        curve_rows.extend(curves)
        metric_keys.extend(k for k in series if k not in metric_keys)
        row.update(_scores(series, single))
        last = rows[-1] if rows else {}
        row["iterations"] = _numeric(last.get("iteration"))
        row["reports"] = len(rows)
        row["wall_time_s"] = _numeric(last.get("time_total_s"))
        row["resources"] = _resources(meta)
        ckpt = latest_checkpoint(path, tid, tdir)
        row["checkpoint"] = str(ckpt) if ckpt else ""
        results_rows.append(row)

    if truncated:
        notes.append(f"skipped {truncated} unreadable result line(s) (search interrupted mid-write?)")
    results = pd.DataFrame(results_rows)
    if results.empty:
        results = pd.DataFrame(columns=["trial_id", "trial_dir", "status", "error", "seed"])
    for key in param_keys:
        if key in results.columns:
            results[key] = results[key].astype(object).where(results[key].notna(), None)

    ablated = list(meta.ablated_keys or [])
    if not ablated:
        index_key = meta.search.index_key or "trial_index"
        ablated = [k for k in param_keys if k != index_key and results[k].nunique(dropna=True) > 1]
    fixed = _fixed_from_meta(meta)
    for key in param_keys:
        vals = results[key].dropna().unique()
        if len(vals) == 1 and key not in fixed:
            fixed[key] = vals[0]

    group_cols = [k for k in param_keys if k in results.columns]
    curves = pd.DataFrame(curve_rows)
    if not curves.empty:
        lookup = results.set_index("trial_id")[group_cols + ["seed"]]
        curves = curves.join(lookup, on="trial_id")
    return Search(
        path=path,
        name=name,
        meta=meta,
        results=results,
        curves=curves,
        ablated_keys=ablated,
        metric_keys=metric_keys,
        fixed=fixed,
        notes=notes,
        param_keys=[k for k in param_keys if k in results.columns],
    )


__all__ = [
    "BOOKKEEPING",
    "Search",
    "collect",
    "error_summary",
    "latest_checkpoint",
    "parse_trial_dir",
    "read_tune_state",
    "read_json_lines",
    "single_task_baselines",
]
