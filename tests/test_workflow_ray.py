"""The researcher's workflow through Ray (slow): an MLflow-tracked search, ``best`` and a
retrain from its YAML at the same seed; an Optuna NSGA-II search; HyperBand and PBT.

Tiny trials (4 iterations of a 4-room SynthRooms at 32x40) sharing one local Ray (the
``ray_session`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
import yaml

from mtlsearch.cli import build_parser
from tests.tiny import tiny_base, write_space

pytestmark = pytest.mark.slow


def run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    module, func = args._handler.split(":")
    import importlib

    return getattr(importlib.import_module(module), func)(args)


def results(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p.parent for p in exp.glob("*/params.json"))


def test_tracked_search_best_and_retrain_reach_the_same_metrics(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "tracked", "base": tiny_base(ray_session),
        "space": {"train.lr": {"grid": [0.001, 0.003]}},
        "search": {"algorithm": "grid", "metric": "depth_rmse"},
        "max_concurrent_trials": 2,
    })
    assert run("search", str(space), "--storage", "trials", "--tracking", "mlflow") == 0
    exp = tmp_path / "trials" / "tracked"
    assert json.loads((exp / "mtlsearch.json").read_text())["tracking"] == {"mlflow": {}}
    for trial in trial_dirs(exp):
        assert (trial / "config.yaml").is_file()

    # MLflow's own reader: one finished run per trial, params and the metric's history.
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["train.lr"] for r in runs} == {"0.001", "0.003"}
    history = client.get_metric_history(runs[0].info.run_id, "depth_rmse")
    assert len(history) == 2

    capsys.readouterr()
    assert run("status", str(exp)) == 0
    assert "2 terminated" in capsys.readouterr().out
    assert run("best", str(exp), "--out", "best.yaml") == 0
    text = (tmp_path / "best.yaml").read_text()
    final = dict(re.findall(r"(\w+)=([-\d.e+]+)", text.split("# final metrics: ")[1].splitlines()[0]))
    assert "depth_rmse" in final

    capsys.readouterr()
    assert run("train", "best.yaml", "--storage", str(tmp_path / "runs")) == 0
    printed = dict(re.findall(r"^  (\w+): (\S+)$", capsys.readouterr().out, re.M))
    for key in ("depth_rmse", "semseg_miou", "loss"):
        assert printed[key] == final[key], key


def test_nsga2_multi_objective_search(ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from mtlsearch.best import best_trials

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "nsga", "base": tiny_base(ray_session),
        "fixed": {"regularizer.enabled": True},
        "space": {"regularizer.alpha.max": {"uniform": [0.5, 4.0]}},
        "search": {"algorithm": "optuna", "sampler": "nsga2", "population_size": 2,
                   "metric": ["semseg_miou", "depth_rmse"], "mode": ["max", "min"], "num_samples": 2},
        "max_concurrent_trials": 2,
    })
    assert run("search", str(space), "--storage", "trials", "--seed", "3") == 0
    exp = tmp_path / "trials" / "nsga"
    study = optuna.load_study(study_name="nsga", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 2 and len(study.directions) == 2
    chosen, metrics, _ = best_trials(exp)
    assert metrics == ["semseg_miou", "depth_rmse"] and 1 <= len(chosen) <= 2
    assert all(b.config["regularizer"]["enabled"] for b in chosen)


def test_an_interrupted_nsga2_search_resumes_with_its_sampler(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the first trial, then ``--resume``: Tune restores the pickled NSGA-II
    searcher (which Optuna 5.1 could not pickle) and the study ends with every trial."""
    import signal
    import sqlite3
    import threading
    import time


    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "nsga-resume", "base": tiny_base(ray_session),
        "space": {"train.lr": {"loguniform": [0.001, 0.01]}},
        "search": {"algorithm": "optuna", "sampler": "nsga2", "population_size": 2,
                   "metric": ["semseg_miou", "depth_rmse"], "mode": ["max", "min"], "num_samples": 3},
        "max_concurrent_trials": 1,
    })
    exp = tmp_path / "trials" / "nsga-resume"

    def finished() -> int:
        """Complete trials in the study, read without writing: opening the database
        through Optuna while the search creates it races its schema setup."""
        db = exp / "optuna.db"
        if not db.is_file():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                return int(con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0])
        except sqlite3.Error:
            return 0

    def interrupt_after_the_first_trial() -> None:
        deadline = time.time() + 300
        while finished() < 1 and time.time() < deadline:
            time.sleep(0.5)
        signal.raise_signal(signal.SIGINT)

    watcher = threading.Thread(target=interrupt_after_the_first_trial, daemon=True)
    watcher.start()
    with contextlib.suppress(KeyboardInterrupt):
        run("search", str(space), "--storage", "trials", "--seed", "3")
    watcher.join()
    assert 1 <= finished() < 3
    assert run("search", str(space), "--storage", "trials", "--seed", "3", "--resume") == 0
    assert finished() == 3
    assert len(trial_dirs(exp)) == 3


