"""Hand-written search folders (no Ray): what ``mtlsearch search`` leaves in
``trials/<name>/``, small enough to build per test. Both write the metadata in the shape
:class:`mtlsearch.records.SearchMeta` writes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mtlsearch.config import load_config


def make_search(root: Path, name: str = "hand", trials: int = 4) -> Path:
    """``root/name/`` with ``mtlsearch.json`` and ``trials`` finished trials
    (``regularizer.tasks`` semseg or all, seeds 0 and 1), three reports each."""
    folder = root / name
    folder.mkdir(parents=True)
    meta = {
        "name": name, "space": {"name": name}, "profile": None, "overrides": [],
        "ablated_keys": ["regularizer.tasks", "train.seed"], "search": {"algorithm": "grid"},
        "tasks": {"semseg": {"weight": 1.0}, "depth": {"weight": 1.0}}, "single_task_baselines": None,
    }
    (folder / "mtlsearch.json").write_text(json.dumps(meta))
    for i in range(trials):
        tasks = ["semseg"] if i % 2 == 0 else "all"
        seed = i // 2
        trial = folder / f"a{i:04x}_{i:05d}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"regularizer.tasks": tasks, "train.seed": seed}))
        rows = [
            {"iteration": 10 * (k + 1), "semseg_miou": 40.0 + i + k, "depth_rmse": 0.5 - 0.01 * k,
             "done": k == 2, "training_iteration": k + 1}
            for k in range(3)
        ]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def make_finished_search(root: Path, *, finished: int = 3, metric: object = "semseg_miou", mode: object = "max") -> Path:
    """A search folder as ``mtlsearch search`` leaves it: ``finished`` finished trials
    with config.yaml, plus one errored and one interrupted trial."""
    folder = root / "trials" / "hand"
    folder.mkdir(parents=True)
    meta = {"name": "hand", "space": {"name": "hand"}, "profile": None, "overrides": [],
            "ablated_keys": ["train.lr"],
            "search": {"algorithm": "grid", "metric": metric, "mode": mode, "num_trials": finished + 2},
            "tasks": {"semseg": {"weight": 1.0}, "depth": {"weight": 2.0}}, "single_task_baselines": None}
    (folder / "mtlsearch.json").write_text(json.dumps(meta))
    scores = [(30.0, 0.60), (45.0, 0.70), (40.0, 0.50), (50.0, 0.90), (10.0, 1.0)]
    for i in range(finished + 2):
        trial = folder / f"abcde_{i:05d}"
        trial.mkdir()
        lr = 0.001 * (i + 1)
        (trial / "params.json").write_text(json.dumps({"trial_index": i, "train.lr": lr, "train.seed": 0}))
        miou, rmse = scores[i % len(scores)]
        rows = [{"iteration": 2 * (k + 1), "training_iteration": k + 1, "semseg_miou": miou - 5 + 5 * k,
                 "depth_rmse": rmse, "loss": 3.0 - k, "loss_semseg": 1.0, "loss_depth": 0.5 - 0.1 * k,
                 "loss_render_semseg": 2.0, "alpha": 2.0 * k, "done": k == 1 and i < finished}
                for k in range(2)]
        if i == finished:  # errored
            (trial / "error.txt").write_text("Failure # 1\nRuntimeError: trial failed: boom\n")
            rows = rows[:1]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = load_config(None, {"train.lr": lr, "tasks": {"semseg": 1.0, "depth": 2.0}})
        (trial / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
        if i < finished:
            (trial / "checkpoint_000001").mkdir()
            (trial / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x")
    return folder
