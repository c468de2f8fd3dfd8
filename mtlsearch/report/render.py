"""Ablation tables rendered: Markdown, LaTeX, CSV and HTML of an :class:`AblationTable`
(built by :mod:`mtlsearch.report.tables`) and of the trials table.

Contract: each format has the main table (``mean ± std`` cells, best in bold, ``*`` where
the Holm-adjusted test against the baseline row is significant) and the statistics table
(:func:`stats_frame`: one line per row and column with the interval, the difference to the
baseline, the test, p, Holm's p and the seeds a test would need); the CSV holds every
number as its own column. Markdown by :meth:`pandas.DataFrame.to_markdown` (tabulate),
LaTeX by :meth:`pandas.io.formats.style.Styler.to_latex` (booktabs rules: needs
``\\usepackage{booktabs}``), HTML by :meth:`~pandas.io.formats.style.Styler.to_html`, CSV
by :meth:`pandas.DataFrame.to_csv`.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

from mtlsearch.report.collect import Search
from mtlsearch.report.papers import (
    arrow,
    readable,
)
from mtlsearch.report.stats import (
    ALPHA,
    LEVEL,
    N_MAX,
    POWER,
    Comparison,
)
from mtlsearch.report.tables import (
    MISSING,
    SIG,
    UNTESTED_COLUMNS,
    AblationTable,
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


def _mark(style: str) -> str:
    return {"md": "\\" + SIG, "tex": f"$^{{{SIG}}}$", "html": f"<sup>{SIG}</sup>"}.get(style, SIG)


def format_cell(table: AblationTable, label: str, col: str, style: str = "md") -> str:
    """One cell as text: ``mean ± std``, bold when best, ``*`` when it differs from the
    baseline row (Holm-adjusted)."""
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
    if c.significant:
        text += _mark(style)
    return text


def header(col: str, style: str) -> str:
    """A column's heading in ``style`` (md, tex, html): readable name and direction arrow."""
    names = {"delta_m": "Δm (%)", "delta_m_st": "Δm vs single-task (%)"}
    name = names.get(col, col)
    if style == "tex":
        tex = {"delta_m": "$\\Delta_m$ (\\%)", "delta_m_st": "$\\Delta_m$ vs single-task (\\%)"}
        name = tex.get(col, tex_escape(col))
        return f"{name} {arrow(col, 'latex')}".strip()
    return f"{name} {arrow(col)}".strip()


def _label_header(table: AblationTable) -> str:
    return " / ".join(table.group_keys) or "setting"


def _against(table: AblationTable) -> str:
    return "the baseline row" if table.baseline is not None else "0 (Δm vs the single-task baselines)"


def legend(table: AblationTable) -> list[str]:
    """The notes printed under the main table: aggregation, best, the mark, baseline."""
    lines = [
        "Mean ± std over seeds (n trials per row; value of a trial = its last report). "
        "Best per column in bold.",
    ]
    if table.tests:
        lines.append(
            f"{SIG} differs from {_against(table)}: Holm-adjusted p < {ALPHA:g} over the "
            f"{table.tests} test(s) of this table (two-sided t-tests, paired by seed when both rows "
            "ran the same seeds, else Welch's). Unmarked cells are not significantly different at "
            "these seeds, which is not evidence of no difference: see the intervals and the seeds "
            "needed in the statistics table."
        )
    elif any(c.vs is not None for c in table.cells.values()):
        lines.append("Nothing tested: every comparison lacks 2 seeds on a side or any spread.")
    if table.baseline_note:
        lines.append(table.baseline_note + "; computed per trial, then averaged.")
    if all(n <= 1 for n in table.n.values()):
        lines.append("One trial per row: no seed spread, so no interval and no test.")
    lines.extend(table.notes)
    return lines


