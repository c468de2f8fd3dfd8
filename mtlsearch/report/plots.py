"""Report figures (PNG, matplotlib's Agg backend): learning curves, the base and regularizer
losses with alpha on a second axis, metric against data fraction, a Pareto front of two task metrics, parameter importance (Optuna fANOVA) and
sample predictions of the best trial.

Every function writes one PNG and returns what it found; a figure that cannot be drawn
returns ``None`` (or a note) instead of raising, so one missing input never costs the
rest of the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtlsearch.layout import ERROR, OPTUNA_DB  # noqa: E402
from mtlsearch.report.collect import SEED_KEY, Search  # noqa: E402
from mtlsearch.report.papers import arrow, direction_of  # noqa: E402
from mtlsearch.report.tables import AblationTable  # noqa: E402

DPI = 110


def _colors(labels: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lb: cmap(i % cmap.N) for i, lb in enumerate(labels)}


def _trial_labels(table: AblationTable) -> dict[str, str]:
    return {tid: lb for lb, tids in table.trial_ids.items() for tid in tids}


def learning_curves(search: Search, table: AblationTable, metrics: list[str], path: Path) -> Path | None:
    """One panel per metric, one line per trial, coloured by table row."""
    curves = search.curves
    metrics = [m for m in metrics if not curves.empty and m in curves.columns and curves[m].notna().any()]
    if not metrics:
        return None
    xkey = "iteration" if "iteration" in curves.columns and curves["iteration"].notna().any() else "training_iteration"
    labels = _trial_labels(table)
    colors = _colors(table.labels)
    ncol = min(len(metrics), 3)
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    seen: set[str] = set()
    for ax, metric in zip(axes.flat, metrics):
        for tid, frame in curves.groupby("trial_id", sort=False):
            frame = frame[frame[metric].notna()]
            if frame.empty:
                continue
            lb = labels.get(tid, "?")
            style = "--" if frame["status"].iloc[0] == ERROR else "-"
            ax.plot(frame[xkey], frame[metric], style, marker="o", ms=2.5, lw=1.2,
                    color=colors.get(lb, "grey"), label=None if lb in seen else lb)
            seen.add(lb)
        ax.set_title(f"{metric} {arrow(metric)}")
        ax.set_xlabel(xkey)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles = _shared_legend(fig, axes, table)
    # fixed margins: tight_layout costs seconds on a many-panel figure
    fig.subplots_adjust(left=0.06, right=0.98, top=0.93, hspace=0.55, wspace=0.25,
                        bottom=(0.1 + 0.12 / nrow) if handles else 0.08)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


BASE_TERMS = ("loss_", "loss_inter_")
REG_TERMS = ("loss_render_", "loss_aux_", "loss_xview_")
"""Loss parts (``mtlsearch.models.losses.compute_losses``) of the base objective and of
the alpha-weighted regularizer (or auxiliary heads / cross-view) objective."""


def split_losses(curves: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """``loss_base`` = sum_t w_t (loss_t + loss_inter_t) and ``loss_reg`` = sum_t w_t
    (loss_render_t + loss_aux_t + loss_xview_t) per report, from the reported parts and
    the task weights; ``loss_reg`` is NaN for trials without such parts. The regularizer
    loss is not multiplied by alpha, so it does not rise as alpha ramps up (the total
    ``loss`` does); alpha is reported beside it."""
    out = pd.DataFrame(index=curves.index)
    groups = {"loss_base": BASE_TERMS, "loss_reg": REG_TERMS}
    for name, prefixes in groups.items():
        cols = [(f"{prefix}{task}", float(w)) for task, w in weights.items() for prefix in prefixes]
        cols = [(c, w) for c, w in cols if c in curves.columns]
        if not cols:
            out[name] = np.nan
            continue
        values = pd.concat([pd.to_numeric(curves[c], errors="coerce") * w for c, w in cols], axis=1)
        out[name] = values.sum(axis=1, min_count=1)
    return out


def _task_weights(search: Search) -> dict[str, float]:
    return search.meta.task_weights or dict.fromkeys(search.tasks, 1.0)


def loss_curves(search: Search, table: AblationTable, path: Path) -> Path | None:
    """Base task loss and regularizer loss in separate panels, one line per trial
    coloured by table row, with alpha (dotted) on a second y axis of each panel."""
    curves = search.curves
    if curves.empty:
        return None
    split = split_losses(curves, _task_weights(search))
    panels = [c for c in ("loss_base", "loss_reg") if split[c].notna().any()]
    if not panels:
        return None
    data = pd.concat([curves, split], axis=1)
    xkey = "iteration" if "iteration" in data.columns and data["iteration"].notna().any() else "training_iteration"
    labels = _trial_labels(table)
    colors = _colors(table.labels)
    titles = {"loss_base": "base task loss (sum of w_t L_t)",
              "loss_reg": "regularizer loss (sum of w_t L_render_t, before alpha)"}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    seen: set[str] = set()
    for ax, col in zip(axes.flat, panels):
        twin = ax.twinx() if "alpha" in data.columns and data["alpha"].notna().any() else None
        for tid, frame in data.groupby("trial_id", sort=False):
            lb = labels.get(tid, "?")
            color = colors.get(lb, "grey")
            part = frame[frame[col].notna()]
            if not part.empty:
                ax.plot(part[xkey], part[col], "-", marker="o", ms=2.5, lw=1.2, color=color,
                        label=None if lb in seen else lb)
                seen.add(lb)
            if twin is not None:
                a = frame[frame["alpha"].notna()]
                twin.plot(a[xkey], a["alpha"], ":", lw=1.0, color=color)
        ax.set_title(titles[col], fontsize=9)
        ax.set_xlabel(xkey)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if twin is not None:
            twin.set_ylabel("alpha (dotted)")
            twin.set_ylim(bottom=0)
    handles = _shared_legend(fig, axes, table)
    fig.subplots_adjust(left=0.08, right=0.9, top=0.9, wspace=0.45, bottom=0.3 if handles else 0.15)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def fraction_plot(table: AblationTable, metrics: list[str], path: Path,
                  key: str = "data.fraction") -> Path | None:
    """Table 7 style: each metric against the training-data fraction (mean ± std), one
    line per value of the other group keys."""
    if key not in table.group_keys:
        return None
    others = [k for k in table.group_keys if k != key]
    series: dict[str, list[tuple[float, str]]] = {}
    for lb in table.labels:
        try:
            frac = float(table.keys[lb][key])
        except ValueError:
            continue
        name = ", ".join(f"{k.rsplit('.', 1)[-1]}={table.keys[lb][k]}" for k in others) or "all"
        series.setdefault(name, []).append((frac, lb))
    metrics = [m for m in metrics if any(table.cells.get((lb, m)) and table.cells[(lb, m)].n for lb in table.labels)]
    if not metrics or not series:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    colors = _colors(list(series))
    for ax, metric in zip(axes.flat, metrics):
        for name, points in series.items():
            pts = sorted(
                ((f, table.cells[(lb, metric)]) for f, lb in points if table.cells[(lb, metric)].n),
                key=lambda p: p[0],
            )
            if not pts:
                continue
            xs = [f for f, _ in pts]
            ys = np.array([c.mean for _, c in pts])
            err = np.array([0.0 if math.isnan(c.std) else c.std for _, c in pts])
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colors[name], label=name)
        ax.set_xlabel("training data fraction")
        ax.set_title(f"{metric} {arrow(metric)}")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float]], directions: tuple[str, str]) -> list[bool]:
    """Which points are non-dominated (no other point is at least as good on both
    metrics and better on one), given each metric's direction ``"max"``/``"min"``."""
    signs = [1.0 if d == "max" else -1.0 for d in directions]
    scored = [(x * signs[0], y * signs[1]) for x, y in points]
    out = []
    for i, (x, y) in enumerate(scored):
        dominated = any(
            (a >= x and b >= y) and (a > x or b > y) for j, (a, b) in enumerate(scored) if j != i
        )
        out.append(not dominated)
    return out


