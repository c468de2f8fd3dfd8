"""``mtlsearch status SEARCH``: the trials table of a running or finished search.

Contract: :func:`status_text` reads the folder through
:func:`mtlsearch.report.collect.collect` (tolerant of a search still writing: a
half-written ``result.json`` line is skipped, statuses come from Tune's state or are
inferred from the trial's files) and returns one line per trial: id, status, last
iteration, number of reports, the varied keys, the search's metric(s), ``loss`` and the
error's first line, then a count per status. :func:`search_state` tells a finished
search (every planned trial finished) from an unfinished one (``search --reuse``,
``reproduce``). Nothing here writes anything.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from mtlsearch.errors import UserError
from mtlsearch.space.text import format_table

ERROR_CHARS = 60


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def status_text(search_dir: str | Path) -> str:
    """The trials table and status counts of the search in ``search_dir``."""
    from mtlsearch.report.collect import collect

    search = collect(search_dir)
    meta_search = search.meta.get("search") if isinstance(search.meta.get("search"), dict) else {}
    metric = meta_search.get("metric") or "loss"
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
    planned = meta_search.get("num_trials")
    counts = frame["status"].value_counts().to_dict() if "status" in frame and len(frame) else {}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    lines = [f"search {search.name!r} ({search.path}): {len(rows)} trial(s)"
             + (f" of {planned} planned" if isinstance(planned, int) else "") + f": {summary}"]
    if rows:
        lines.append(format_table(rows, columns))
    lines += [f"note: {n}" for n in search.notes]
    return "\n".join(lines)


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
    if not (exp_dir / "mtlsearch.json").is_file():
        raise UserError(f"{exp_dir} exists but holds no mtlsearch search; move it away or use --storage")
    search = collect(exp_dir)
    planned = (search.meta.get("search") or {}).get("num_trials")
    statuses = list(search.results["status"]) if "status" in search.results else []
    done = sum(s == "TERMINATED" for s in statuses)
    return "finished" if isinstance(planned, int) and done >= planned else "unfinished"


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch status SEARCH``."""
    print(status_text(args.search_dir))
    return 0


__all__ = ["run_cli", "search_state", "status_text"]
