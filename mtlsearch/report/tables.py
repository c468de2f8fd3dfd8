"""Ablation tables: seeds aggregated per setting, delta_m against a baseline, best in
bold, differences within the seeds' noise marked (published rows side by side:
:mod:`mtlsearch.report.compare`).

Aggregation rules (also printed under every table):

* one row per distinct combination of the group keys (``train.seed`` never groups);
  the value of a trial is its last report (``final_<metric>``); failed trials are
  counted but not aggregated; unfinished trials contribute their last report;
* cells are ``mean ± std`` (sample std, ddof=1) over the row's trials, ``n`` trials;
* ``delta_m`` is computed per trial (by :func:`mtlsearch.metrics.delta_m`, one term per
  task) against the baseline row's *mean* of each primary task metric; without a row
  baseline it is the trial's stored delta_m vs the single-task baselines; then aggregated;
* a cell is marked within noise (†) when ``|mean - baseline mean| < max(std,
  baseline std)``: the difference is smaller than the seed-to-seed spread. Cells with
  no spread estimate on either side (one seed each) are not judged.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtlsearch.errors import UserError
from mtlsearch.metrics import delta_m
from mtlsearch.report.collect import SEED_KEY, Search, single_task_baselines
from mtlsearch.report.papers import (
    arrow,
    direction_of,
    primary_metrics,
    readable,
    values_equal,
)
from mtlsearch.tasks import METRIC_PREFIXES, TASKS

MISSING = "—"
DAGGER = "†"


@dataclass
class Cell:
    """Aggregate of one metric over the trials of one row."""

    mean: float
    std: float
    n: int
    best: bool = False
    noise: bool = False
    """Within the seeds' noise of the baseline row."""


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


def _stats(values: list[float]) -> Cell:
    arr = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return Cell(float("nan"), float("nan"), 0)
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return Cell(float(arr.mean()), std, int(arr.size))


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


