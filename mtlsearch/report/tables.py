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

The rows are grouped and aggregated by pandas (``groupby().agg`` of mean, std and
count) and rendered from a frame of formatted cells: Markdown by
:meth:`pandas.DataFrame.to_markdown` (tabulate), LaTeX by
:meth:`pandas.io.formats.style.Styler.to_latex` (booktabs rules: needs
``\\usepackage{booktabs}``), HTML by :meth:`~pandas.io.formats.style.Styler.to_html`
and CSV by :meth:`pandas.DataFrame.to_csv`. The trials table (status of every trial)
is one frame too, rendered as Markdown and HTML.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

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
    declared = search.meta.get("baseline")
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


def _cell(stats: pd.DataFrame, label: str, col: str) -> Cell:
    count = stats.loc[label, (col, "count")]
    return Cell(float(stats.loc[label, (col, "mean")]), float(stats.loc[label, (col, "std")]),
                0 if pd.isna(count) else int(count))


def build_table(search: Search, group_by: list[str] | None = None,
                baseline: str | None = None) -> AblationTable:
    """Aggregate ``search.results`` into an :class:`AblationTable`.

    ``group_by`` defaults to the search's ablated keys; ``baseline`` is a row label (or
    ``key=value`` pairs) and defaults to the search's declared baseline. Raises
    :class:`UserError` for a group key not in the results or a baseline naming no row.
    """
    res = search.results.reset_index(drop=True)
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
    label_of, row_keys = _group_rows(res, keys)
    ok = res["status"] != "ERROR"
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
        base = _aggregate(values[primary_cols], label_of, [base_label])
        base_means = {c: float(base.loc[base_label, (c, "mean")]) for c in primary_cols}
        per_trial = []
        for _, trial in values[primary_cols].iterrows():
            finals = {c: float(v) for c, v in trial.items() if not pd.isna(v)}
            try:
                per_trial.append(delta_m(finals, base_means))
            except UserError:  # a task's score is missing in this trial or the row
                per_trial.append(float("nan"))
        dm = pd.Series(per_trial, index=values.index, dtype=float)
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
    cells = {(lb, col): _cell(stats, lb, col) for lb in labels for col in columns}

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
        if base is None and col == "delta_m" and has_dm and single:
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

    n = {lb: int((ok & (label_of == lb)).sum()) for lb in labels}
    failed = {lb: int((~ok & (label_of == lb)).sum()) for lb in labels}
    unfinished = int(res["status"].isin(["RUNNING", "PENDING", "INTERRUPTED"]).sum()) if len(res) else 0
    if unfinished:
        notes.append(f"{unfinished} trial(s) not finished: their last report is used")
    if sum(failed.values()):
        notes.append(f"{sum(failed.values())} failed trial(s) not aggregated")
    trial_ids = {lb: list(res.loc[label_of == lb, "trial_id"]) for lb in labels}
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


def cell_frame(table: AblationTable, style: str = "md") -> pd.DataFrame:
    """The table as text in ``style`` (``md``, ``tex`` or ``html``): the row label
    (``(baseline)`` marked), one formatted cell per column, ``n`` and, when a trial
    failed (not in LaTeX), ``failed``; headers with direction arrows."""
    show_failed = style != "tex" and any(table.failed.values())
    head = [_label_header(table), *(_header(c, style) for c in table.columns), "n"]
    if style == "tex":
        head = [tex_escape(head[0]), *head[1:-1], "$n$"]
    elif style == "html":
        head = [html.escape(h) for h in head]
    rows = []
    for lb in table.labels:
        base = lb == table.baseline
        name = {"md": lb.replace("|", "\\|") + (" (baseline)" if base else ""),
                "tex": tex_escape(lb) + (" (baseline)" if base else ""),
                "html": html.escape(lb) + (" <i>(baseline)</i>" if base else "")}[style]
        cells = [format_cell(table, lb, c, style) for c in table.columns]
        if style == "tex":
            cells = [c.replace(MISSING, "--") for c in cells]
        rows.append([name, *cells, str(table.n[lb])] + ([str(table.failed[lb])] if show_failed else []))
    return pd.DataFrame(rows, columns=head + (["failed"] if show_failed else []), dtype=object)


def _markdown_table(frame: pd.DataFrame, align: list[str]) -> str:
    return frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)


def to_markdown(table: AblationTable) -> str:
    """A GitHub-flavoured Markdown table plus its legend."""
    frame = cell_frame(table, "md")
    text = _markdown_table(frame, ["left"] + ["right"] * (frame.shape[1] - 1))
    return text + "\n\n" + "".join(f"{line}  \n" for line in legend(table))


