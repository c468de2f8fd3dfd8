"""``mtlsearch reproduce 3dmtl|cvm``: run a paper's shipped spaces, compare every table with the published one.

Contract: :func:`plan` finds the shipped spaces (``search_spaces/*.yaml`` beside the
package) whose ``paper:`` names a table of the chosen paper (``3dmtl`` or ``cvm``, the
``crossview_cvm`` group of ``mtlsearch/paper/tables.yaml``), restricted by ``--tables``
(numbers such as ``4,6`` match ``table4_*``, ``table6_*``; names or name fragments such
as ``depth_planes`` match too; a selector that matches no table, or a table no shipped
space reproduces, is one ``error:`` line before anything runs). :func:`run_cli` then
runs each space with ``--profile`` into ``<storage>/<space name>`` in this process (one
Ray instance): a search whose planned trials all finished is reused, an interrupted
one is resumed, a missing one is started; all of them share the storage, so
single-task baselines (``<storage>/_baselines/``) and generated SynthRooms (the data
cache) are trained / generated once. Finally it writes one folder (``--out``, default
``reports/reproduce_<paper>``, following :mod:`mtlsearch.outputs`, marker
``.mtlsearch-reproduce``): ``<space name>/`` (each search's own report) and
``reproduce.md``, with every table beside the published one and a summary per table:
the ordering agreement per metric (Kendall tau between our row means and the paper's)
and, per paired row, its effect against the table's first paired row (the paper's
reference) with a 95% interval and a test (paired by seed, else Welch's; Holm over the
table's effects), whether it has the published sign, and the seeds an unresolved effect
would need for 80% power.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlsearch.errors import UserError
from mtlsearch.layout import ERROR

PAPERS = {"3dmtl": "3dmtl", "cvm": "crossview_cvm"}
"""Command-line name -> group in ``mtlsearch/paper/tables.yaml``."""
KIND = "reproduce"
SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
"""The shipped spaces (a source checkout's ``search_spaces/``)."""


@dataclass
class Planned:
    table: str
    """``group/table`` as the space names it."""
    space_path: Path
    name: str


def _space_tables(spaces_dir: Path) -> list[tuple[str, Path, str]]:
    """(paper table, space file, search name) of every shipped space naming a table."""
    from mtlsearch.yamlio import load_mapping

    out = []
    for path in sorted(spaces_dir.glob("*.yaml")):
        raw = load_mapping(path, "search space file")
        ref = raw.get("paper")
        if isinstance(ref, str) and "/" in ref:
            name = raw.get("name") if isinstance(raw.get("name"), str) else path.stem
            out.append((ref, path, name))
    return out


def _selected(table: str, selectors: list[str]) -> bool:
    for sel in selectors:
        if sel.isdigit():
            if re.match(rf"^table{int(sel)}_", table):
                return True
        elif sel in table:
            return True
    return False


def plan(paper: str, tables: str | None, spaces_dir: Path | None = None) -> list[Planned]:
    """The spaces to run for ``paper`` (``3dmtl``/``cvm``) and the ``--tables`` selection,
    from ``spaces_dir`` (default :data:`SPACES_DIR`)."""
    from mtlsearch.report.papers import list_tables

    spaces_dir = spaces_dir if spaces_dir is not None else SPACES_DIR

    if paper not in PAPERS:
        raise UserError(f"paper {paper!r}: expected one of {', '.join(PAPERS)}")
    if not spaces_dir.is_dir():
        raise UserError(f"shipped search spaces not found at {spaces_dir} (run from a source checkout)")
    group = PAPERS[paper]
    published = [t.split("/", 1)[1] for t in list_tables() if t.startswith(group + "/")]
    shipped = [(ref, path, name) for ref, path, name in _space_tables(spaces_dir) if ref.startswith(group + "/")]
    covered = sorted({ref.split("/", 1)[1] for ref, _, _ in shipped})
    selectors = [s.strip() for s in (tables or "").split(",") if s.strip()]
    if not selectors:
        chosen = covered
    else:
        for sel in selectors:
            hits = [t for t in published if _selected(t, [sel])]
            if not hits:
                raise UserError(f"--tables {sel}: no table of {paper} matches (published: {', '.join(published)})")
            runnable = [t for t in hits if t in covered]
            if not runnable:
                raise UserError(f"--tables {sel}: {', '.join(hits)} has no shipped space to reproduce it "
                                f"(reproducible: {', '.join(covered)})")
        chosen = [t for t in covered if _selected(t, selectors)]
    return [Planned(ref, path, name) for ref, path, name in shipped if ref.split("/", 1)[1] in chosen]


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def run_space(item: Planned, profile: str, storage: Path, address: str | None) -> tuple[str, int]:
    """Run, resume or reuse one space; (what was done, exit status)."""
    from mtlsearch.execution.search import run_search
    from mtlsearch.space import load_space
    from mtlsearch.status import search_state

    space = load_space(item.space_path, profile)
    state = search_state(storage / space.name)
    if state == "finished":
        print(f"reproduce: {space.name}: reusing the finished search in {storage / space.name}", flush=True)
        return "reused", 0
    resume = state == "unfinished"
    print(f"reproduce: {space.name}: {'resuming' if resume else 'starting'} ({item.table}, profile {profile})",
          flush=True)
    code = run_search(space, storage, space.name, address=address, resume=resume)
    return ("resumed" if resume else "ran"), code


# ---------------------------------------------------------------------------
# The summary
# ---------------------------------------------------------------------------


def _row_values(report: Any, label: str, column: str) -> tuple[list[float], list[Any]]:
    """One row's per-trial values of a table column, with the trials' seeds."""
    table, res = report.table, report.search.results
    ids = [str(t) for t in table.trial_ids.get(label, [])]
    rows = res[res["trial_id"].astype(str).isin(ids) & (res["status"] != ERROR)]
    seeds = rows["seed"].tolist() if "seed" in rows.columns else [None] * len(rows)
    if column == "delta_m":
        values = [table.trial_delta_m.get(str(t), math.nan) for t in rows["trial_id"]]
    else:
        name = "delta_m" if column == "delta_m_st" else f"final_{column}"
        values = rows[name].astype(float).tolist() if name in rows.columns else [math.nan] * len(rows)
    return [float(v) for v in values], seeds


def _effects(report: Any) -> list[str]:
    """Per paired row after the first: our effect against the first paired row with its
    95% interval and test (paired by seed, else Welch's; Holm over the table's effects),
    and its sign against the paper's."""
    from mtlsearch.report.compare import _paper_cell, _paper_key
    from mtlsearch.report.stats import adjust, compare

    cmp, table = report.comparison, report.table
    if cmp is None or len(cmp.pairs) < 2:
        return []
    ref_prow, ref_lb, ref_prefix = cmp.pairs[0]
    found = []
    for prow, lb, prefix in cmp.pairs[1:]:
        for m in cmp.metrics:
            ours, base = _paper_cell(table, lb, prefix, m), _paper_cell(table, ref_lb, ref_prefix, m)
            theirs, theirs_ref = cmp.paper.rows[prow].get(m), cmp.paper.rows[ref_prow].get(m)
            if ours is None or base is None or theirs is None or theirs_ref is None:
                continue
            vs = compare(*_row_values(report, lb, _paper_key(table, lb, prefix, m)),
                         *_row_values(report, ref_lb, _paper_key(table, ref_lb, ref_prefix, m)))
            found.append((prow, m, ours.mean - base.mean, theirs - theirs_ref, vs))
    adjust([vs for *_, vs in found])
    lines = []
    for prow, m, effect, published, vs in found:
        same = (effect > 0) == (published > 0) if effect and published else effect == published
        if vs.tested:
            needed = "more than 1000" if math.isinf(vs.n_needed) else f"{vs.n_needed:.0f}"
            verdict = (f"[{vs.lo:+.3g}, {vs.hi:+.3g}], {vs.test} test, Holm p {vs.p_holm:.2g}: "
                       + ("differs" if vs.significant else f"not resolved (about {needed} seeds for 80% power)"))
        else:
            verdict = f"not tested ({vs.reason})"
        lines.append(f"{prow} vs {ref_prow}, {m}: ours {effect:+.3g} {verdict}; paper {published:+.3g}: "
                     f"{'same sign' if same else 'OPPOSITE sign'}")
    return lines


def summary_markdown(paper: str, profile: str, reports: list[tuple[Planned, str, Any]]) -> str:
    """``reproduce.md``: per table, the comparison and which findings hold."""
    from mtlsearch.report.compare import paper_markdown

    lines = [f"# Reproducing {paper} (profile {profile})", ""]
    lines += ["| table | space | search | ordering agreement |", "|---|---|---|---|"]
    for item, action, report in reports:
        cmp = report.comparison if report is not None else None
        if cmp is None or not cmp.ordering:
            agreement = "not compared"
        else:
            agreement = "; ".join(
                f"{m}: {int(o['agree'])}/{int(o['pairs'])}" + ("" if math.isnan(o["tau"]) else f" (tau {o['tau']:+.2f})")
                for m, o in cmp.ordering.items()
            )
        lines.append(f"| {item.table} | `{item.space_path.name}` | {item.name} ({action}) | {agreement} |")
    lines.append("")
    for item, _action, report in reports:
        lines += [f"## {item.table} ({item.name})", ""]
        if report is None:
            lines += ["No report: the search failed (see its trials folder).", ""]
            continue
        if report.comparison is None:
            lines += ["The published table could not be paired (see the search's report).", ""]
            continue
        lines.append(paper_markdown(report.search, report.table, report.comparison))
        held = [m for m, o in report.comparison.ordering.items() if not math.isnan(o["tau"]) and o["tau"] > 0]
        failed = [m for m, o in report.comparison.ordering.items() if m not in held]
        lines.append("**Findings.** Row ordering as published (Kendall tau > 0): "
                     + (", ".join(held) or "none") + (f"; not: {', '.join(failed)}" if failed else "") + ".")
        lines.append("")
        effects = _effects(report)
        if effects:
            lines += ["Effects against the first paired row:", "", *(f"- {e}" for e in effects), ""]
        lines += [f"Full report: [{item.name}/table.md]({item.name}/table.md)", ""]
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch reproduce 3dmtl|cvm [--profile P] [--tables 4,6] [--storage] [--out]``."""
    from mtlsearch.outputs import check_run_folder, check_target, output_folder
    from mtlsearch.report import build_report
    from mtlsearch.space import load_space
    from mtlsearch.status import search_state

    items = plan(args.paper, args.tables)
    storage = check_run_folder(args.storage, None)
    out = Path(args.out) if args.out else Path("reports") / f"reproduce_{args.paper}"
    for item in items:  # every space with the profile, before anything runs
        load_space(item.space_path, args.profile)
    check_target(out, KIND, protect=[storage])
    print(f"reproduce {args.paper}: {len(items)} space(s): "
          + ", ".join(f"{i.space_path.name} ({i.table})" for i in items), flush=True)
    if args.dry_run:
        for item in items:
            print(f"  {item.name}: {search_state(storage / item.name)} in {storage / item.name}")
        return 0
    done: list[tuple[Planned, str, int]] = []
    for item in items:
        action, code = run_space(item, args.profile, storage, args.address)
        done.append((item, action, code))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    reports: list[tuple[Planned, str, Any]] = []
    with output_folder(out, KIND, protect=[storage]) as tmp:
        for item, action, code in done:
            exp_dir = storage / item.name
            try:
                report = build_report(exp_dir, tmp / item.name, samples=False)
            except UserError as err:
                print(f"reproduce: {item.name}: no report ({err})")
                report = None
            reports.append((item, action if code == 0 else f"{action}, exit {code}", report))
        (tmp / "reproduce.md").write_text(summary_markdown(args.paper, args.profile, reports))
    print(f"reproduce {args.paper}: report in {out / 'reproduce.md'}")
    return 0 if all(code == 0 for _, _, code in done) else 1


__all__ = ["PAPERS", "Planned", "plan", "run_cli", "summary_markdown"]
