"""Published rows beside ours: the paper comparison of an ablation table (values
side by side, our cells with their significance marks, ordering agreement) in Markdown,
LaTeX and HTML.

Contract: :func:`compare_paper` maps a :class:`~mtlsearch.report.papers.PaperTable`
onto an :class:`~mtlsearch.report.tables.AblationTable` by the paper's row mapping;
the renderers only format that comparison.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from mtlsearch.report.collect import Search
from mtlsearch.report.papers import (
    PaperTable,
    arrow,
    direction_of,
    ordering_agreement,
    values_equal,
)
from mtlsearch.report.render import format_cell, header, tex_escape
from mtlsearch.report.tables import MISSING, AblationTable, Cell

# ---------------------------------------------------------------------------
# Published rows beside ours
# ---------------------------------------------------------------------------


@dataclass
class PaperComparison:
    paper: PaperTable
    pairs: list[tuple[str, str, str]]
    """(paper row, our row label, metric prefix), in the paper's row order."""
    metrics: list[str]
    """Metrics both sides have."""
    ordering: dict[str, dict[str, float]]
    """Per metric: pairs, agree, fraction, tau (see papers.ordering_agreement)."""
    unmatched_paper: list[str]
    unmatched_ours: list[str]


def _known_value(search: Search, table: AblationTable, label: str, key: str) -> tuple[bool, Any]:
    if key in table.keys[label]:
        return True, table.keys[label][key]
    if key in search.fixed:
        return True, search.fixed[key]
    return False, None


def compare_paper(search: Search, table: AblationTable, paper: PaperTable) -> PaperComparison:
    """Pair the paper's rows with ours via ``paper.mapping`` and compare row orderings.

    A paper row matches our row when no known config value (group key or fixed value
    of the search) contradicts its selector; the candidate with the most confirmed keys
    wins, config defaults break ties, and a row claimed twice is left unpaired.
    """
    from mtlsearch.config import config_fields

    defaults = config_fields()
    tasks = search.tasks
    claims: list[tuple[str, str, str, tuple[int, int]]] = []
    for prow, spec in paper.mapping.items():
        if prow not in paper.rows:
            continue
        scored = []
        for lb in table.labels:
            if table.n[lb] == 0:
                continue
            confirmed = by_default = 0
            ok = True
            for key, wanted in spec.select.items():
                known, value = _known_value(search, table, lb, key)
                if known:
                    if not values_equal(value, wanted, tasks):
                        ok = False
                        break
                    confirmed += 1
                elif key in defaults and values_equal(defaults[key], wanted, tasks):
                    by_default += 1
            if ok and confirmed:
                scored.append((lb, (confirmed, by_default)))
        if not scored:
            continue
        top = max(s for _, s in scored)
        winners = [lb for lb, s in scored if s == top]
        if len(winners) == 1:
            claims.append((prow, winners[0], spec.prefix, top))
    pairs = []
    for prow, lb, prefix, score in claims:
        rivals = [c for c in claims if c[1] == lb and c[2] == prefix and c[0] != prow]
        if any(r[3] >= score for r in rivals):
            continue
        pairs.append((prow, lb, prefix))
    paper_metrics = [m for m in next(iter(paper.rows.values()), {}) if direction_of(m)]
    metrics = []
    for m in paper_metrics:
        if any(_paper_cell(table, lb, prefix, m) for _, lb, prefix in pairs):
            metrics.append(m)
    ordering = {}
    for m in metrics:
        ours, theirs = [], []
        for prow, lb, prefix in pairs:
            c = _paper_cell(table, lb, prefix, m)
            if c is None or c.n == 0 or m not in paper.rows[prow]:
                continue
            ours.append(c.mean)
            theirs.append(paper.rows[prow][m])
        if len(ours) >= 2:
            ordering[m] = ordering_agreement(ours, theirs)
    matched_ours = {lb for _, lb, _ in pairs}
    return PaperComparison(
        paper=paper,
        pairs=pairs,
        metrics=metrics,
        ordering=ordering,
        unmatched_paper=[p for p in paper.rows if p not in {q for q, _, _ in pairs}],
        unmatched_ours=[lb for lb in table.labels if lb not in matched_ours],
    )


def _paper_key(table: AblationTable, label: str, prefix: str, metric: str) -> str:
    """Our column to put beside the paper's ``metric``: the papers' delta_m is against
    single-task baselines, so ``delta_m_st`` stands for it when the table has one."""
    if metric == "delta_m" and (label, prefix + "delta_m_st") in table.cells:
        return prefix + "delta_m_st"
    return prefix + metric


def _paper_cell(table: AblationTable, label: str, prefix: str, metric: str) -> Cell | None:
    cell = table.cells.get((label, _paper_key(table, label, prefix, metric)))
    return cell if cell is not None and cell.n else None


def _paper_num(value: float | None, metric: str) -> str:
    if value is None:
        return MISSING
    return f"{value:.4f}" if abs(value) < 1 and metric != "delta_m" else f"{value:.2f}"


def _ordering_lines(cmp: PaperComparison) -> list[str]:
    lines = []
    for m, o in cmp.ordering.items():
        tau = "n/a" if math.isnan(o["tau"]) else f"{o['tau']:+.2f}"
        lines.append(
            f"{m}: {int(o['agree'])}/{int(o['pairs'])} row pairs ordered as in the paper "
            f"(Kendall tau {tau})"
        )
    if not cmp.ordering:
        lines.append("ordering not compared: fewer than two rows pair with the paper's")
    return lines