def build_table(search: Search, group_by: list[str] | None = None,
                baseline: str | None = None) -> AblationTable:
    """Aggregate ``search.results`` into an :class:`AblationTable`.

    ``group_by`` defaults to the search's ablated keys; ``baseline`` is a row label (or
    ``key=value`` pairs) and defaults to the search's declared baseline. Raises
    :class:`UserError` for a group key not in the results or a baseline naming no row.
    """
    res = search.results
    notes: list[str] = []
    if group_by:
        for key in group_by:
            if key not in res.columns:
                known = [c for c in res.columns if "." in c]
                raise UserError(
                    f"--group-by {key}: not a config key of these results "
                    f"(known: {', '.join(known) or 'none'})"
                )
        keys = [k for k in group_by if k != SEED_KEY]
    else:
        keys = []
        for k in search.ablated_keys:
            if k == SEED_KEY:
                continue
            if k in res.columns:
                keys.append(k)
            else:
                notes.append(f"ablated key {k} has no value in any trial; not grouped")
    columns = table_columns(search)
    rows: dict[str, pd.DataFrame] = {}
    row_keys: dict[str, dict[str, str]] = {}
    values = res[keys].astype(object).where(res[keys].notna(), MISSING) if keys else None
    combos: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(res)):
        combo = tuple(str(values.iloc[i][k]) for k in keys) if keys else ()
        combos.setdefault(combo, []).append(i)
    for combo in sorted(combos, key=lambda c: [_sort_key(v) for v in c]):
        label = _row_label(keys, combo)
        rows[label] = res.iloc[combos[combo]]
        row_keys[label] = dict(zip(keys, combo))

    ok_mask = {label: (frame["status"] != "ERROR").to_numpy() for label, frame in rows.items()}
    used = {label: frame[ok_mask[label]] for label, frame in rows.items()}
    all_tasks = search.tasks

    # Baseline ------------------------------------------------------------------
    base_label: str | None = None
    base_note = ""
    if baseline is not None:
        if baseline in rows:
            base_label = baseline
        else:
            selector = _parse_selector(baseline)
            found = _match_selector(row_keys, selector, all_tasks) if selector else []
            if len(found) != 1:
                raise UserError(
                    f"--baseline {baseline!r} names no row (rows: {', '.join(rows)})"
                )
            base_label = found[0]
        base_note = f"Δm vs row '{base_label}' (--baseline)"
    else:
        declared = search.meta.get("baseline")
        found = []
        if isinstance(declared, dict) and declared:
            found = _match_selector(row_keys, declared, all_tasks)
        elif isinstance(declared, str) and declared:
            found = [declared] if declared in rows else []
        if len(found) == 1:
            base_label = found[0]
            base_note = f"Δm vs row '{base_label}' (the space's baseline)"
        elif declared:
            notes.append(f"declared baseline {declared!r} matches {len(found)} rows; not used")
    single, _ = single_task_baselines(search.meta)

    primary_cols = [
        c for c in columns if not c.startswith(METRIC_PREFIXES) and c.split("_")[0] in TASKS
    ]
    base_means: dict[str, float] = {}
    if base_label is not None:
        frame = used[base_label]
        for col in primary_cols:
            base_means[col] = _stats(list(frame.get(f"final_{col}", pd.Series(dtype=float)))).mean
    elif single:
        # The trials' delta_m vs these baselines is stored (reported by the worker, or
        # computed once by collect): read it, never recompute it here.
        base_note = "Δm vs the single-task baselines: " + ", ".join(
            f"{k} {float(v):g}" for k, v in single.items()
        )

    # Cells ---------------------------------------------------------------------
    cells: dict[tuple[str, str], Cell] = {}
    trial_dm: dict[str, float] = {}
    has_dm = False
    for label, frame in used.items():
        for col in columns:
            series = frame.get(f"final_{col}")
            cells[(label, col)] = _stats(list(series) if series is not None else [])
        if base_means:
            per_trial = []
            for _, trial in frame.iterrows():
                finals = {c: trial.get(f"final_{c}") for c in primary_cols}
                finals = {c: float(v) for c, v in finals.items() if v is not None and not pd.isna(v)}
                try:
                    per_trial.append(delta_m(finals, base_means))
                except UserError:  # a task's score is missing in this trial or the row
                    per_trial.append(float("nan"))
                trial_dm[str(trial["trial_id"])] = per_trial[-1]
            cells[(label, "delta_m")] = _stats(per_trial)
            has_dm = True
        elif "delta_m" in frame.columns and frame["delta_m"].notna().any():
            cells[(label, "delta_m")] = _stats(list(frame["delta_m"]))
            trial_dm.update(zip(frame["trial_id"].astype(str), frame["delta_m"].astype(float)))
            has_dm = True
            base_note = base_note or "Δm as reported by the trials"
    if has_dm:
        columns = [*columns, "delta_m"]
    if base_label is not None and any(
        "delta_m" in f.columns and f["delta_m"].notna().any() for f in used.values()
    ):
        # The trials' own delta_m is against the single-task baselines, as the papers'
        # delta_m is: keep it beside the row-baseline delta_m for the paper comparison.
        for label, frame in used.items():
            values = list(frame["delta_m"]) if "delta_m" in frame.columns else []
            cells[(label, "delta_m_st")] = _stats(values)
        columns = [*columns, "delta_m_st"]

    labels = list(rows)
    if base_label is not None:
        labels = [base_label] + [lb for lb in labels if lb != base_label]

    # Best and noise ------------------------------------------------------------
    for col in columns:
        d = direction_of(col)
        means = {lb: cells[(lb, col)].mean for lb in labels if cells[(lb, col)].n > 0}
        if d is not None and len(means) >= 2:
            best = max(means.values()) if d == "max" else min(means.values())
            for lb, m in means.items():
                if math.isclose(m, best, rel_tol=1e-9, abs_tol=1e-12):
                    cells[(lb, col)].best = True
        base = cells.get((base_label, col)) if base_label is not None else None
        if base is None and col == "delta_m" and has_dm and (base_means or single):
            base = Cell(0.0, float("nan"), 0)
        if base is None or base.n == 0 and col != "delta_m":
            continue
        for lb in labels:
            if lb == base_label:
                continue
            c = cells[(lb, col)]
            spreads = [s for s in (c.std, base.std) if not math.isnan(s)]
            if c.n == 0 or not spreads:
                continue
            c.noise = abs(c.mean - base.mean) < max(spreads)

    n = {lb: len(used[lb]) for lb in labels}
    failed = {lb: int((~ok_mask[lb]).sum()) for lb in labels}
    unfinished = int(res["status"].isin(["RUNNING", "PENDING", "INTERRUPTED"]).sum()) if len(res) else 0
    if unfinished:
        notes.append(f"{unfinished} trial(s) not finished: their last report is used")
    if sum(failed.values()):
        notes.append(f"{sum(failed.values())} failed trial(s) not aggregated")
    trial_ids = {lb: list(rows[lb]["trial_id"]) for lb in labels}
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
    )


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def decimals(table: AblationTable, col: str) -> int:
    """4 decimals for columns whose values are below 1 (depth RMSE), else 2."""
    means = [abs(c.mean) for (lb, cl), c in table.cells.items() if cl == col and c.n]
    if col != "delta_m" and means and max(means) < 1.0:
        return 4
    return 2