def pareto_plot(search: Search, table: AblationTable, x: str, y: str, path: Path) -> list[str] | None:
    """Final values of two metrics per trial; the non-dominated trials are ringed and
    joined. Returns the non-dominated trial ids."""
    res = search.results
    cx, cy = f"final_{x}", f"final_{y}"
    dx, dy = direction_of(x), direction_of(y)
    if cx not in res.columns or cy not in res.columns or dx is None or dy is None:
        return None
    ok = res[(res["status"] != ERROR) & res[cx].notna() & res[cy].notna()]
    if len(ok) < 2:
        return None
    pts = list(zip(ok[cx].astype(float), ok[cy].astype(float)))
    front = pareto_front(pts, (dx, dy))
    labels = _trial_labels(table)
    colors = _colors(table.labels)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    seen: set[str] = set()
    for (px, py), tid in zip(pts, ok["trial_id"]):
        lb = labels.get(tid, "?")
        ax.scatter(px, py, color=colors.get(lb, "grey"), s=28, label=None if lb in seen else lb, zorder=3)
        seen.add(lb)
    fpts = sorted(p for p, f in zip(pts, front) if f)
    ax.scatter([p[0] for p in fpts], [p[1] for p in fpts], s=110, facecolors="none",
               edgecolors="black", linewidths=1.3, label="non-dominated", zorder=4)
    ax.plot([p[0] for p in fpts], [p[1] for p in fpts], "k--", lw=0.8, zorder=2)
    ax.set_xlabel(f"{x} {arrow(x)}")
    ax.set_ylabel(f"{y} {arrow(y)}")
    ax.set_title("Pareto front (final values per trial)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return [tid for tid, f in zip(ok["trial_id"], front) if f]


def _as_number(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def build_study(search: Search, objective: pd.Series, direction: str) -> Any:
    """An in-memory Optuna study with one completed trial per finished row of the
    results: params are the ablated keys (seed included, as a noise reference),
    distributions inferred from the values seen (numbers -> float/int range, the rest
    categorical)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    res = search.results
    keys = [k for k in search.ablated_keys if k in res.columns or k == SEED_KEY]
    mask = objective.notna() & (res["status"] != ERROR)
    dists: dict[str, Any] = {}
    converted: dict[str, list[Any]] = {}
    for key in keys:
        col = res["seed"] if key == SEED_KEY and key not in res.columns else res[key]
        values = [str(v) for v in col[mask]]
        if len(set(values)) < 2:
            continue
        nums = _as_number(values)
        if nums is not None and all(not isinstance(v, bool) and v.lower() not in ("true", "false") for v in values):
            if all(float(n).is_integer() and "." not in s for n, s in zip(nums, values)):
                dists[key] = IntDistribution(int(min(nums)), int(max(nums)))
                converted[key] = [int(n) for n in nums]
            else:
                dists[key] = FloatDistribution(min(nums), max(nums))
                converted[key] = nums
        else:
            dists[key] = CategoricalDistribution(sorted(set(values)))
            converted[key] = values
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if direction == "max" else "minimize")
    for i, value in enumerate(objective[mask].astype(float)):
        params = {k: converted[k][i] for k in dists}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(value)))
    return study


def importance_plot(search: Search, objective: pd.Series, objective_name: str, path: Path) -> dict[str, Any] | None:
    """fANOVA parameter importance of ``objective`` (Optuna's evaluator), from the
    search's own Optuna study (``optuna.db``) when it has one, else from an in-memory
    study built from the results. Returns ``{"importances", "source"}``."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    direction = direction_of(objective_name) or "max"
    study = None
    source = "in-memory study built from the trials"
    settings = search.meta.search
    db = search.path / OPTUNA_DB
    if not db.is_file() and settings.optuna_storage:
        db = Path(settings.optuna_storage)
    if db.is_file() and str(settings.algorithm or "").lower() == "optuna":
        # Read-only: optuna would otherwise add its tables to any SQLite file found there.
        url = f"sqlite:///file:{quote(str(db.resolve()))}?mode=ro&uri=true"
        try:
            names = optuna.get_all_study_names(storage=url)
            name = search.name if search.name in names else (names[0] if len(names) == 1 else None)
            study = optuna.load_study(study_name=name, storage=url)
            complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if len(complete) < 2 or len(study.directions) != 1:
                study = None
            else:
                source = f"Optuna study {study.study_name} ({db.name})"
        except Exception:  # noqa: BLE001 - a corrupt or foreign database: use the results
            study = None
    if study is None:
        study = build_study(search, objective, direction)
        # one varying parameter would trivially get all the importance
        if len(study.trials) < 3 or len(study.trials[0].distributions) < 2:
            return None
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):
        return None
    if not imp:
        return None
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(names) + 1.4))
    ax.barh(names, [imp[n] for n in names], color="#4c72b0")
    ax.set_xlabel(f"fANOVA importance for {objective_name}")
    ax.set_title("Parameter importance")
    ax.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return {"importances": dict(imp), "source": source}