def paper_markdown(search: Search, table: AblationTable, cmp: PaperComparison) -> str:
    """The paper's rows beside ours (paired rows) and the ordering agreement; the
    paper's table alone when nothing pairs."""
    p = cmp.paper
    title = f"Published: {p.ref}" + ("" if p.verified else " (unverified numbers)")
    lines = [f"### {title}", ""]
    if cmp.pairs:
        head = ["paper row", "our row", *(f"{m} {arrow(m)} paper / ours" for m in cmp.metrics)]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---", "---"] + ["---:"] * len(cmp.metrics)) + "|")
        for prow, lb, prefix in cmp.pairs:
            cells = []
            for m in cmp.metrics:
                ours = format_cell(table, lb, _paper_key(table, lb, prefix, m), "md")
                cells.append(f"{_paper_num(p.rows[prow].get(m), m)} / {ours}")
            shown = lb + (f" [{prefix.rstrip('_')}]" if prefix else "")
            lines.append("| " + " | ".join([prow, shown, *cells]) + " |")
        lines.append("")
        lines.extend(f"{line}  " for line in _ordering_lines(cmp))
        if cmp.unmatched_paper:
            lines.append(f"Paper rows without a reproduced row: {', '.join(cmp.unmatched_paper)}  ")
        if cmp.unmatched_ours:
            lines.append(f"Our rows without a paper row: {', '.join(cmp.unmatched_ours)}  ")
    else:
        lines.append("No row of this search maps onto the paper's rows; the paper's table:")
        lines.append("")
        metrics = list(next(iter(p.rows.values()), {}))
        lines.append("| paper row | " + " | ".join(f"{m} {arrow(m)}" for m in metrics) + " |")
        lines.append("|---|" + "|".join(["---:"] * len(metrics)) + "|")
        for prow, vals in p.rows.items():
            lines.append("| " + " | ".join([prow, *(_paper_num(vals.get(m), m) for m in metrics)]) + " |")
    return "\n".join(lines) + "\n"


def paper_latex(table: AblationTable, cmp: PaperComparison) -> str:
    """The paired rows as a booktabs table (paper value / ours per metric)."""
    p = cmp.paper
    if not cmp.pairs:
        metrics = list(next(iter(p.rows.values()), {}))
        out = ["\\begin{tabular}{l" + "r" * len(metrics) + "}", "\\toprule",
               " & ".join(["Paper row", *(header(m, "tex") for m in metrics)]) + " \\\\", "\\midrule"]
        for prow, vals in p.rows.items():
            out.append(" & ".join([tex_escape(prow), *(_paper_num(vals.get(m), m) for m in metrics)]) + " \\\\")
        return "\n".join([*out, "\\bottomrule", "\\end{tabular}"]) + "\n"
    out = ["\\begin{tabular}{ll" + "rr" * len(cmp.metrics) + "}", "\\toprule",
           " & ".join(["Paper row", "Ours", *(f"\\multicolumn{{2}}{{c}}{{{header(m, 'tex')}}}" for m in cmp.metrics)]) + " \\\\",
           " & ".join(["", "", *(["paper", "ours"] * len(cmp.metrics))]) + " \\\\", "\\midrule"]
    for prow, lb, prefix in cmp.pairs:
        cells = []
        for m in cmp.metrics:
            cells += [_paper_num(p.rows[prow].get(m), m),
                      format_cell(table, lb, _paper_key(table, lb, prefix, m), "tex").replace(MISSING, "--")]
        out.append(" & ".join([tex_escape(prow), tex_escape(lb + (f" [{prefix.rstrip('_')}]" if prefix else "")), *cells]) + " \\\\")
    return "\n".join([*out, "\\bottomrule", "\\end{tabular}"]) + "\n"


def paper_html(search: Search, table: AblationTable, cmp: PaperComparison) -> str:
    """HTML version of :func:`paper_markdown`."""
    esc = html.escape
    p = cmp.paper
    out = [f"<h2>Published: {esc(p.ref)}{'' if p.verified else ' (unverified numbers)'}</h2>"]
    if cmp.pairs:
        head = ["paper row", "our row", *(f"{m} {arrow(m)} paper / ours" for m in cmp.metrics)]
        out.append("<table class='paper'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
        for prow, lb, prefix in cmp.pairs:
            cells = "".join(
                f"<td>{_paper_num(p.rows[prow].get(m), m)} / {format_cell(table, lb, _paper_key(table, lb, prefix, m), 'html')}</td>"
                for m in cmp.metrics
            )
            shown = lb + (f" [{prefix.rstrip('_')}]" if prefix else "")
            out.append(f"<tr><td>{esc(prow)}</td><td>{esc(shown)}</td>{cells}</tr>")
        out.append("</tbody></table>")
        out.append("<p class='legend'>" + "<br>".join(esc(x) for x in _ordering_lines(cmp)) + "</p>")
    else:
        metrics = list(next(iter(p.rows.values()), {}))
        out.append("<p>No row of this search maps onto the paper's rows; the paper's table:</p>")
        out.append("<table class='paper'><thead><tr><th>paper row</th>" + "".join(f"<th>{esc(m)} {arrow(m)}</th>" for m in metrics) + "</tr></thead><tbody>")
        for prow, vals in p.rows.items():
            out.append(f"<tr><td>{esc(prow)}</td>" + "".join(f"<td>{_paper_num(vals.get(m), m)}</td>" for m in metrics) + "</tr>")
        out.append("</tbody></table>")
    return "\n".join(out)