def _num(value: float, digits: int) -> str:
    if value is None or math.isnan(value):
        return MISSING
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_cell(table: AblationTable, label: str, col: str, style: str = "md") -> str:
    """One cell as text: ``mean ± std``, bold when best, † when within noise."""
    c = table.cells.get((label, col))
    if c is None or c.n == 0:
        return MISSING
    dig = decimals(table, col)
    pm = " $\\pm$ " if style == "tex" else " ± "
    text = _num(c.mean, dig)
    if not math.isnan(c.std):
        text += pm + _num(c.std, dig)
    if c.n != table.n.get(label, c.n):
        text += f" (n={c.n})"
    if c.best:
        text = {"md": f"**{text}**", "tex": f"\\textbf{{{text}}}", "html": f"<b>{text}</b>"}.get(style, text)
    if c.noise:
        text += {"tex": "$^\\dagger$", "html": f"<sup>{DAGGER}</sup>"}.get(style, DAGGER)
    return text


def _header(col: str, style: str) -> str:
    names = {"delta_m": "Δm (%)", "delta_m_st": "Δm vs single-task (%)"}
    name = names.get(col, col)
    if style == "tex":
        tex = {"delta_m": "$\\Delta_m$ (\\%)", "delta_m_st": "$\\Delta_m$ vs single-task (\\%)"}
        name = tex.get(col, tex_escape(col))
        return f"{name} {arrow(col, 'latex')}".strip()
    return f"{name} {arrow(col)}".strip()


def _label_header(table: AblationTable) -> str:
    return " / ".join(table.group_keys) or "setting"


def legend(table: AblationTable) -> list[str]:
    """The notes printed under a table: aggregation, best, noise rule, baseline."""
    lines = [
        "Mean ± std over seeds (n trials per row; value of a trial = its last report). "
        "Best per column in bold.",
        f"{DAGGER} within noise: |mean − baseline mean| < max(std, baseline std).",
    ]
    if table.baseline_note:
        lines.append(table.baseline_note + "; computed per trial, then averaged.")
    if all(n <= 1 for n in table.n.values()):
        lines.append("One trial per row: no seed spread, so nothing can be judged within noise.")
    lines.extend(table.notes)
    return lines


