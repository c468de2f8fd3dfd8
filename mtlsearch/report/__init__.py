"""``mtlsearch report``: a search folder -> parquet, ablation tables, plots and an HTML page.

``reports/<name>/`` receives ``results.parquet`` (one row per trial), ``curves.parquet``
(one row per reported evaluation), ``table.md``/``table.tex``/``table.csv``/``report.html``
(per ``--format``) and ``plots/*.png``. The folder is built beside the target and
renamed into place at the end, so a failure midway leaves an earlier report intact.
``--out`` follows :mod:`mtlsearch.outputs`: a new or empty folder, or an earlier report
(marker ``.mtlsearch-report``) holding only the files it wrote; never the search folder,
a folder inside it or one that contains it.

The search may also be a ``pyarrow.fs`` URI (``s3://bucket/trials/demo?endpoint_override=...``,
:mod:`mtlsearch.storage`): it is downloaded once per call into a local cache
(``.cache/mtlsearch/storage/<hash>/<name>``, refreshed, only changed files fetched) and the
report is written locally.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlsearch.errors import UserError
from mtlsearch.layout import CURVES_FILE, ERROR, PLOTS_DIR, RESULTS_FILE, TABLE_FILES
from mtlsearch.outputs import MARKER_PREFIX, check_target, output_folder
from mtlsearch.report.collect import Search
from mtlsearch.report.collect import collect as collect_search
from mtlsearch.report.compare import (
    PaperComparison,
    compare_paper,
    paper_html,
    paper_latex,
    paper_markdown,
)
from mtlsearch.report.papers import direction_of, get_table
from mtlsearch.report.render import (
    stats_html,
    stats_latex,
    stats_markdown,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
    trials_html,
    trials_markdown,
)
from mtlsearch.report.tables import AblationTable, build_table
from mtlsearch.storage import cache_folder, is_uri, open_storage, sync_down

log = logging.getLogger("mtlsearch.report")

FORMATS = tuple(TABLE_FILES)
REPORT_KIND = "report"
"""Marker kind of report folders (``.mtlsearch-report``): only such a folder is replaced."""
_REPORT_FILES = {RESULTS_FILE, CURVES_FILE, *TABLE_FILES.values()}
_PLOT_FILE = re.compile(rf"^{PLOTS_DIR}/[a-z0-9_]+\.png$")


def _legacy_report(folder: Path) -> bool:
    """A report written before markers existed: ``results.parquet`` and nothing but the
    files a report writes."""
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()]
    return RESULTS_FILE in files and all(
        f in _REPORT_FILES or _PLOT_FILE.match(f) for f in files)
PARETO_PAIRS = (("semseg_miou", "depth_rmse"), ("semseg_miou", "normals_mean_err"),
                ("depth_rmse", "normals_mean_err"))


@dataclass
class Report:
    """What :func:`build_report` produced."""

    out: Path
    search: Search
    table: AblationTable
    markdown: str
    """table.md's content (ablation table, paper comparison, notes)."""
    comparison: PaperComparison | None = None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    importances: dict[str, Any] | None = None
    pareto: list[str] | None = None


