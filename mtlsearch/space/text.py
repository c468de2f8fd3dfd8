"""Text for people: compact values, plain tables, the summary ``--dry-run`` prints.

Contract: pure functions of their arguments; no validation happens here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlsearch.space.spec import Space


def format_value(value: Any) -> str:
    """Compact text for tables: lists as ``[a, b]``, floats with 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table with a header line."""
    cells = [[format_value(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def describe(space: Space) -> str:
    """Human-readable summary of a space (used by ``--dry-run``)."""
    s = space.search
    lines = [
        f"search {space.name!r} from {space.path}"
        + (f" (profile {space.profile})" if space.profile else ""),
    ]
    if space.description:
        lines.append(f"  {space.description.splitlines()[0]}")
    metric = ", ".join(s.metric) if isinstance(s.metric, list) else s.metric
    mode = ", ".join(s.mode) if isinstance(s.mode, list) else s.mode
    algorithm = f"{s.algorithm} ({s.sampler} sampler)" if s.algorithm == "optuna" else s.algorithm
    lines.append(f"algorithm: {algorithm}   metric: {metric} ({mode})   seeds: {format_value(space.seeds)}")
    r = space.resources
    lines.append(
        f"resources per trial: {r.workers} worker(s) x {r.cpus_per_worker:g} CPU, "
        f"{r.gpus_per_worker:g} GPU; at most {space.max_concurrent_trials} trial(s) at a time"
    )
    if space.scheduler:
        sc = space.scheduler
        detail = {
            "asha": f"max_t={sc.max_t} grace_period={sc.grace_period} reduction_factor={sc.reduction_factor}",
            "hyperband": f"max_t={sc.max_t} reduction_factor={sc.reduction_factor}",
            "median": f"grace_period={sc.grace_period} min_samples_required={sc.min_samples_required}",
            "pbt": f"perturbation_interval={sc.perturbation_interval} quantile_fraction={sc.quantile_fraction} "
                   f"resample_probability={sc.resample_probability} synch={str(sc.synch).lower()}",
        }.get(sc.type, "")
        lines.append(f"scheduler: {sc.type} {detail} (in evaluations)")
    if space.baselines:
        lines.append("single-task baselines: trained first (cached under <storage>/_baselines/)")
    if space.paper:
        lines.append(f"paper table: {space.paper}")
    return "\n".join(lines)


__all__ = ["describe", "format_table", "format_value"]
