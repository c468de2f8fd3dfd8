"""``mtlsearch best SEARCH``: the best finished trial (or the Pareto set) with its whole config.

Contract: :func:`best_trials` reads a search folder through
:func:`mtlsearch.report.collect.collect` (the per-trial ``params.json`` / ``result.json``
/ ``error.txt`` files) and ranks the finished (``TERMINATED``) trials by their last
reported value of the metric: the search's own ``search.metric`` / ``mode`` unless
``--metric`` (direction from the metric registry, or ``--mode``) is given. A list of
metrics (multi-objective search, or ``--metric a,b``) gives the Pareto set, ordered by
the first metric.
Each :class:`Best` holds the trial's FULL resolved config as trained: the trial's
``config.yaml`` (written by :func:`mtlsearch.search.trial` when it started), else
rebuilt from ``mtlsearch.json`` (the space file, profile, ``--set`` and sections) and
the trial's values; single-task baselines are folded into ``eval.baselines``.

``--out FILE`` writes that config as YAML with a comment header (search, trial,
metrics, checkpoint); ``mtlsearch train FILE`` reproduces the trial (same seed, same
data). For a Pareto set, the other members go to ``FILE``'s stem + ``.<trial id>.yaml``.
Files follow the write rule of :mod:`mtlsearch.outputs`: a new path, or a file an
earlier ``mtlsearch best`` wrote (its first line is :data:`HEADER`), replaced atomically;
anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.outputs import check_file, write_file
from mtlsearch.space.text import format_value

HEADER = "# written by mtlsearch best"
"""First line of every file ``mtlsearch best --out`` writes (how it recognises its own)."""
CONFIG_FILE = "config.yaml"
FINISHED = "TERMINATED"


@dataclass
class Best:
    """One selected trial."""

    trial_id: str
    trial_dir: Path | None
    values: dict[str, float]
    """The ranked metrics' last reported values."""
    metrics: dict[str, float]
    """Every metric of the trial's last report."""
    checkpoint: str
    config: dict[str, Any]
    """The whole resolved config (nested), as trained."""


def _metrics_and_modes(meta: dict[str, Any], metric: str | None, mode: str | None) -> tuple[list[str], list[str]]:
    from mtlsearch.config.registries import metric_direction

    search = meta.get("search") if isinstance(meta.get("search"), dict) else {}
    if metric is None:
        metric = search.get("metric") or "loss"
        mode = mode or search.get("mode")
    elif "," in metric:
        metric = [m.strip() for m in metric.split(",") if m.strip()]
    metrics = list(metric) if isinstance(metric, list) else [str(metric)]
    if mode is None:
        modes = [metric_direction(m) or "min" for m in metrics]
    else:
        modes = list(mode) if isinstance(mode, list) else [str(mode)]
    if len(modes) != len(metrics):
        raise UserError(f"give one mode per metric: {metrics} vs {modes}")
    return metrics, modes


def _dominates(a: list[float], b: list[float], modes: list[str]) -> bool:
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    ge = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    gt = any(s * x > s * y for s, x, y in zip(signs, a, b))
    return ge and gt