# ---------------------------------------------------------------------------
# Sample predictions of the best trial
# ---------------------------------------------------------------------------

_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])


def _task_panels(task: str, label: Any, head: Any, render: Any | None) -> list[np.ndarray]:
    """RGBA pictures of one task's label, head and render (when given), in the task's
    preview colours on one colour scale (``TaskSpec.preview``, ``colour_scale``)."""
    from mtlsearch.tasks import get_task

    spec = get_task(task)
    truth = spec.label_array(label.detach().cpu())
    scale = spec.colour_scale(truth, int(head.shape[0]))
    preds = [head] if render is None else [head, render]
    return [spec.preview(truth, scale)] + [
        spec.preview(spec.decode_prediction(p.detach().float().cpu()), scale, prediction=True) for p in preds
    ]


def sample_predictions(checkpoint: str | Path | None, path: Path, num: int = 3) -> str:
    """Draw image, labels, head outputs and regularizer renders of ``num`` validation
    images for the checkpoint's model. Returns a note saying what was drawn or why not."""
    if not checkpoint or not Path(checkpoint).is_file():
        return "sample predictions skipped: the best trial has no checkpoint"
    try:
        import torch

        from mtlsearch.checkpoint import load_trained_model
        from mtlsearch.data.pipeline import build_datasets
        from mtlsearch.evaluate import model_inputs
    except ImportError as err:
        return f"sample predictions skipped: {err}"
    try:
        model, cfg = load_trained_model(checkpoint)
        val = build_datasets(cfg)[1]
        render = getattr(model, "regularizer", None) is not None
        rows = []
        with torch.no_grad():
            for i in range(min(num, len(val))):
                views = val[i]["views"]
                batched = [{k: v[None] if torch.is_tensor(v) else v for k, v in view.items()} for view in views]
                out = model(**model_inputs(batched, cfg, multiview=False), render=render)
                rows.append((views[0], out))
    except Exception as err:  # noqa: BLE001 - any failure of other modules becomes a note
        return f"sample predictions skipped: {type(err).__name__}: {err}"
    if not rows:
        return "sample predictions skipped: the validation split is empty"
    tasks = list(cfg.tasks)
    cols: list[str] = ["image"]
    for t in tasks:
        cols += [f"{t} label", f"{t} head"]
        if t in rows[0][1].get("renders", {}):
            cols.append(f"{t} render")
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols), 1.6 * len(rows)), squeeze=False)
    for r, (ref, out) in enumerate(rows):
        img = ref["image"].permute(1, 2, 0).numpy() * _STD + _MEAN
        panels = [img.clip(0, 1)]
        for t in tasks:
            rendered = out.get("renders", {}).get(t)
            panels += _task_panels(t, ref["labels"][t], out["heads"][t][0],
                                   None if rendered is None else rendered[0])
        for ax, panel, title in zip(axes[r], panels, cols):
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return f"sample predictions of {len(rows)} validation image(s) from {Path(checkpoint).name}"



def _shared_legend(fig: Any, axes: Any, table: AblationTable) -> bool:
    """One legend under the figure for the rows' labels of every panel; whether any."""
    handles, names = [], []
    for ax in axes.flat:
        h, n = ax.get_legend_handles_labels()
        handles += h
        names += n
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), fontsize=8,
                   title=" / ".join(table.group_keys) or None, title_fontsize=8)
    return bool(handles)


__all__ = [
    "build_study",
    "fraction_plot",
    "importance_plot",
    "learning_curves",
    "pareto_front",
    "pareto_plot",
    "sample_predictions",
]
