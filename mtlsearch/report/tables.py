"""Ablation tables: seeds aggregated per setting with confidence intervals, every row
tested against the baseline row (Holm-corrected), delta_m against a baseline, best in
bold (published rows side by side: :mod:`mtlsearch.report.compare`; the statistics:
:mod:`mtlsearch.report.stats`).

Aggregation rules (also printed under every table):

* one row per distinct combination of the group keys (``train.seed`` never groups);
  the value of a trial is its last report (``final_<metric>``); failed trials are
  counted but not aggregated; unfinished trials contribute their last report;
* cells are ``mean ± std`` (sample std, ddof=1) over the row's trials, ``n`` trials; the
  95% interval of the mean is ``mean ± t(0.975, n - 1) · std / √n``;
* ``delta_m`` is computed per trial (by :func:`mtlsearch.metrics.delta_m`, one term per
  task) against the baseline row's *mean* of each primary task metric; without a row
  baseline it is the trial's stored delta_m vs the single-task baselines; then aggregated;
* every other row is compared with the baseline row on every column (``delta_m_st``
  excepted: it restates ``delta_m``'s comparison): the difference of the means with its
  95% interval and a two-sided t-test, paired by seed when both rows hold the same
  seeds once each, else Welch's; without a baseline row, ``delta_m`` (vs the single-task
  baselines, fixed numbers) is tested against 0 (one-sample). Holm's step-down
  correction runs over all tests of the table; a cell whose adjusted p < 0.05 is marked
  ``*``, the others are not. Each comparison also gives the seeds a test would need for
  80% power at the observed difference and spread (noncentral t). Comparisons without
  two seeds on a side, or without any spread, are shown but not tested.

The old "within noise" mark (``|mean - baseline mean| < max(std)``) is gone: it compared
a difference with the spread of single trials whatever the number of seeds, so it
neither grew more sensitive with more seeds nor said how many would settle the
question; the interval, the corrected test and the seeds needed say both.

The rows are grouped and aggregated by pandas (``groupby().agg`` of mean, std and
count); :mod:`mtlsearch.report.render` writes the tables as Markdown, LaTeX, CSV and HTML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtlsearch.errors import UserError
from mtlsearch.layout import ERROR, UNFINISHED
from mtlsearch.metrics import delta_m
from mtlsearch.report.collect import SEED_KEY, Search, single_task_baselines
from mtlsearch.report.papers import (
    direction_of,
    primary_metrics,
    values_equal,
)
from mtlsearch.report.stats import (
    ALPHA,
    Comparison,
    adjust,
    compare,
    one_sample,
    t_interval,
)
from mtlsearch.tasks import METRIC_PREFIXES, TASKS

MISSING = "—"
SIG = "*"
"""Mark of a cell that differs from the baseline row (Holm-adjusted p < ALPHA)."""
UNTESTED_COLUMNS = ("delta_m_st",)
"""Columns shown with their intervals but not tested (delta_m_st restates delta_m's test)."""


@dataclass
class Cell:
    """Aggregate of one metric over the trials of one row."""

    mean: float
    std: float
    n: int
    best: bool = False
    lo: float = math.nan
    hi: float = math.nan
    """The 95% t interval of the mean (NaN below 2 trials)."""
    vs: Comparison | None = None
    """Against the baseline row (or, delta_m without one, against 0); None when not compared."""

    @property
    def significant(self) -> bool:
        return self.vs is not None and self.vs.significant


@dataclass
class AblationTable:
    group_keys: list[str]
    labels: list[str]
    """Row labels, baseline first."""
    keys: dict[str, dict[str, str]]
    """Row label -> {group key: value}."""
    columns: list[str]
    """Metric keys (``delta_m`` last when present)."""
    cells: dict[tuple[str, str], Cell]
    n: dict[str, int]
    """Trials aggregated per row."""
    failed: dict[str, int]
    trial_ids: dict[str, list[str]]
    baseline: str | None = None
    baseline_note: str = ""
    notes: list[str] = field(default_factory=list)
    trial_delta_m: dict[str, float] = field(default_factory=dict)
    """Trial id -> its delta_m as aggregated in the table (failed trials absent)."""
    tests: int = 0
    """Size of the Holm family: the comparisons of this table that were tested."""

    def cell(self, label: str, column: str) -> Cell | None:
        return self.cells.get((label, column))


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _row_label(keys: list[str], values: tuple[str, ...]) -> str:
    if not keys:
        return "all"
    if len(keys) == 1:
        return values[0]
    shorts = [k.rsplit(".", 1)[-1] for k in keys]
    names = shorts if len(set(shorts)) == len(shorts) else keys
    return ", ".join(f"{n}={v}" for n, v in zip(names, values))


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def table_columns(search: Search) -> list[str]:
    """Primary metric of every task (heads first, then render_/avg_/mv_ variants)
    that at least one trial reported."""
    res = search.results
    primaries = primary_metrics()
    cols = []
    for prefix in ("", *METRIC_PREFIXES):
        for task in search.tasks:
            key = prefix + primaries.get(task, "")
            col = f"final_{key}"
            if task in primaries and col in res.columns and res[col].notna().any():
                cols.append(key)
    if not cols:
        cols = [k for k in search.metric_keys if direction_of(k) and k != "delta_m"]
    return cols


def _parse_selector(text: str) -> dict[str, str] | None:
    """``"key=value, key2=value2"`` -> mapping, or None when ``text`` is a plain label."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all("=" in p for p in parts):
        return None
    return dict(p.split("=", 1) for p in parts)


def _match_selector(table_keys: dict[str, dict[str, str]], selector: dict[str, Any],
                    all_tasks: list[str]) -> list[str]:
    out = []
    for label, keys in table_keys.items():
        ok = True
        for key, wanted in selector.items():
            match = [k for k in keys if k == key or k.rsplit(".", 1)[-1] == key]
            if len(match) != 1 or not values_equal(keys[match[0]], wanted, all_tasks):
                ok = False
                break
        if ok:
            out.append(label)
    return out


def _group_rows(res: pd.DataFrame, keys: list[str]) -> tuple[pd.Series, dict[str, dict[str, str]]]:
    """Row label of every trial (``res``'s index) and the group-key values of every row,
    rows sorted by their values (numbers numerically); a missing value groups as ``—``."""
    if keys:
        text = res[keys].astype(object).where(res[keys].notna(), MISSING).astype(str)
    else:
        text = pd.DataFrame({"_": ""}, index=res.index)
    text.columns = range(text.shape[1])  # a key named twice still groups by position
    groups = {combo: frame.index for combo, frame in text.groupby(list(text.columns), sort=False)}
    label_of = pd.Series("", index=res.index, dtype=object)
    row_keys: dict[str, dict[str, str]] = {}
    for combo in sorted(groups, key=lambda c: [_sort_key(v) for v in c] if keys else []):
        values = tuple(combo) if keys else ()
        label = _row_label(keys, values)
        label_of[groups[combo]] = label
        row_keys[label] = dict(zip(keys, values))
    return label_of, row_keys


def _find_baseline(search: Search, baseline: str | None, row_keys: dict[str, dict[str, str]],
                   notes: list[str]) -> tuple[str | None, str]:
    """The baseline row (``--baseline`` label or ``key=value`` pairs, else the space's
    declared baseline) and the note saying which it is."""
    if baseline is not None:
        if baseline in row_keys:
            return baseline, f"Δm vs row '{baseline}' (--baseline)"
        selector = _parse_selector(baseline)
        found = _match_selector(row_keys, selector, search.tasks) if selector else []
        if len(found) != 1:
            raise UserError(f"--baseline {baseline!r} names no row (rows: {', '.join(row_keys)})")
        return found[0], f"Δm vs row '{found[0]}' (--baseline)"
    declared = search.meta.baseline
    found = []
    if isinstance(declared, dict) and declared:
        found = _match_selector(row_keys, declared, search.tasks)
    elif isinstance(declared, str) and declared:
        found = [declared] if declared in row_keys else []
    if len(found) == 1:
        return found[0], f"Δm vs row '{found[0]}' (the space's baseline)"
    if declared:
        notes.append(f"declared baseline {declared!r} matches {len(found)} rows; not used")
    return None, ""


def _aggregate(values: pd.DataFrame, label_of: pd.Series, labels: list[str]) -> pd.DataFrame:
    """Per row label and column: ``mean``, ``std`` (ddof=1) and ``count`` of the values
    (NaN skipped); rows without a value have count 0."""
    if values.columns.empty:
        return pd.DataFrame(index=labels)
    stats = values.groupby(label_of[values.index]).agg(["mean", "std", "count"])
    return stats.reindex(labels)


def _cells(stats: pd.DataFrame, labels: list[str], columns: list[str]) -> dict[tuple[str, str], Cell]:
    """One :class:`Cell` per (row, column) of ``_aggregate``'s frame, with its t interval."""
    cells = {}
    for col in columns:
        means, stds, counts = (stats[(col, k)].to_dict() for k in ("mean", "std", "count"))
        for lb in labels:
            n = 0 if pd.isna(counts[lb]) else int(counts[lb])
            mean, std = float(means[lb]), float(stds[lb])
            lo, hi = t_interval(mean, std / math.sqrt(n), n - 1) if n >= 2 else (math.nan, math.nan)
            cells[(lb, col)] = Cell(mean, std, n, lo=lo, hi=hi)
    return cells


def _seed(value: Any) -> Any:
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    return int(value) if isinstance(value, (int, float)) else value


def _compare_rows(values: pd.DataFrame, seeds: pd.Series, label_of: pd.Series, labels: list[str],
                  columns: list[str], base_label: str | None,
                  cells: dict[tuple[str, str], Cell]) -> int:
    """Every non-baseline row against the baseline row on every tested column (or,
    without a baseline row, delta_m against 0), Holm over all of them; returns the
    family size."""
    row_of = label_of[values.index].to_numpy()
    rows = pd.Series(range(len(row_of))).groupby(row_of, sort=False).indices
    none = np.zeros(0, dtype=int)
    seed_list = [_seed(x) for x in seeds[values.index]]
    found: list[Comparison] = []
    for col in columns:
        if col in UNTESTED_COLUMNS:
            continue
        arr = values[col].to_numpy(dtype=float)
        base = rows.get(base_label, none) if base_label is not None else none
        base_vals = arr[base]
        if base_label is not None and np.isnan(base_vals).all():
            continue
        for lb in labels:
            if lb == base_label or cells[(lb, col)].n == 0:
                continue
            mine = rows.get(lb, none)
            if base_label is not None:
                vs = compare(arr[mine], [seed_list[i] for i in mine], base_vals, [seed_list[i] for i in base])
            elif col == "delta_m":
                vs = one_sample(arr[mine], 0.0)
            else:
                continue
            cells[(lb, col)].vs = vs
            found.append(vs)
    return adjust(found, ALPHA)


def _group_keys(search: Search, res: pd.DataFrame, group_by: list[str] | None, notes: list[str]) -> list[str]:
    """The keys rows are grouped by: ``--group-by`` (each must be a results column), else
    the search's ablated keys that have values; never the seed."""
    if group_by:
        for key in group_by:
            if key not in res.columns:
                known = [c for c in res.columns if "." in c]
                raise UserError(
                    f"--group-by {key}: not a config key of these results "
                    f"(known: {', '.join(known) or 'none'})"
                )
        return [k for k in group_by if k != SEED_KEY]
    keys = []
    for k in search.ablated_keys:
        if k == SEED_KEY:
            continue
        if k in res.columns:
            keys.append(k)
        else:
            notes.append(f"ablated key {k} has no value in any trial; not grouped")
    return keys


def _row_delta_m(primary: pd.DataFrame, label_of: pd.Series, base_label: str) -> pd.Series:
    """Each trial's delta_m against the baseline row's mean of every primary metric."""
    base = _aggregate(primary, label_of, [base_label])
    base_means = {c: float(base.loc[base_label, (c, "mean")]) for c in primary.columns}
    per_trial = []
    for _, trial in primary.iterrows():
        finals = {c: float(v) for c, v in trial.items() if not pd.isna(v)}
        try:
            per_trial.append(delta_m(finals, base_means))
        except UserError:  # a task's score is missing in this trial or the row
            per_trial.append(float("nan"))
    return pd.Series(per_trial, index=primary.index, dtype=float)


def _mark_best(cells: dict[tuple[str, str], Cell], labels: list[str], columns: list[str]) -> None:
    """Mark, per scored column with two rows or more, the rows whose mean is the best."""
    for col in columns:
        d = direction_of(col)
        means = {lb: cells[(lb, col)].mean for lb in labels if cells[(lb, col)].n > 0}
        if d is not None and len(means) >= 2:
            best = max(means.values()) if d == "max" else min(means.values())
            for lb, m in means.items():
                if math.isclose(m, best, rel_tol=1e-9, abs_tol=1e-12):
                    cells[(lb, col)].best = True


def build_table(search: Search, group_by: list[str] | None = None,
                baseline: str | None = None) -> AblationTable:
    """Aggregate ``search.results`` into an :class:`AblationTable`.

    ``group_by`` defaults to the search's ablated keys; ``baseline`` is a row label (or
    ``key=value`` pairs) and defaults to the search's declared baseline. Raises
    :class:`UserError` for a group key not in the results or a baseline naming no row.
    """
    res = search.results.reset_index(drop=True)
    notes: list[str] = []
    keys = _group_keys(search, res, group_by, notes)
    columns = table_columns(search)
    label_of, row_keys = _group_rows(res, keys)
    ok = res["status"] != ERROR
    used = res[ok]
    base_label, base_note = _find_baseline(search, baseline, row_keys, notes)
    labels = list(row_keys)
    if base_label is not None:
        labels = [base_label] + [lb for lb in labels if lb != base_label]
    single, _ = single_task_baselines(search.meta)

    # One value per (used trial, column), aggregated per row -------------------------
    values = pd.DataFrame({
        col: used[f"final_{col}"].astype(float) if f"final_{col}" in used.columns
        else pd.Series(float("nan"), index=used.index) for col in columns
    }, index=used.index)
    stored = used["delta_m"].astype(float) if "delta_m" in used.columns else None
    has_stored = stored is not None and bool(stored.notna().any())
    primary_cols = [
        c for c in columns if not c.startswith(METRIC_PREFIXES) and c.split("_")[0] in TASKS
    ]
    dm: pd.Series | None = None
    if base_label is not None and primary_cols:
        dm = _row_delta_m(values[primary_cols], label_of, base_label)
    elif has_stored:
        dm = stored
        base_note = base_note or "Δm as reported by the trials"
    if base_label is None and single:
        # The trials' delta_m vs these baselines is stored (reported by the worker, or
        # computed once by collect): read it, never recompute it here.
        base_note = "Δm vs the single-task baselines: " + ", ".join(
            f"{k} {float(v):g}" for k, v in single.items()
        )
    trial_dm: dict[str, float] = {}
    has_dm = dm is not None
    if dm is not None:
        values["delta_m"] = dm
        for lb in row_keys:  # row by row, in the rows' sorted order
            mine = label_of[used.index] == lb
            trial_dm.update(zip(used.loc[mine, "trial_id"].astype(str), dm[mine]))
    if base_label is not None and has_stored:
        # The trials' own delta_m is against the single-task baselines, as the papers'
        # delta_m is: keep it beside the row-baseline delta_m for the paper comparison.
        values["delta_m_st"] = stored
    if has_dm:
        columns = [*columns, "delta_m"]
    if "delta_m_st" in values.columns:
        columns = [*columns, "delta_m_st"]
    stats = _aggregate(values[columns], label_of, labels)
    cells = _cells(stats, labels, columns)

    # Best, then every row against the baseline ------------------------------------
    _mark_best(cells, labels, columns)
    seeds = used["seed"] if "seed" in used.columns else pd.Series(None, index=used.index, dtype=object)
    tests = _compare_rows(values, seeds, label_of, labels, columns, base_label, cells)

    ok_count = ok.groupby(label_of).sum()
    all_count = label_of.value_counts()
    n = {lb: int(ok_count.get(lb, 0)) for lb in labels}
    failed = {lb: int(all_count.get(lb, 0)) - n[lb] for lb in labels}
    unfinished = int(res["status"].isin(list(UNFINISHED)).sum()) if len(res) else 0
    if unfinished:
        notes.append(f"{unfinished} trial(s) not finished: their last report is used")
    if sum(failed.values()):
        notes.append(f"{sum(failed.values())} failed trial(s) not aggregated")
    by_label = res["trial_id"].groupby(label_of, sort=False).agg(list)
    trial_ids = {lb: list(by_label.get(lb, [])) for lb in labels}
    return AblationTable(
        group_keys=keys,
        labels=labels,
        keys=row_keys,
        columns=columns,
        cells=cells,
        n=n,
        failed=failed,
        trial_ids=trial_ids,
        baseline=base_label,
        baseline_note=base_note,
        notes=notes,
        trial_delta_m=trial_dm,
        tests=tests,
    )


__all__ = ["MISSING", "SIG", "UNTESTED_COLUMNS", "AblationTable", "Cell", "build_table", "table_columns"]
