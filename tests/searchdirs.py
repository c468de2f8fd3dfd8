"""Hand-written search folders (no Ray): what ``mtlsearch search`` leaves in
``trials/<name>/``, small enough to build per test."""

from __future__ import annotations

import json
from pathlib import Path


def make_search(root: Path, name: str = "hand", trials: int = 4) -> Path:
    """``root/name/`` with ``mtlsearch.json`` and ``trials`` finished trials
    (``regularizer.tasks`` semseg or all, seeds 0 and 1), three reports each."""
    folder = root / name
    folder.mkdir(parents=True)
    meta = {
        "name": name, "space": {"name": name}, "profile": None, "overrides": [],
        "ablated_keys": ["regularizer.tasks", "train.seed"], "search": {"algorithm": "grid"},
        "tasks": {"semseg": 1.0, "depth": 1.0}, "single_task_baselines": None,
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