def test_an_optuna_search_on_two_seeds_tells_the_sampler_each_configurations_mean(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 configurations x 2 seeds = 4 Ray trials; the study holds 2 trials, each with
    exactly the mean of its two seeds' final values (both objectives)."""
    import optuna

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "seeded", "base": tiny_base(ray_session),
        "space": {"train.lr": {"loguniform": [0.001, 0.01]}},
        "seeds": [0, 1],
        "search": {"algorithm": "optuna", "metric": ["semseg_miou", "depth_rmse"], "mode": ["max", "min"],
                   "num_samples": 2},
        "max_concurrent_trials": 2,
    })
    assert run("search", str(space), "--storage", "trials", "--seed", "3") == 0
    exp = tmp_path / "trials" / "seeded"
    by_lr: dict[float, list[dict]] = {}
    for folder in trial_dirs(exp):
        params = json.loads((folder / "params.json").read_text())
        by_lr.setdefault(params["train.lr"], []).append({**results(folder)[-1], "seed": params["train.seed"]})
    assert len(by_lr) == 2 and all(sorted(r["seed"] for r in rows) == [0, 1] for rows in by_lr.values())
    study = optuna.load_study(study_name="seeded", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 2
    for t in study.trials:
        rows = by_lr[t.params["train.lr"]]
        assert t.values == pytest.approx([sum(r[m] for r in rows) / 2 for m in ("semseg_miou", "depth_rmse")])


def test_an_adaptive_search_gives_a_clearly_worse_configuration_fewer_seeds(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``seeds: {initial: 3, max: 4}`` on the loss: a depth weight of 100 (a loss about
    30x larger) stops at its 3 seeds; the two nearly equal weights overlap and get a
    fourth; the status says finished. (With 2 seeds a 95% t interval is +-12.7 sd / sqrt 2:
    measured here, even the 30x larger loss overlapped.)"""
    from mtlsearch.layout import REPLICATION_FILE
    from mtlsearch.status import search_state

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "adaptive", "base": tiny_base(ray_session),
        "space": {"tasks.depth": {"grid": [1.0, 1.01, 100.0]}},
        "seeds": {"initial": 3, "max": 4},
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "max_concurrent_trials": 2,
    })
    assert run("search", str(space), "--storage", "trials") == 0
    exp = tmp_path / "trials" / "adaptive"
    seeds: dict[float, list[int]] = {}
    for folder in trial_dirs(exp):
        params = json.loads((folder / "params.json").read_text())
        assert results(folder)[-1]["iteration"] == 4
        seeds.setdefault(params["tasks.depth"], []).append(params["train.seed"])
    record = json.loads((exp / REPLICATION_FILE).read_text())
    assert sorted(seeds[100.0]) == [0, 1, 2], (seeds, record)
    assert sorted(seeds[1.0]) == sorted(seeds[1.01]) == [0, 1, 2, 3], (seeds, record)
    assert search_state(exp) == "finished"


def test_hyperband_search(ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "hb", "base": tiny_base(ray_session, eval_every=1),
        "space": {"train.lr": {"grid": [0.0003, 0.001, 0.003]}},
        "search": {"algorithm": "grid", "metric": "depth_rmse"},
        "scheduler": {"type": "hyperband", "max_t": 4, "reduction_factor": 2},
        "max_concurrent_trials": 2,
    })
    assert run("search", str(space), "--storage", "trials") == 0
    exp = tmp_path / "trials" / "hb"
    trials = trial_dirs(exp)
    assert len(trials) == 3 and not any((t / "error.txt").exists() for t in trials)
    last = [results(t)[-1]["training_iteration"] for t in trials]
    assert max(last) == 4 and all(1 <= n <= 4 for n in last)


def test_pbt_exploits_checkpoints_and_perturbs_the_learning_rate(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PBT restarts the weaker trial from the stronger one's checkpoint with a perturbed
    lr: every trial still ends at the last iteration, none errors, and Tune's PBT log
    records the exploits. ``synch`` makes the exploit certain: without it, a trial that
    finishes before the other has reported twice leaves PBT no population to compare."""
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "pbt", "base": tiny_base(ray_session, eval_every=1),
        "space": {"train.lr": {"grid": [0.0001, 0.003]}},
        "search": {"algorithm": "grid", "metric": "depth_rmse"},
        "scheduler": {"type": "pbt", "perturbation_interval": 1, "quantile_fraction": 0.5, "synch": True},
        "max_concurrent_trials": 2,
    })
    assert run("search", str(space), "--storage", "trials") == 0
    exp = tmp_path / "trials" / "pbt"
    trials = trial_dirs(exp)
    assert len(trials) == 2 and not any((t / "error.txt").exists() for t in trials)
    assert all(results(t)[-1]["iteration"] == 4 for t in trials)
    policy = list(exp.glob("pbt_policy_*.txt")) + list(exp.glob("pbt_global.txt"))
    assert policy, "PBT wrote no exploit log"


