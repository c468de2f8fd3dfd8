"""Optuna searches run every suggested configuration on every seed, and the study holds
each configuration's seed means (every objective), also across a save/restore."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mtlsearch.replicate import SeedReplicator, seed_means
from mtlsearch.samplers import PortableSampler
from mtlsearch.space.spec import SEED_KEY


def _space(trial: optuna.Trial) -> dict:
    return {"train.lr": trial.suggest_float("train.lr", 1e-4, 1e-2, log=True), SEED_KEY: 0}


def _replicator(db: Path, seeds: list[int]) -> SeedReplicator:
    from ray.tune.search.optuna import OptunaSearch

    inner = OptunaSearch(space=_space, metric=["miou", "rmse"], mode=["max", "min"],
                         sampler=PortableSampler("tpe", seed=0), study_name="s",
                         storage=optuna.storages.RDBStorage(f"sqlite:///{db}"))
    return SeedReplicator(inner, seeds, ["miou", "rmse"])


def _result(config: dict) -> dict:
    """A made-up score that depends on the seed, so means differ from every single value."""
    return {"miou": 100 * config["train.lr"] + config[SEED_KEY], "rmse": 1.0 / (1 + config[SEED_KEY])}


def test_every_configuration_runs_on_every_seed_and_the_study_learns_the_means(tmp_path: Path) -> None:
    seeds = [0, 3, 7]
    rep = _replicator(tmp_path / "o.db", seeds)
    configs = {f"t{i}": rep.suggest(f"t{i}") for i in range(6)}  # two configurations
    assert [c[SEED_KEY] for c in configs.values()] == seeds * 2
    assert configs["t0"]["train.lr"] == configs["t2"]["train.lr"] != configs["t3"]["train.lr"]
    # Seeds finish out of order; one fails: the mean is over those that reported.
    rep.on_trial_complete("t1", _result(configs["t1"]))
    rep.on_trial_complete("t0", _result(configs["t0"]))
    rep.on_trial_complete("t2", None, error=True)
    for tid in ("t5", "t4", "t3"):
        rep.on_trial_complete(tid, _result(configs[tid]))
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    first, second = sorted(done, key=lambda t: t.number)
    lr = configs["t0"]["train.lr"]
    assert first.values == pytest.approx([100 * lr + (0 + 3) / 2, (1 + 1 / 4) / 2])
    lr = configs["t3"]["train.lr"]
    assert second.values == pytest.approx([100 * lr + 10 / 3, (1 + 1 / 4 + 1 / 8) / 3])


def test_a_configuration_whose_seeds_all_failed_is_a_failed_trial(tmp_path: Path) -> None:
    rep = _replicator(tmp_path / "o.db", [0, 1])
    for tid in ("a", "b"):
        rep.suggest(tid)
        rep.on_trial_complete(tid, None, error=True)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


def test_a_half_finished_configuration_survives_tunes_save_and_restore(tmp_path: Path) -> None:
    """Through Tune's own path: ``SearchGenerator.save_to_dir`` / ``restore_from_dir``
    (the wrapper's state beside the base searcher's file), as a search checkpoint and
    ``--resume`` do."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    rep = _replicator(tmp_path / "o.db", [0, 1])
    first = rep.suggest("a")
    rep.on_trial_complete("a", _result(first))
    SearchGenerator(ConcurrencyLimiter(rep, max_concurrent=2)).save_to_dir(str(tmp_path), session_str="s1")

    restored = _replicator(tmp_path / "o.db", [5, 6])  # state comes from the files
    SearchGenerator(ConcurrencyLimiter(restored, max_concurrent=2)).restore_from_dir(str(tmp_path))
    assert restored.seeds == [0, 1]
    second = restored.suggest("b")
    assert second["train.lr"] == first["train.lr"] and second[SEED_KEY] == 1
    restored.on_trial_complete("b", _result(second))
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    (trial,) = study.trials
    assert trial.values == pytest.approx([100 * first["train.lr"] + 0.5, 0.75])


def test_seed_means_skip_missing_and_non_finite_values() -> None:
    assert seed_means([{"a": 1.0}, {"a": float("nan")}, None, {"a": 3}], ["a"]) == {"a": 2.0}
    assert seed_means([{"a": 1.0}, {"b": 2.0}], ["a", "b"]) == {"a": 1.0, "b": 2.0}
    assert seed_means([None, {"b": 2.0}], ["a", "b"]) is None