def cell_frame(table: AblationTable, style: str = "md") -> pd.DataFrame:
    """The table as text in ``style`` (``md``, ``tex`` or ``html``): the row label
    (``(baseline)`` marked), one formatted cell per column, ``n`` and, when a trial
    failed (not in LaTeX), ``failed``; headers with direction arrows."""
    show_failed = style != "tex" and any(table.failed.values())
    head = [_label_header(table), *(header(c, style) for c in table.columns), "n"]
    if style == "tex":
        head = [tex_escape(head[0]), *head[1:-1], "$n$"]
    elif style == "html":
        head = [html.escape(h) for h in head]
    rows = []
    for lb in table.labels:
        cells = [format_cell(table, lb, c, style) for c in table.columns]
        if style == "tex":
            cells = [c.replace(MISSING, "--") for c in cells]
        rows.append([_row_name(table, lb, style), *cells, str(table.n[lb])]
                    + ([str(table.failed[lb])] if show_failed else []))
    return pd.DataFrame(rows, columns=head + (["failed"] if show_failed else []), dtype=object)


def _row_name(table: AblationTable, lb: str, style: str) -> str:
    base = lb == table.baseline
    return {"md": lb.replace("|", "\\|") + (" (baseline)" if base else ""),
            "tex": tex_escape(lb) + (" (baseline)" if base else ""),
            "html": html.escape(lb) + (" <i>(baseline)</i>" if base else "")}.get(style, lb)


# -- the statistics table ------------------------------------------------------------


def _p(value: float) -> str:
    if math.isnan(value):
        return MISSING
    return "<0.0001" if value < 1e-4 else f"{value:.3g}"


def _needed(vs: Comparison) -> str:
    n = vs.n_needed
    if math.isnan(n):
        return MISSING
    if math.isinf(n):
        return "∞" if vs.diff == 0 else f">{N_MAX}"
    return str(int(n))


def _test_name(vs: Comparison, n: int) -> str:
    if not vs.tested:
        return f"none ({vs.reason})" if vs.reason else "none"
    if vs.test == "paired":
        return f"paired t ({n} seeds)"
    return {"welch": "Welch t", "one-sample": "one-sample t"}.get(vs.test, vs.test)


def _interval(lo: float, hi: float, digits: int) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return ""
    return f" [{_num(lo, digits)}, {_num(hi, digits)}]"


STATS_HEAD = ["metric", "mean [95% CI]", "Δ [95% CI]", "test", "p", "p (Holm)",
              f"seeds for {POWER:.0%} power"]


def stats_frame(table: AblationTable, style: str = "md") -> pd.DataFrame:
    """The statistics table as text: one line per row and column, the mean with its 95%
    interval, the difference to the baseline (or to 0) with its interval and mark, the
    test, raw and Holm-adjusted p, and the seeds a test would need for 80% power."""
    rows = []
    for lb in table.labels:
        for col in table.columns:
            c = table.cells[(lb, col)]
            if c.n == 0:
                continue
            dig = decimals(table, col)
            mean = _num(c.mean, dig) + _interval(c.lo, c.hi, dig)
            vs = c.vs
            if vs is None:
                cmp = ["(baseline)" if lb == table.baseline else MISSING, MISSING, MISSING, MISSING,
                       MISSING]
                if col in UNTESTED_COLUMNS and lb != table.baseline:
                    cmp[1] = "not tested (restates Δm)"
            else:
                diff = ("+" if vs.diff > 0 else "") + _num(vs.diff, dig) + _interval(vs.lo, vs.hi, dig)
                if vs.significant:
                    diff += _mark(style)
                cmp = [diff, _test_name(vs, c.n), _p(vs.p), _p(vs.p_holm), _needed(vs)]
            metric = header(col, style)
            if style == "tex":
                cmp = [x.replace(MISSING, "--") for x in cmp]
                cmp[1] = tex_escape(cmp[1])
                cmp[2:4] = [x.replace("<", "$<$") for x in cmp[2:4]]
                cmp[4] = cmp[4].replace("∞", "$\\infty$").replace(">", "$>$")
                mean = mean.replace(MISSING, "--")
            elif style == "html":
                cmp[1:] = [html.escape(x) for x in cmp[1:]]
                metric = html.escape(metric)
            rows.append([_row_name(table, lb, style), metric, mean, *cmp])
    head = [_label_header(table), *STATS_HEAD]
    if style == "tex":
        head = [tex_escape(head[0]), "metric", "mean [95\\% CI]", "$\\Delta$ [95\\% CI]", "test",
                "$p$", "$p$ (Holm)", f"seeds for {POWER * 100:.0f}\\% power"]
    elif style == "html":
        head = [html.escape(h) for h in head]
    return pd.DataFrame(rows, columns=head, dtype=object)


