"""``mtlsearch best SEARCH``: the best configuration (or the Pareto set), ranked by its mean
over seeds, with the whole config its retrain uses.

Contract: :func:`best_trials` reads a search folder through
:func:`mtlsearch.report.collect.collect` (the per-trial ``params.json`` / ``result.json``
/ ``error.txt`` files), groups the finished (``TERMINATED``) trials into configurations
(every parameter but ``train.seed`` and the grid index: :mod:`mtlsearch.report.configs`)
and ranks the configurations by the mean over their seeds of each trial's last reported
value of the metric: the search's own ``search.metric`` / ``mode`` unless ``--metric``
(direction from the metric registry, or ``--mode``) is given. Each comes with n, the
std and the t-based 95% interval of that mean. A list of metrics (multi-objective search,
or ``--metric a,b``) gives the Pareto set of the configurations' means, ordered by the
first metric. A luckier single seed never wins: a configuration with seeds 9.8 and 8.9
(mean 9.35) ranks below one with 9.6 and 9.6.

The retrain seed: of the configuration's trials, the one whose values are closest to the
configuration's means (:func:`mtlsearch.report.configs.representative`: smallest sum of
squared z-scores over the ranked metrics; ties, as always with two seeds, go to the
smallest seed). Each :class:`Best` holds that trial's FULL resolved config as trained,
seed included: the trial's ``config.yaml`` (written by :func:`mtlsearch.execution.search.trial`
when it started), else rebuilt from ``mtlsearch.json`` (the space file, profile,
``--set`` and sections) and the trial's values; single-task baselines are folded into
``eval.baselines``.

``--out FILE`` writes that config as YAML with a comment header (search, configuration,
its mean over seeds, the retrain seed and why, the trial, its metrics and checkpoint);
``mtlsearch train FILE`` reproduces that trial (same seed, same data), ``--set
train.seed=S`` trains the configuration at another seed. For a Pareto set, the other
members go to ``FILE``'s stem + ``.<trial id>.yaml``. Files follow the write rule of
:mod:`mtlsearch.outputs`: a new path, or a file an earlier ``mtlsearch best`` wrote (its
first line is :data:`HEADER`), replaced atomically; anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.layout import CONFIG_FILE, FINISHED, PARAMS_FILE
from mtlsearch.outputs import check_file, write_file
from mtlsearch.records import SearchMeta
from mtlsearch.space.text import format_value

HEADER = "# written by mtlsearch best"
"""First line of every file ``mtlsearch best --out`` writes (how it recognises its own)."""


SEED_RULE = "the trial closest to the configuration's mean (ties: the smallest seed)"
"""How the retrain seed is chosen (printed and written with it)."""
RANKED_SHOWN = 10
"""Configurations listed in the ranking ``mtlsearch best`` prints."""


@dataclass
class Best:
    """One selected configuration and the trial its retrain reproduces."""

    trial_id: str
    """The representative trial: closest to the configuration's mean (its seed retrains)."""
    trial_dir: Path | None
    values: dict[str, float]
    """The ranked metrics' means over the configuration's seeds."""
    metrics: dict[str, float]
    """Every metric of the representative trial's last report (what a retrain reproduces)."""
    checkpoint: str
    config: dict[str, Any]
    """The whole resolved config (nested) of the representative trial, its seed included."""
    label: str = ""
    """The configuration: ``key=value`` of the keys that vary between configurations."""
    seed: Any = None
    """The retrain seed (the representative trial's)."""
    trial_ids: list[str] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    """The configuration's finished trials and their seeds."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Ranked metric -> :class:`mtlsearch.report.stats.Summary` over the seeds."""
    trial_values: dict[str, list[float]] = field(default_factory=dict)
    """Ranked metric -> the value of each of ``trial_ids``."""
    ranking: list[Any] = field(default_factory=list)
    """Every ranked configuration (single metric), best first; empty for a Pareto set."""


def metrics_and_modes(meta: SearchMeta, metric: str | None, mode: str | None) -> tuple[list[str], list[str]]:
    from mtlsearch.config.registries import metric_direction

    if metric is None:
        metric = meta.search.metric or "loss"
        mode = mode or meta.search.mode
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