def parse_formats(text: str) -> list[str]:
    """``"md,tex"`` -> ``["md", "tex"]``; :class:`UserError` naming an unknown format."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    for f in formats:
        if f not in FORMATS:
            raise UserError(f"--format {f!r}: unknown format (known: {', '.join(FORMATS)})")
    return formats


def _best_trial(search: Search, table: AblationTable) -> str | None:
    """A representative trial of the best row: the row with the best mean delta_m (the
    table's), else of the first table metric; of its trials, the one closest to that
    mean (ties: the first), not the row's luckiest seed."""
    res = search.results[search.results["status"] != ERROR]
    if res.empty:
        return None
    for col in (["delta_m"] if table.trial_delta_m else []) + list(table.columns):
        d = direction_of(col)
        means = {lb: table.cells[(lb, col)].mean for lb in table.labels
                 if (lb, col) in table.cells and table.cells[(lb, col)].n > 0}
        if d is None or not means:
            continue
        row = (max if d == "max" else min)(means, key=means.get)
        ids = set(table.trial_ids[row])
        if col == "delta_m":
            values = {t: v for t, v in table.trial_delta_m.items() if t in ids and v == v}
        else:
            mine = res[res["trial_id"].astype(str).isin(ids)]
            values = {str(t): float(v) for t, v in zip(mine["trial_id"], mine.get(f"final_{col}", []))
                      if v == v}
        if values:
            return min(values, key=lambda t: abs(values[t] - means[row]))
    return None


def _objective(search: Search, table: AblationTable) -> tuple[Any, str] | None:
    import pandas as pd

    res = search.results
    if table.trial_delta_m:
        series = res["trial_id"].astype(str).map(table.trial_delta_m).astype(float)
        if series.notna().sum() >= 2:
            return series, "delta_m"
    for col in table.columns:
        key = f"final_{col}"
        if key in res.columns and res[key].notna().sum() >= 2:
            return pd.to_numeric(res[key], errors="coerce"), col
    return None


def _write_plots(search: Search, table: AblationTable, plots_dir: Path, report: Report,
                 samples: bool) -> None:
    from mtlsearch.report import plots

    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics = [c for c in table.columns if c != "delta_m"]
    log.info("plots: learning curves")
    if plots.learning_curves(search, table, [*metrics, "loss"], plots_dir / "learning_curves.png") is None:
        report.notes.append("no learning curves: no trial reported a metric yet")
    plots.loss_curves(search, table, plots_dir / "losses.png")
    if plots.fraction_plot(table, table.columns, plots_dir / "data_fraction.png"):
        log.info("plots: data fraction")
    for x, y in PARETO_PAIRS:
        if x in metrics and y in metrics:
            report.pareto = plots.pareto_plot(search, table, x, y, plots_dir / f"pareto_{x}_vs_{y}.png")
            break
    objective = _objective(search, table)
    if objective is not None:
        log.info("plots: parameter importance")
        report.importances = plots.importance_plot(search, objective[0], objective[1],
                                                   plots_dir / "param_importance.png")
    if samples:
        best = _best_trial(search, table)
        if best is None:
            report.notes.append("sample predictions skipped: no finished trial")
        else:
            log.info("plots: sample predictions of trial %s", best)
            row = search.results[search.results["trial_id"] == best].iloc[0]
            note = plots.sample_predictions(row.get("checkpoint") or None,
                                            plots_dir / "samples_best_trial.png")
            report.notes.append(f"trial {best}: {note}")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{padding:.3em .7em;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444}
td.baseline{background:#f3f6fb}
.legend{font-size:.85em;color:#555}
.meta td{text-align:left}
.status-ERROR{color:#b00}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
"""


def _html_page(report: Report, pngs: dict[str, bytes]) -> str:
    esc = html.escape
    s = report.search
    meta = s.meta
    counts = s.results["status"].value_counts().to_dict() if len(s.results) else {}
    rows = [
        ("search", s.name),
        ("space", meta.space_path or "—"),
        ("profile", meta.profile or "—"),
        ("algorithm", meta.search.algorithm or "—"),
        ("tasks", ", ".join(s.tasks) or "—"),
        ("trials", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"),
        ("ablated keys", ", ".join(s.ablated_keys) or "—"),
    ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>mtlsearch report: {esc(s.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>mtlsearch report: {esc(s.name)}</h1>",
        "<table class='meta'>" + "".join(f"<tr><td><b>{esc(k)}</b></td><td>{esc(str(v))}</td></tr>" for k, v in rows) + "</table>",
        "<h2>Ablation table</h2>",
        to_html(report.table),
        "<h2>Statistics against the baseline</h2>",
        stats_html(report.table),
    ]
    if report.comparison is not None:
        parts.append(paper_html(s, report.table, report.comparison))
    titles = {
        "learning_curves.png": "Learning curves",
        "losses.png": "Base task loss and regularizer loss (alpha on the right axis)",
        "data_fraction.png": "Metrics against training-data fraction",
        "param_importance.png": "Parameter importance",
        "samples_best_trial.png": "Sample predictions of the best trial",
    }
    for name, data in pngs.items():
        title = titles.get(name, "Pareto front" if name.startswith("pareto") else name)
        b64 = base64.b64encode(data).decode("ascii")
        parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(name)}' src='data:image/png;base64,{b64}'>")
    if report.importances:
        parts.append("<p class='legend'>Importance source: " + esc(report.importances["source"]) + "</p>")
    parts += ["<h2>Trials</h2>", trials_html(s)]
    notes = [*s.notes, *report.notes]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(report: Report, trials: bool = True) -> str:
    """table.md: the ablation table, the paper comparison, notes and (``trials``) the
    status of every trial."""
    s = report.search
    parts = [f"## {s.name}: ablation table", "", to_markdown(report.table),
             "### Statistics against the baseline", "", stats_markdown(report.table)]
    if report.comparison is not None:
        parts += [paper_markdown(s, report.table, report.comparison)]
    notes = [*s.notes, *report.notes]
    if notes:
        parts += ["### Notes", "", *(f"- {n}" for n in notes), ""]
    if trials:
        parts += ["### Trials", "", trials_markdown(s)]
    return "\n".join(parts)


def build_report(trials_dir: str | Path, out: str | Path | None = None,
                 group_by: list[str] | None = None, baseline: str | None = None,
                 formats: list[str] | None = None, samples: bool = True) -> Report:
    """Read the search in ``trials_dir`` (a folder or a storage URI, downloaded to a
    local cache first) and write its report to ``out`` (default ``reports/<name>``),
    atomically. Returns what was written."""
    formats = list(FORMATS) if formats is None else formats
    out_path = Path(out) if out is not None else None
    remote = open_storage(str(trials_dir), flag="SEARCH") if is_uri(str(trials_dir)) else None
    if out_path is not None:
        check_target(out_path, REPORT_KIND, legacy=_legacy_report,
                     protect=[cache_folder(remote) if remote is not None else trials_dir])
    if remote is not None:
        log.info("downloading %s", remote)
        trials_dir = sync_down(remote)
    log.info("reading %s", trials_dir)
    search = collect_search(trials_dir)
    table = build_table(search, group_by=group_by, baseline=baseline)
    if out_path is None:
        out_path = Path("reports") / search.name
    report = Report(out=out_path, search=search, table=table, markdown="")
    paper_ref = search.meta.paper
    if paper_ref:
        try:
            report.comparison = compare_paper(search, table, get_table(str(paper_ref)))
        except UserError as err:
            report.notes.append(f"paper table not shown: {err}")

    with output_folder(out_path, REPORT_KIND, protect=[search.path], legacy=_legacy_report) as tmp:
        results = search.results.copy()
        if table.trial_delta_m:
            results["delta_m_vs_baseline"] = results["trial_id"].astype(str).map(table.trial_delta_m)
        results.to_parquet(tmp / RESULTS_FILE, index=False)
        search.curves.to_parquet(tmp / CURVES_FILE, index=False)
        _write_plots(search, table, tmp / PLOTS_DIR, report, samples)
        report.markdown = _markdown(report)
        for fmt in formats:
            (tmp / TABLE_FILES[fmt]).write_text(_WRITERS[fmt](report, tmp))
    report.files = sorted(p for p in out_path.rglob("*")
                          if p.is_file() and not p.name.startswith(MARKER_PREFIX))
    return report


def _tex(report: Report, folder: Path) -> str:
    table, name = report.table, report.search.name
    tex = to_latex(table, caption=f"{name}: ablation")
    tex += "\n% Statistics against the baseline\n" + stats_latex(table, caption=f"{name}: statistics")
    if report.comparison is not None:
        tex += "\n% Published rows beside ours\n" + paper_latex(table, report.comparison)
    return tex


def _html(report: Report, folder: Path) -> str:
    pngs = {p.name: p.read_bytes() for p in sorted((folder / PLOTS_DIR).glob("*.png"))}
    return _html_page(report, pngs)


_WRITERS: dict[str, Callable[[Report, Path], str]] = {
    "md": lambda report, folder: report.markdown,
    "tex": _tex,
    "csv": lambda report, folder: to_csv(report.table),
    "html": _html,
}
"""Table format -> its file's text (the file name is :data:`mtlsearch.layout.TABLE_FILES`)."""


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch report TRIALS_DIR [--out] [--group-by ...] [--baseline] [--format]``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    formats = parse_formats(args.format)
    report = build_report(args.trials_dir, out=args.out, group_by=args.group_by,
                          baseline=args.baseline, formats=formats)
    print(_markdown(report, trials=False))
    print(f"wrote {len(report.files)} files to {report.out}")
    return 0


__all__ = ["FORMATS", "Report", "build_report", "parse_formats", "run_cli"]