def stats_legend(table: AblationTable) -> list[str]:
    """The notes printed under the statistics table: every formula it uses."""
    level = f"{LEVEL:.0%}"
    lines = [
        f"mean [{level} CI]: mean ± t(0.975, n−1)·std/√n over the row's seeds.",
        f"Δ: row mean − mean of {_against(table)}, with the {level} interval of the test's t distribution "
        "(paired: mean per-seed difference ± t(0.975, n−1)·sd_diff/√n; Welch: Welch–Satterthwaite df; "
        "one-sample: against 0).",
        f"p: two-sided; p (Holm): Holm's step-down adjustment over the {table.tests} test(s) of this "
        f"table; {SIG}: p (Holm) < {ALPHA:g}.",
        f"seeds for {POWER:.0%} power: smallest n (seeds both rows run for a paired test, seeds per row "
        f"for Welch's) at which the same test at α = {ALPHA:g} (two-sided) has {POWER:.0%} power if the "
        "true difference and spread are the observed ones (noncentral t; the normal approximation "
        "((z(0.975) + z(0.8))·sd/Δ)² is a lower bound). The observed Δ is itself noisy: read it as an "
        f"order of magnitude. ∞: Δ is 0; >{N_MAX}: more than {N_MAX}.",
    ]
    return lines


def _markdown_table(frame: pd.DataFrame, align: list[str]) -> str:
    return frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)


def _md_legend(lines: list[str]) -> str:
    """Legend lines as one Markdown paragraph (hard breaks); ``*`` escaped, so a line
    starting with the mark is no list item and two marks never make emphasis."""
    return "".join(line.replace(SIG, "\\" + SIG) + "  \n" for line in lines)


def to_markdown(table: AblationTable) -> str:
    """A GitHub-flavoured Markdown table plus its legend."""
    frame = cell_frame(table, "md")
    text = _markdown_table(frame, ["left"] + ["right"] * (frame.shape[1] - 1))
    return text + "\n\n" + _md_legend(legend(table))


def stats_markdown(table: AblationTable) -> str:
    """The statistics table (:func:`stats_frame`) in Markdown plus its legend."""
    frame = stats_frame(table, "md")
    if frame.empty:
        return "No values to summarise.\n"
    text = _markdown_table(frame, ["left", "left", "right", "right", "left", "right", "right", "right"])
    return text + "\n\n" + _md_legend(stats_legend(table))


_TEX_ESCAPES = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
                "_": "\\_", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\^{}",
                "<": "\\textless{}", ">": "\\textgreater{}", "|": "\\textbar{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _tex_legend(line: str) -> str:
    return (tex_escape(line).replace("±", "$\\pm$").replace("−", "-").replace("Δm", "$\\Delta_m$")
            .replace("Δ", "$\\Delta$").replace("√", "$\\surd$").replace("·", "$\\cdot$")
            .replace("α", "$\\alpha$").replace("∞", "$\\infty$").replace("²", "$^2$"))


def _latex(frame: pd.DataFrame, caption: str, label_rule: bool, align: str) -> list[str]:
    styler = Styler(frame, uuid="ablation", cell_ids=False).hide(axis="index")
    text = styler.to_latex(column_format=align, position="t", position_float="centering",
                           hrules=True, environment="table", caption=caption)
    lines = text.splitlines()
    if label_rule:
        lines.insert(lines.index("\\midrule") + 2, "\\midrule")
    return lines