def rebuild_config(search_dir: Path, meta: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config from ``mtlsearch.json`` and its ``params.json`` (for searches that
    predate the trial's ``config.yaml``): the space file reloaded with the stored profile,
    ``--set`` and sections, the planned row (grid/random) or the sampled values."""
    from mtlsearch.search import absolutize
    from mtlsearch.space import INDEX_KEY, load_space

    space_path = meta.get("space_path")
    if not isinstance(space_path, str) or not Path(space_path).is_file():
        raise UserError(f"{search_dir}: the trial has no {CONFIG_FILE} and the space file "
                        f"{space_path!r} named in mtlsearch.json is gone; cannot rebuild its config")
    sections = meta.get("cli_sections") if isinstance(meta.get("cli_sections"), dict) else None
    space = load_space(space_path, meta.get("profile"), meta.get("overrides") or [], sections)
    planned = meta.get("planned_trials")
    index = params.get(INDEX_KEY)
    if isinstance(planned, list) and isinstance(index, int) and 0 <= index < len(planned):
        values = dict(planned[index])
    else:
        values = {k: v for k, v in params.items() if k != INDEX_KEY}
    # Relative paths meant the launch folder; with the default --storage trials/ that is
    # the folder above trials/ (mtlsearch.json does not record it).
    tree = absolutize(space.tree(values), str(search_dir.resolve().parent.parent))
    return load_config(tree).to_dict()


def _single_baselines(meta: dict[str, Any]) -> dict[str, Any]:
    raw = meta.get("single_task_baselines")
    if isinstance(raw, dict) and len(raw) == 1:
        only = next(iter(raw.values()))
        if isinstance(only, dict) and isinstance(only.get("metrics"), dict):
            return only["metrics"]
    return {}


def _trial_config(search_dir: Path, meta: dict[str, Any], tdir: Path | None) -> dict[str, Any]:
    from mtlsearch.yamlio import load_mapping, plain

    if tdir is not None and (tdir / CONFIG_FILE).is_file():
        tree = plain(load_mapping(tdir / CONFIG_FILE, "trial config"))
        return load_config(tree).to_dict()
    params: dict[str, Any] = {}
    if tdir is not None and (tdir / "params.json").is_file():
        try:
            loaded = json.loads((tdir / "params.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UserError(f"{tdir / 'params.json'}: unreadable ({type(err).__name__})") from None
        params = loaded if isinstance(loaded, dict) else {}
    cfg = rebuild_config(search_dir, meta, params)
    baselines = _single_baselines(meta)
    if baselines:
        cfg = load_config(cfg, {"eval.baselines": {**cfg["eval"]["baselines"], **baselines}}).to_dict()
    return cfg


def best_trials(search_dir: str | Path, metric: str | None = None, mode: str | None = None) -> tuple[list[Best], list[str], list[str]]:
    """The best finished trial, or the Pareto set of a multi-objective ranking, with the
    metrics and modes used. Raises :class:`UserError` when no trial finished with them."""
    from mtlsearch.report.collect import collect

    path = Path(search_dir)
    search = collect(path)
    metrics, modes = _metrics_and_modes(search.meta, metric, mode)
    for m in modes:
        if m not in ("max", "min"):
            raise UserError(f"--mode: expected max or min, got {m!r}")
    frame = search.results
    missing = [m for m in metrics if f"final_{m}" not in frame.columns]
    if missing:
        known = ", ".join(k for k in search.metric_keys) or "none"
        raise UserError(f"--metric: no trial of {path} reported {', '.join(missing)} (reported: {known})")
    candidates = []
    for _, row in frame.iterrows():
        if row.get("status") != FINISHED:
            continue
        values = [row.get(f"final_{m}") for m in metrics]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            candidates.append((row, [float(v) for v in values]))
    if not candidates:
        counts = frame["status"].value_counts().to_dict() if "status" in frame else {}
        raise UserError(f"{path}: no finished trial reported {', '.join(metrics)} yet "
                        f"(trials by status: {counts or 'none'}); see mtlsearch status {path}")
    if len(metrics) == 1:
        pick = max if modes[0] == "max" else min
        chosen = [pick(candidates, key=lambda c: c[1][0])]
    else:
        chosen = [c for c in candidates if not any(_dominates(o[1], c[1], modes) for o in candidates)]
        chosen.sort(key=lambda c: c[1][0], reverse=modes[0] == "max")
    out = []
    for row, values in chosen:
        tdir = path / row["trial_dir"] if row.get("trial_dir") else None
        last = {k[len("final_"):]: float(v) for k, v in row.items()
                if isinstance(k, str) and k.startswith("final_") and isinstance(v, (int, float))
                and math.isfinite(v)}
        out.append(Best(
            trial_id=str(row["trial_id"]), trial_dir=tdir, values=dict(zip(metrics, values)),
            metrics=last, checkpoint=str(row.get("checkpoint") or ""),
            config=_trial_config(path, search.meta, tdir),
        ))
    return out, metrics, modes


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def best_yaml(best: Best, search_dir: Path, metrics: list[str], modes: list[str]) -> str:
    """The file ``--out`` writes: a comment header, then the whole config."""
    from mtlsearch.yamlio import plain

    ranked = ", ".join(f"{m} ({md}) = {format_value(best.values[m])}" for m, md in zip(metrics, modes))
    lines = [
        HEADER,
        f"# search: {search_dir}",
        f"# trial: {best.trial_id}",
        f"# ranked by: {ranked}",
        f"# checkpoint: {best.checkpoint or '(none)'}",
        "# final metrics: " + ", ".join(f"{k}={format_value(v)}" for k, v in sorted(best.metrics.items())),
        "# reproduce: mtlsearch train THIS_FILE",
    ]
    body = yaml.safe_dump(plain(best.config), sort_keys=False, default_flow_style=None)
    return "\n".join(lines) + "\n" + body


def _written_by_best(path: Path) -> bool:
    """Whether the file at ``path`` starts with :data:`HEADER`."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(200).decode("utf-8", errors="replace").rstrip("\r\n")
    except OSError:
        first = ""
    return first == HEADER


def check_yaml_target(out: str | Path, flag: str = "--out") -> Path:
    """``out`` absolute, if it may be written: a new path, or a file this command wrote."""
    return check_file(out, flag=flag, expected="a YAML file name such as best.yaml",
                      ours=_written_by_best, writer="mtlsearch best")


def targets(out: str | Path, chosen: list[Best]) -> list[Path]:
    """Where ``--out`` puts each selected trial (the first at ``out`` itself)."""
    first = Path(out)
    paths = [first]
    for best in chosen[1:]:
        paths.append(first.with_name(f"{first.stem}.{best.trial_id}{first.suffix or '.yaml'}"))
    return paths


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch best SEARCH [--metric M] [--mode max|min] [--out FILE]``."""
    if args.mode is not None and args.metric is None:
        raise UserError("--mode: give it with --metric (the search's own metric has its mode)")
    paths = None
    if args.out is not None:
        check_yaml_target(args.out)  # before reading anything large
    search_dir = Path(args.search_dir)
    chosen, metrics, modes = best_trials(search_dir, args.metric, args.mode)
    if args.out is not None:
        paths = [check_yaml_target(p) for p in targets(args.out, chosen)]
    title = "Pareto set" if len(metrics) > 1 else "best trial"
    ranked = ", ".join(f"{m} ({md})" for m, md in zip(metrics, modes))
    print(f"{title} of {search_dir} by {ranked}:")
    for i, best in enumerate(chosen):
        shown = ", ".join(f"{m}={format_value(v)}" for m, v in best.values.items())
        print(f"  trial {best.trial_id}: {shown}")
        print(f"    checkpoint: {best.checkpoint or '(none)'}")
        others = {k: v for k, v in sorted(best.metrics.items()) if k not in best.values}
        if others:
            print("    metrics: " + ", ".join(f"{k}={format_value(v)}" for k, v in others.items()))
        if paths is not None:
            write_file(paths[i], best_yaml(best, search_dir, metrics, modes))
            print(f"    config: {paths[i]}  (reproduce: mtlsearch train {paths[i]})")
    if paths is None:
        print("write the whole config with --out best.yaml; mtlsearch train best.yaml reproduces it")
    return 0


__all__ = ["HEADER", "Best", "best_trials", "best_yaml", "check_yaml_target", "rebuild_config", "run_cli"]