def to_markdown(table: AblationTable) -> str:
    """A GitHub-flavoured Markdown table plus its legend."""
    show_failed = any(table.failed.values())
    head = [_label_header(table), *(_header(c, "md") for c in table.columns), "n"]
    if show_failed:
        head.append("failed")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for lb in table.labels:
        name = f"{lb} (baseline)" if lb == table.baseline else lb
        row = [name.replace("|", "\\|"), *(format_cell(table, lb, c, "md") for c in table.columns)]
        row.append(str(table.n[lb]))
        if show_failed:
            row.append(str(table.failed[lb]))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.extend(f"{line}  " for line in legend(table))
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
                "_": "\\_", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\^{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(table: AblationTable, caption: str = "") -> str:
    """A booktabs ``table`` environment ready to paste (needs ``\\usepackage{booktabs}``)."""
    cols = table.columns
    head = [tex_escape(_label_header(table)), *(_header(c, "tex") for c in cols), "$n$"]
    out = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\begin{{tabular}}{{l{'r' * (len(cols) + 1)}}}",
        "\\toprule",
        " & ".join(head) + " \\\\",
        "\\midrule",
    ]
    for i, lb in enumerate(table.labels):
        name = tex_escape(lb) + (" (baseline)" if lb == table.baseline else "")
        cells = [format_cell(table, lb, c, "tex") for c in cols]
        cells = [c.replace(MISSING, "--") for c in cells]
        out.append(" & ".join([name, *cells, str(table.n[lb])]) + " \\\\")
        if lb == table.baseline and i == 0 and len(table.labels) > 1:
            out.append("\\midrule")
    out += ["\\bottomrule", "\\end{tabular}"]
    legend_tex = " ".join(tex_escape(line).replace(DAGGER, "$^\\dagger$").replace("±", "$\\pm$")
                          .replace("−", "-").replace("Δm", "$\\Delta_m$") for line in legend(table))
    out.append(f"\\caption{{{tex_escape(caption) + '. ' if caption else ''}{legend_tex}}}")
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def to_csv(table: AblationTable) -> str:
    """Machine-readable: one row per setting, ``<metric>_mean/_std/_n/_best/_noise``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    head = ["label", *table.group_keys, "baseline", "n", "failed"]
    for c in table.columns:
        head += [f"{c}_mean", f"{c}_std", f"{c}_n", f"{c}_best", f"{c}_within_noise"]
    writer.writerow(head)
    for lb in table.labels:
        row: list[Any] = [lb, *(table.keys[lb].get(k, "") for k in table.group_keys),
                          lb == table.baseline, table.n[lb], table.failed[lb]]
        for col in table.columns:
            c = table.cells[(lb, col)]
            row += [_csv_num(c.mean), _csv_num(c.std), c.n, c.best, c.noise]
        writer.writerow(row)
    return buf.getvalue()


def _csv_num(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def to_html(table: AblationTable) -> str:
    """An HTML ``<table>`` (styles come from the page) plus its legend."""
    esc = html.escape
    show_failed = any(table.failed.values())
    head = [_label_header(table), *(_header(c, "html") for c in table.columns), "n"]
    if show_failed:
        head.append("failed")
    out = ["<table class='ablation'>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for lb in table.labels:
        cls = " class='baseline'" if lb == table.baseline else ""
        name = esc(lb) + (" <i>(baseline)</i>" if lb == table.baseline else "")
        cells = "".join(f"<td>{format_cell(table, lb, c, 'html')}</td>" for c in table.columns)
        failed = f"<td>{table.failed[lb]}</td>" if show_failed else ""
        out.append(f"<tr{cls}><td>{name}</td>{cells}<td>{table.n[lb]}</td>{failed}</tr>")
    out.append("</tbody></table>")
    out.append("<p class='legend'>" + "<br>".join(esc(line) for line in legend(table)) + "</p>")
    return "\n".join(out)


def trials_markdown(search: Search) -> str:
    """Status of every trial (with the error line of failed ones)."""
    res = search.results
    lines = ["| trial | status | " + " | ".join(search.ablated_keys) + " | iterations | error |",
             "|---|---|" + "---|" * len(search.ablated_keys) + "---:|---|"]
    for _, r in res.iterrows():
        vals = [readable(r.get(k)) if r.get(k) is not None else MISSING for k in search.ablated_keys]
        it = r.get("iterations")
        it_s = MISSING if it is None or pd.isna(it) else f"{it:g}"
        err = str(r.get("error") or "").replace("|", "\\|")
        lines.append(f"| {r['trial_id']} | {r['status']} | " + " | ".join(vals) + f" | {it_s} | {err} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "AblationTable",
    "Cell",
    "build_table",
    "format_cell",
    "table_columns",
    "tex_escape",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
    "trials_markdown",
]