def to_latex(table: AblationTable, caption: str = "") -> str:
    """A booktabs ``table`` environment ready to paste (needs ``\\usepackage{booktabs}``):
    the caption (with the legend) above, a rule under the baseline row."""
    frame = cell_frame(table, "tex")
    legend_tex = " ".join(_tex_legend(line) for line in legend(table))
    rule = table.baseline is not None and table.labels[:1] == [table.baseline] and len(table.labels) > 1
    lines = _latex(frame, f"{tex_escape(caption) + '. ' if caption else ''}{legend_tex}", rule,
                   "l" + "r" * (frame.shape[1] - 1))
    return "\n".join(["% requires \\usepackage{booktabs}", *lines]) + "\n"


def stats_latex(table: AblationTable, caption: str = "") -> str:
    """The statistics table as a second booktabs ``table`` (needs ``booktabs``)."""
    frame = stats_frame(table, "tex")
    if frame.empty:
        return ""
    legend_tex = " ".join(_tex_legend(line) for line in stats_legend(table))
    lines = _latex(frame, f"{tex_escape(caption) + '. ' if caption else ''}{legend_tex}", False,
                   "llrrlrrr")
    return "\n".join(["% requires \\usepackage{booktabs}", *lines]) + "\n"


def to_csv(table: AblationTable) -> str:
    """Machine-readable: one row per setting; per column ``<metric>_mean``, ``_std``,
    ``_n``, ``_ci_low``, ``_ci_high``, ``_best``, and against the baseline ``_diff``,
    ``_diff_ci_low``, ``_diff_ci_high``, ``_test`` (paired, welch, one-sample; empty when
    not compared), ``_df``, ``_p``, ``_p_holm``, ``_significant``, ``_n_needed`` (seeds for
    80% power; ``inf`` beyond 1000 or for a zero difference) and ``_not_tested`` (why a
    comparison has no p-value)."""
    fields = ["mean", "std", "n", "ci_low", "ci_high", "best", "diff", "diff_ci_low", "diff_ci_high",
              "test", "df", "p", "p_holm", "significant", "n_needed", "not_tested"]
    head = ["label", *table.group_keys, "baseline", "n", "failed"]
    for c in table.columns:
        head += [f"{c}_{f}" for f in fields]
    rows = []
    for lb in table.labels:
        row: list[Any] = [lb, *(table.keys[lb].get(k, "") for k in table.group_keys),
                          lb == table.baseline, table.n[lb], table.failed[lb]]
        for col in table.columns:
            c = table.cells[(lb, col)]
            vs = c.vs
            nan = math.nan
            row += [c.mean, c.std, c.n, c.lo, c.hi, c.best]
            if vs is None:
                row += [nan, nan, nan, "", nan, nan, nan, False, nan, ""]
            else:
                row += [vs.diff, vs.lo, vs.hi, vs.test, vs.df, vs.p, vs.p_holm, vs.significant,
                        vs.n_needed, vs.reason]
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


def stats_html(table: AblationTable) -> str:
    """The statistics table as ``<table class='stats'>`` (baseline lines: class
    ``baseline``) plus its legend."""
    frame = stats_frame(table, "html")
    if frame.empty:
        return "<p>No values to summarise.</p>"
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    base = [i for i, name in enumerate(frame.iloc[:, 0]) if name.endswith("<i>(baseline)</i>")]
    for i in base:
        classes.iloc[i] = "baseline"
    legend_html = "<br>".join(html.escape(line) for line in stats_legend(table))
    return _styler_html(frame, "stats", classes).to_html() + f"<p class='legend'>{legend_html}</p>"


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
    "cell_frame",
    "decimals",
    "format_cell",
    "legend",
    "stats_frame",
    "stats_html",
    "stats_latex",
    "stats_legend",
    "stats_markdown",
    "tex_escape",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
    "trials_frame",
    "trials_html",
    "trials_markdown",
]
