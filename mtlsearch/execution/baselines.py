"""Single-task baselines for delta_m, trained once per setting and cached.

delta_m compares each task of a multi-task model with a single-task model of the
same backbone and training settings. A search with ``baselines: single_task``
trains, before its own trials, one Ray Train run per task with only that task
enabled (regularizer, auxiliary heads and cross-view module off, the first seed).

Cache: the baseline-relevant config (see :meth:`mtlsearch.space.Space.baseline_config`)
is hashed; runs live under ``<storage>/_baselines/<hash>/<task>/`` and their
metrics in ``<storage>/_baselines/<hash>/baselines.json``, which later searches with
the same setting reuse (only missing tasks are trained). Runs are sequential in the
calling process; concurrent searches that need the same missing baseline may both
train it (the file is written atomically, the last writer wins). ``storage`` is a local
folder or a ``pyarrow.fs`` URI (:mod:`mtlsearch.storage`); TensorBoard events of the
baseline runs are kept only with local storage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.layout import BASELINES_DIR, BASELINES_FILE, TENSORBOARD_DIR
from mtlsearch.space import Space, baseline_hash
from mtlsearch.storage import Location
from mtlsearch.storage import parse as parse_storage
from mtlsearch.tasks import TASKS


def primary_metric(task: str) -> str:
    """The reported key of a task's primary metric (``semseg_miou``)."""
    return f"{task}_{TASKS[task].metric}"


def baseline_groups(space: Space, trials: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Distinct baseline settings of a search: hash -> {"tree", "tasks" (name -> weight)}.

    ``trials`` are the expanded trials of a grid/random search; None (optuna) uses the
    static config, which validation guarantees is the only baseline setting.
    """
    groups: dict[str, dict[str, Any]] = {}
    for values in trials if trials is not None else [None]:
        tree = space.baseline_config(values)
        key = baseline_hash(tree)
        tasks = space.trial_config(values or {}).tasks
        group = groups.setdefault(key, {"tree": tree, "tasks": {}})
        group["tasks"].update(tasks)
    return groups


def read_cache(folder: str | Path | Location) -> dict[str, Any]:
    """The cached ``baselines.json`` of one setting (empty structure when absent)."""
    path = parse_storage(folder) / BASELINES_FILE
    if not path.exists():
        return {"config": None, "tasks": {}}

    def corrupt(why: str) -> UserError:
        return UserError(f"{path}: corrupt baselines file ({why}); delete it to retrain")

    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err}") from None
    except UnicodeDecodeError as err:
        raise corrupt(f"not UTF-8: {err.reason} at byte {err.start}") from None
    except (ValueError, RecursionError) as err:
        raise corrupt(str(err) or type(err).__name__) from None
    if not isinstance(data, dict):
        raise corrupt(f"a JSON {type(data).__name__}, not an object")
    data.setdefault("tasks", {})
    if not isinstance(data["tasks"], dict):
        raise corrupt("'tasks' is not a mapping")
    for task, entry in data["tasks"].items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if task not in TASKS or not isinstance(metrics, dict):
            raise corrupt(f"entry {task!r} is not a task with its metrics")
        value = metrics.get(primary_metric(task))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise corrupt(f"entry {task!r} has no numeric {primary_metric(task)}")
    return data


def _write_atomic(path: Location, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def eval_baselines(cache: dict[str, Any], tasks: list[str]) -> dict[str, dict[str, float]]:
    """``eval.baselines`` form ({task: {metric: value}}) of the cached primary metrics."""
    out = {}
    for task in tasks:
        entry = cache["tasks"].get(task)
        if entry is not None:
            metric = TASKS[task].metric
            out[task] = {metric: float(entry["metrics"][primary_metric(task)])}
    return out


def missing_tasks(storage: str | Path | Location, groups: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(hash, task) pairs that still need a baseline run."""
    storage = parse_storage(storage)
    todo = []
    for key, group in groups.items():
        cache = read_cache(storage / BASELINES_DIR / key)
        todo += [(key, t) for t in group["tasks"] if t not in cache["tasks"]]
    return todo


def ensure_baselines(
    space: Space,
    storage: str | Path | Location,
    groups: dict[str, dict[str, Any]],
    *,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] = lambda tree: tree,
) -> dict[str, dict[str, dict[str, float]]]:
    """Train missing single-task baselines; return hash -> ``eval.baselines`` mapping.

    ``prepare`` adjusts a config tree before training (the search makes paths
    absolute). Ray must be initialised. A failed baseline run raises ``RuntimeError``.
    """
    from ray.train import TrainingFailedError

    from mtlsearch.execution.trainer import failure_reason, make_trainer

    out = {}
    storage = parse_storage(storage)
    todo = missing_tasks(storage, groups)
    if todo:
        print(f"single-task baselines: training {len(todo)} run(s) "
              f"({', '.join(t for _, t in todo)}) before the search", flush=True)
    for number, (key, task) in enumerate(todo, 1):
        folder = storage / BASELINES_DIR / key
        folder.mkdir(parents=True, exist_ok=True)
        group = groups[key]
        tree = prepare(dict(group["tree"], tasks={task: group["tasks"][task]}))
        cfg = load_config(tree)
        cfg.name = f"baseline_{task}"
        trainer = make_trainer(
            cfg,
            workers=space.resources.workers,
            cpus_per_worker=space.resources.cpus_per_worker,
            gpus_per_worker=space.resources.gpus_per_worker,
            storage_path=folder,
            name=task,
            tensorboard_dir=folder.local / task / TENSORBOARD_DIR if folder.is_local else None,
        )
        start = time.time()
        print(f"[baseline {number}/{len(todo)}] {task} ({key})", flush=True)
        try:
            result = trainer.fit()
        except TrainingFailedError as err:
            raise RuntimeError(f"single-task baseline {task!r} failed: {failure_reason(err)}") from err
        metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
        if primary_metric(task) not in metrics:
            raise RuntimeError(f"single-task baseline {task!r} reported no {primary_metric(task)}")
        cache = read_cache(folder)
        cache["config"] = group["tree"]
        cache["tasks"][task] = {
            "metrics": metrics,
            "run": str(folder / task),
            "seconds": round(time.time() - start, 1),
        }
        _write_atomic(folder / BASELINES_FILE, cache)
        print(f"[baseline {number}/{len(todo)}] {task}: {primary_metric(task)} = "
              f"{metrics[primary_metric(task)]:.4g}", flush=True)
    for key, group in groups.items():
        out[key] = eval_baselines(read_cache(storage / BASELINES_DIR / key), list(group["tasks"]))
    return out


__all__ = [
    "BASELINES_DIR",
    "BASELINES_FILE",
    "baseline_groups",
    "ensure_baselines",
    "eval_baselines",
    "missing_tasks",
    "primary_metric",
    "read_cache",
]