_TEX_ESCAPES = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
                "_": "\\_", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\^{}",
                "<": "\\textless{}", ">": "\\textgreater{}", "|": "\\textbar{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _tex_legend(line: str) -> str:
    return (tex_escape(line).replace(DAGGER, "$^\\dagger$").replace("±", "$\\pm$")
            .replace("−", "-").replace("Δm", "$\\Delta_m$"))


def to_latex(table: AblationTable, caption: str = "") -> str:
    """A booktabs ``table`` environment ready to paste (needs ``\\usepackage{booktabs}``):
    the caption (with the legend) above, a rule under the baseline row."""
    frame = cell_frame(table, "tex")
    legend_tex = " ".join(_tex_legend(line) for line in legend(table))
    styler = Styler(frame, uuid="ablation", cell_ids=False).hide(axis="index")
    styler.set_table_styles([{"selector": "small", "props": ":;"}])
    text = styler.to_latex(
        column_format="l" + "r" * (frame.shape[1] - 1), position="t", position_float="centering",
        hrules=True, environment="table",
        caption=f"{tex_escape(caption) + '. ' if caption else ''}{legend_tex}",
    )
    lines = text.splitlines()
    if table.baseline is not None and table.labels[:1] == [table.baseline] and len(table.labels) > 1:
        lines.insert(lines.index("\\midrule") + 2, "\\midrule")
    return "\n".join(["% requires \\usepackage{booktabs}", *lines]) + "\n"


def to_csv(table: AblationTable) -> str:
    """Machine-readable: one row per setting, ``<metric>_mean/_std/_n/_best/_within_noise``."""
    head = ["label", *table.group_keys, "baseline", "n", "failed"]
    for c in table.columns:
        head += [f"{c}_mean", f"{c}_std", f"{c}_n", f"{c}_best", f"{c}_within_noise"]
    rows = []
    for lb in table.labels:
        row: list[Any] = [lb, *(table.keys[lb].get(k, "") for k in table.group_keys),
                          lb == table.baseline, table.n[lb], table.failed[lb]]
        for col in table.columns:
            c = table.cells[(lb, col)]
            row += [c.mean, c.std, c.n, c.best, c.noise]
        rows.append(row)
    return pd.DataFrame(rows, columns=head, dtype=object).to_csv(index=False, lineterminator="\r\n")


def _styler_html(frame: pd.DataFrame, uuid: str, classes: pd.DataFrame) -> Styler:
    styler = Styler(frame, uuid=uuid, cell_ids=False).hide(axis="index")
    return styler.set_td_classes(classes).set_table_attributes(f"class='{uuid}'")


def to_html(table: AblationTable) -> str:
    """An HTML ``<table class='ablation'>`` (styles come from the page; the baseline
    row's cells have class ``baseline``) plus its legend."""
    frame = cell_frame(table, "html")
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    if table.baseline in table.labels:
        classes.iloc[table.labels.index(table.baseline)] = "baseline"
    legend_html = "<br>".join(html.escape(line) for line in legend(table))
    return _styler_html(frame, "ablation", classes).to_html() + f"<p class='legend'>{legend_html}</p>"


def trials_frame(search: Search) -> pd.DataFrame:
    """One row per trial: id, status, ablated keys' values, iterations, error line."""
    res = search.results
    rows = []
    for _, r in res.iterrows():
        vals = [readable(r.get(k)) if r.get(k) is not None else MISSING for k in search.ablated_keys]
        it = r.get("iterations")
        it_s = MISSING if it is None or pd.isna(it) else f"{it:g}"
        rows.append([str(r["trial_id"]), str(r["status"]), *vals, it_s, str(r.get("error") or "")])
    head = ["trial", "status", *search.ablated_keys, "iterations", "error"]
    return pd.DataFrame(rows, columns=head, dtype=object)


def trials_markdown(search: Search) -> str:
    """Status of every trial (with the error line of failed ones), as Markdown."""
    frame = trials_frame(search)
    frame = frame.map(lambda text: text.replace("|", "\\|"))
    align = ["left"] * (frame.shape[1] - 2) + ["right", "left"]
    return _markdown_table(frame, align) + "\n"


def trials_html(search: Search) -> str:
    """:func:`trials_markdown` as an HTML table; the status cell has class
    ``status-<STATUS>``, the error column is left-aligned."""
    frame = trials_frame(search)
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    classes.iloc[:, 1] = ["status-" + html.escape(s) for s in frame.iloc[:, 1]]
    styler = _styler_html(frame, "trials", classes).format(escape="html")
    styler.format_index(escape="html", axis=1)
    styler.set_table_styles([{"selector": f"td.col{frame.shape[1] - 1}", "props": "text-align: left;"}])
    return styler.to_html()


__all__ = [
    "AblationTable",
    "Cell",
    "build_table",
    "cell_frame",
    "format_cell",
    "table_columns",
    "tex_escape",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
    "trials_frame",
    "trials_html",
    "trials_markdown",
]
