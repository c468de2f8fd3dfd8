"""``mtlsearch status SEARCH``: the trials table of a running or finished search.

Contract: :func:`status_text` reads the folder through
:func:`mtlsearch.report.collect.collect` (tolerant of a search still writing: a
half-written ``result.json`` line is skipped, statuses come from Tune's state or are
inferred from the trial's files) and returns one line per trial: id, status, last
iteration, number of reports, the varied keys, the search's metric(s), ``loss`` and the
error's first line, then a count per status, then the configurations (trials grouped
by every parameter but the seed: :mod:`mtlsearch.report.configs`) ranked by the mean
over their finished seeds of the search's metric (the first of several, with the Pareto
set of the means marked), with n, the seeds, the std and the t-based 95% interval of
each metric's mean. :func:`search_state` tells a finished
search (every planned trial finished) from an unfinished one (``search --reuse``,
``reproduce``). Nothing here writes anything.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from mtlsearch.errors import UserError
from mtlsearch.layout import FINISHED, META_FILE, REPLICATION_FILE
from mtlsearch.space.text import format_table, format_value

ERROR_CHARS = 60


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def status_text(search_dir: str | Path) -> str:
    """The trials table and status counts of the search in ``search_dir``."""
    from mtlsearch.report.collect import collect

    search = collect(search_dir)
    metric = search.meta.search.metric or "loss"
    metrics = list(metric) if isinstance(metric, list) else [metric]
    shown_metrics = list(dict.fromkeys([*metrics, "loss"]))
    frame = search.results
    rows = []
    for _, r in frame.iterrows():
        row: dict[str, Any] = {
            "trial": r.get("trial_id"),
            "status": r.get("status"),
            "iteration": _cell(r.get("iterations")),
            "reports": r.get("reports"),
        }
        if isinstance(row["iteration"], float) and row["iteration"].is_integer():
            row["iteration"] = int(row["iteration"])
        for key in search.ablated_keys:
            row[key] = r.get(key)
        for m in shown_metrics:
            row[m] = _cell(r.get(f"final_{m}"))
        error = str(r.get("error") or "")
        row["error"] = (error[:ERROR_CHARS] + "...") if len(error) > ERROR_CHARS else (error or None)
        rows.append(row)
    columns = ["trial", "status", "iteration", "reports", *search.ablated_keys, *shown_metrics]
    if any(row["error"] for row in rows):
        columns.append("error")
    planned = search.meta.search.num_trials
    counts = frame["status"].value_counts().to_dict() if "status" in frame and len(frame) else {}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    lines = [f"search {search.name!r} ({search.path}): {len(rows)} trial(s)"
             + (f" of {planned} planned" if isinstance(planned, int) else "") + f": {summary}"]
    if rows:
        lines.append(format_table(rows, columns))
    lines += configurations_lines(search)
    lines += [f"note: {n}" for n in search.notes]
    return "\n".join(lines)


def configurations_lines(search: Any) -> list[str]:
    """The configurations of the finished trials ranked by their mean over seeds of the
    first metric (Pareto set of the means marked when there are several), as text."""
    from mtlsearch.best import metrics_and_modes
    from mtlsearch.report import configs as cf

    try:
        metrics, modes = metrics_and_modes(search.meta, None, None)  # the search's own
    except UserError:
        return []
    if any(m not in ("max", "min") for m in modes):
        return []
    found = cf.from_search(search, metrics)
    if not found:
        return []
    ordered = cf.rank(found, metrics[:1], modes[:1])
    front = {id(c) for c in cf.rank(found, metrics, modes)} if len(metrics) > 1 else set()
    keys = cf.varying_keys(found)
    rows = []
    for i, c in enumerate(ordered):
        row: dict[str, Any] = {"rank": i + 1, **{k: c.params.get(k) for k in keys}, "n": c.n,
                               "seeds": ",".join(str(x) for x in c.seeds)}
        for m in metrics:
            st = c.stats[m]
            row[f"{m} mean"] = st.mean
            row["std" if len(metrics) == 1 else f"{m} std"] = st.std if c.n > 1 else None
            row["95% CI" if len(metrics) == 1 else f"{m} 95% CI"] = (
                f"[{format_value(st.lo)}, {format_value(st.hi)}]" if c.n > 1 else None)
        if front:
            row["pareto"] = "yes" if id(c) in front else ""
        rows.append(row)
    how = f"by mean {metrics[0]} ({modes[0]}) over seeds" + (", Pareto set of the means marked" if front else "")
    return [f"{len(ordered)} configuration(s) of the finished trials, {how}:",
            format_table(rows, list(rows[0]))]


def search_state(exp_dir: Any) -> str:
    """``missing``, ``finished`` (every planned trial finished) or ``unfinished``."""
    from mtlsearch.report.collect import collect

    if hasattr(exp_dir, "is_local"):  # a mtlsearch.storage.Location
        if not exp_dir.is_local:
            raise UserError(f"{exp_dir}: only a local search folder can be checked for reuse")
        exp_dir = exp_dir.local
    exp_dir = Path(exp_dir)
    if not exp_dir.exists():
        return "missing"
    if not (exp_dir / META_FILE).is_file():
        raise UserError(f"{exp_dir} exists but holds no mtlsearch search; move it away or use --storage")
    search = collect(exp_dir)
    if search.meta.search.adaptive_seeds:
        return _adaptive_state(exp_dir)
    planned = search.meta.search.num_trials
    statuses = list(search.results["status"]) if "status" in search.results else []
    done = sum(s == FINISHED for s in statuses)
    return "finished" if isinstance(planned, int) and done >= planned else "unfinished"


def _adaptive_state(exp_dir: Path) -> str:
    """An adaptive search is finished when its record says every configuration is decided
    (the number of trials is not known in advance)."""
    import json


    try:
        record = json.loads((exp_dir / REPLICATION_FILE).read_text())
    except (OSError, ValueError):
        return "unfinished"
    configs = record.get("configurations") or []
    done = record.get("exhausted") and configs and all(c.get("decided") for c in configs)
    return "finished" if done else "unfinished"


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch status SEARCH``."""
    print(status_text(args.search_dir))
    return 0


__all__ = ["run_cli", "search_state", "status_text"]