def test_reproduce_runs_a_table_then_reuses_it(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``reproduce 3dmtl --tables 6`` on a tiny stand-in for render_tasks.yaml: the search
    runs, the report puts Table 6 beside ours with its findings; a second call reuses it."""
    from mtlsearch import reproduce

    spaces = tmp_path / "spaces"
    spaces.mkdir()
    write_space(spaces, {
        "name": "render_tasks", "paper": "3dmtl/table6_render_tasks",
        "fixed": {"regularizer.enabled": True},
        "space": {"regularizer.tasks": {"grid": [["semseg"], ["depth"], "all"]}},
        "baseline": {"regularizer.tasks": "all"},
        "search": {"algorithm": "grid", "metric": "semseg_miou", "mode": "max"},
        "max_concurrent_trials": 2,
        "profiles": {"tiny": {"extends": "tiny.yaml"}},
    })
    flat = {f"{s}.{k}": v for s, sub in tiny_base(ray_session).items() if isinstance(sub, dict)
            for k, v in sub.items()}
    flat["tasks"] = {"semseg": 1.0, "depth": 1.0}
    (spaces / "tiny.yaml").write_text(yaml.safe_dump(flat))
    monkeypatch.setattr(reproduce, "SPACES_DIR", spaces)
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "3dmtl", "--tables", "6", "--profile", "tiny", "--storage", "trials", "--out", "rep"]
    assert run(*argv) == 0
    text = (tmp_path / "rep" / "reproduce.md").read_text()
    assert "3dmtl/table6_render_tasks" in text and "Findings" in text and "render_tasks (ran)" in text
    assert (tmp_path / "rep" / "render_tasks" / "table.md").is_file()
    capsys.readouterr()
    assert run(*argv) == 0
    assert "reusing the finished search" in capsys.readouterr().out
    assert "render_tasks (reused)" in (tmp_path / "rep" / "reproduce.md").read_text()