def rebuild_config(search_dir: Path, meta: SearchMeta, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config from ``mtlsearch.json`` and its ``params.json`` (for searches that
    predate the trial's ``config.yaml``): the space file reloaded with the stored profile,
    ``--set`` and sections, the planned row (grid/random) or the sampled values."""
    from mtlsearch.execution.search import absolutize
    from mtlsearch.space import INDEX_KEY, load_space

    space_path = meta.space_path
    if space_path is None or not Path(space_path).is_file():
        raise UserError(f"{search_dir}: the trial has no {CONFIG_FILE} and the space file "
                        f"{space_path!r} named in mtlsearch.json is gone; cannot rebuild its config")
    overrides = meta.overrides if isinstance(meta.overrides, list) else []
    space = load_space(space_path, meta.profile, overrides, meta.cli_sections)
    planned = meta.planned_trials
    index = params.get(INDEX_KEY)
    if planned is not None and isinstance(index, int) and 0 <= index < len(planned):
        values = dict(planned[index])
    else:
        values = {k: v for k, v in params.items() if k != INDEX_KEY}
    # Relative paths meant the launch folder (recorded; before it was, the default
    # --storage trials/ made it the folder above trials/).
    launch = meta.launch_dir or str(search_dir.resolve().parent.parent)
    tree = absolutize(space.tree(values), launch)
    return load_config(tree).to_dict()


def _single_baselines(meta: SearchMeta) -> dict[str, Any]:
    raw = meta.single_task_baselines
    if raw is not None and len(raw) == 1:
        only = next(iter(raw.values()))
        if isinstance(only, dict) and isinstance(only.get("metrics"), dict):
            return only["metrics"]
    return {}


def _trial_config(search_dir: Path, meta: SearchMeta, tdir: Path | None) -> dict[str, Any]:
    from mtlsearch.yamlio import load_mapping, plain

    if tdir is not None and (tdir / CONFIG_FILE).is_file():
        tree = plain(load_mapping(tdir / CONFIG_FILE, "trial config"))
        return load_config(tree).to_dict()
    params: dict[str, Any] = {}
    if tdir is not None and (tdir / PARAMS_FILE).is_file():
        try:
            loaded = json.loads((tdir / PARAMS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UserError(f"{tdir / 'params.json'}: unreadable ({type(err).__name__})") from None
        params = loaded if isinstance(loaded, dict) else {}
    cfg = rebuild_config(search_dir, meta, params)
    baselines = _single_baselines(meta)
    if baselines:
        cfg = load_config(cfg, {"eval.baselines": {**cfg["eval"]["baselines"], **baselines}}).to_dict()
    return cfg


def best_trials(search_dir: str | Path, metric: str | None = None, mode: str | None = None) -> tuple[list[Best], list[str], list[str]]:
    """The best configuration by its mean over seeds, or the Pareto set of the
    configurations' means, with the metrics and modes used. Raises :class:`UserError`
    when no trial finished with them."""
    from mtlsearch.report import configs as cf
    from mtlsearch.report.collect import collect

    path = Path(search_dir)
    search = collect(path)
    metrics, modes = metrics_and_modes(search.meta, metric, mode)
    for m in modes:
        if m not in ("max", "min"):
            raise UserError(f"--mode: expected max or min, got {m!r}")
    frame = search.results
    missing = [m for m in metrics if f"final_{m}" not in frame.columns]
    if missing:
        known = ", ".join(k for k in search.metric_keys) or "none"
        raise UserError(f"--metric: no trial of {path} reported {', '.join(missing)} (reported: {known})")
    found = cf.from_search(search, metrics, statuses=(FINISHED,))
    if not found:
        counts = frame["status"].value_counts().to_dict() if "status" in frame else {}
        raise UserError(f"{path}: no finished trial reported {', '.join(metrics)} yet "
                        f"(trials by status: {counts or 'none'}); see mtlsearch status {path}")
    ranked = cf.rank(found, metrics, modes)
    chosen = ranked[:1] if len(metrics) == 1 else ranked
    shown = cf.varying_keys(found)
    rows = frame.set_index(frame["trial_id"].astype(str))
    out = []
    for conf in chosen:
        rep = cf.representative(conf, metrics)
        row = rows.loc[rep.trial_id]
        tdir = path / row["trial_dir"] if row.get("trial_dir") else None
        last = {k[len("final_"):]: float(v) for k, v in row.items()
                if isinstance(k, str) and k.startswith("final_") and isinstance(v, (int, float))
                and math.isfinite(v)}
        out.append(Best(
            trial_id=rep.trial_id, trial_dir=tdir, values={m: conf.mean(m) for m in metrics},
            metrics=last, checkpoint=str(row.get("checkpoint") or ""),
            config=_trial_config(path, search.meta, tdir), label=conf.label(shown), seed=rep.seed,
            trial_ids=[t.trial_id for t in conf.trials], seeds=conf.seeds,
            stats={m: conf.stats[m] for m in metrics},
            trial_values={m: conf.values(m) for m in metrics},
            ranking=[(c.label(shown), c.n, {m: c.stats[m] for m in metrics}) for c in ranked]
            if len(metrics) == 1 else [],
        ))
    return out, metrics, modes


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _seeds_text(best: Best) -> str:
    return ", ".join(format_value(x) for x in best.seeds)


def ranked_text(best: Best, metrics: list[str], modes: list[str]) -> str:
    """``semseg_miou (max): mean 9.6 ± 0 (95% CI [9.6, 9.6], n=2)`` per ranked metric."""
    from mtlsearch.report.configs import describe_stats

    return "; ".join(f"{m} ({md}): mean {describe_stats(best.stats[m])}" if m in best.stats
                     else f"{m} ({md}) = {format_value(best.values[m])}" for m, md in zip(metrics, modes))


def best_yaml(best: Best, search_dir: Path, metrics: list[str], modes: list[str]) -> str:
    """The file ``--out`` writes: a comment header, then the whole config."""
    from mtlsearch.yamlio import plain

    lines = [
        HEADER,
        f"# search: {search_dir}",
        f"# configuration: {best.label or '(the only configuration)'}",
        f"# ranked by the mean over seeds {_seeds_text(best)}: {ranked_text(best, metrics, modes)}",
        f"# seeds' trials: {', '.join(best.trial_ids) or best.trial_id}",
        f"# retrain seed: {format_value(best.seed)}: {SEED_RULE}",
        f"# trial: {best.trial_id}",
        f"# checkpoint: {best.checkpoint or '(none)'}",
        "# final metrics: " + ", ".join(f"{k}={format_value(v)}" for k, v in sorted(best.metrics.items())),
        "# (final metrics: that trial's last report, which the retrain reproduces)",
        "# reproduce: mtlsearch train THIS_FILE   (another seed: --set train.seed=S)",
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
    title = "Pareto set of the configurations" if len(metrics) > 1 else "best configuration"
    ranked = ", ".join(f"{m} ({md})" for m, md in zip(metrics, modes))
    print(f"{title} of {search_dir} by {ranked}, mean over seeds:")
    for i, best in enumerate(chosen):
        print(f"  {best.label or '(the only configuration)'}: {ranked_text(best, metrics, modes)}")
        for m in metrics:
            each = ", ".join(f"{format_value(v)} (seed {format_value(sd)})"
                             for v, sd in zip(best.trial_values.get(m, []), best.seeds))
            print(f"    {m} per seed: {each}")
        print(f"    retrain seed {format_value(best.seed)}: trial {best.trial_id}, {SEED_RULE}")
        print(f"    checkpoint: {best.checkpoint or '(none)'}")
        others = {k: v for k, v in sorted(best.metrics.items()) if k not in best.values}
        if others:
            print(f"    metrics of trial {best.trial_id}: "
                  + ", ".join(f"{k}={format_value(v)}" for k, v in others.items()))
        if paths is not None:
            write_file(paths[i], best_yaml(best, search_dir, metrics, modes))
            print(f"    config: {paths[i]}  (reproduce: mtlsearch train {paths[i]}; "
                  "another seed: --set train.seed=S)")
    if len(metrics) == 1 and len(chosen[0].ranking) > 1:
        print(ranking_text(chosen[0], metrics[0]))
    if paths is None:
        print("write the whole config with --out best.yaml; mtlsearch train best.yaml reproduces it")
    return 0


def ranking_text(best: Best, metric: str) -> str:
    """The ranked configurations (at most :data:`RANKED_SHOWN`) as a plain table."""
    from mtlsearch.space.text import format_table

    rows = [{"rank": i + 1, "configuration": label, "n": n, f"mean {metric}": st[metric].mean,
             "std": st[metric].std if n > 1 else None,
             "95% CI": f"[{format_value(st[metric].lo)}, {format_value(st[metric].hi)}]" if n > 1 else None}
            for i, (label, n, st) in enumerate(best.ranking[:RANKED_SHOWN])]
    more = len(best.ranking) - RANKED_SHOWN
    text = "configurations by mean over seeds:\n" + format_table(
        rows, ["rank", "configuration", "n", f"mean {metric}", "std", "95% CI"])
    return text + (f"\n({more} more)" if more > 0 else "")


__all__ = ["HEADER", "SEED_RULE", "Best", "best_trials", "best_yaml", "check_yaml_target", "ranking_text",
           "rebuild_config", "run_cli"]
