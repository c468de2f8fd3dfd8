"""Optuna searches run every suggested configuration on every seed, and the study holds
each configuration's seed means (every objective), also across a save/restore."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mtlsearch.execution.replicate import SeedReplicator, seed_means
from mtlsearch.execution.samplers import PortableSampler
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


# -- adaptive replication ------------------------------------------------------------------


def _drive(rep, value_of, concurrency: int = 2, limit: int = 200) -> list[dict]:
    """Run ``rep`` as Tune would: up to ``concurrency`` trials at a time, each finishing
    with ``value_of(config)``; returns the trials' configs in start order."""
    from ray.tune.search import Searcher

    started, running, n = [], [], 0
    while n < limit:
        while len(running) < concurrency:
            config = rep.suggest(f"t{n}")
            if config is None or config == Searcher.FINISHED:
                break
            started.append(config)
            running.append((f"t{n}", config))
            n += 1
        if not running:
            assert config == Searcher.FINISHED
            return started
        tid, config = running.pop(0)
        rep.on_trial_complete(tid, {"semseg_miou": value_of(config)})
    raise AssertionError("the adaptive search did not finish")


def test_a_clearly_worse_configuration_stops_at_its_initial_seeds(tmp_path: Path) -> None:
    """Three planned configurations x seeds 0..5: two close good ones (means 50 and 49.8)
    and a clearly worse one (10). The worse one stops at 2 seeds; the contenders get more."""
    import json

    from mtlsearch.execution.replicate import AdaptiveSeeds
    from mtlsearch.layout import REPLICATION_FILE
    from mtlsearch.space.spec import INDEX_KEY

    seeds = list(range(6))
    configs = [{"train.lr": lr} for lr in (0.003, 0.0029, 1e-9)]
    rows = [{**c, SEED_KEY: s} for c in configs for s in seeds]
    mean = {0.003: 50.0, 0.0029: 49.8, 1e-9: 10.0}
    noise = [0.9, -0.7, 0.4, -1.1, 0.6, -0.2]
    rep = AdaptiveSeeds(rows, seeds, 2, "semseg_miou", "max", str(tmp_path))
    started = _drive(rep, lambda c: mean[c["train.lr"]] + noise[c[SEED_KEY]])
    assert all(rows[c[INDEX_KEY]] == {k: v for k, v in c.items() if k != INDEX_KEY} for c in started)
    count = {lr: sum(c["train.lr"] == lr for c in started) for lr in mean}
    assert count[1e-9] == 2
    assert count[0.003] > 2 and count[0.0029] > 2
    seeds_of = {lr: sorted(c[SEED_KEY] for c in started if c["train.lr"] == lr) for lr in mean}
    assert seeds_of[1e-9] == [0, 1] and seeds_of[0.003] == list(range(count[0.003]))
    record = json.loads((tmp_path / REPLICATION_FILE).read_text())
    assert record["exhausted"] and all(c["decided"] for c in record["configurations"])
    assert [len(c["seeds"]) for c in record["configurations"]] == [count[0.003], count[0.0029], 2]


def test_well_separated_configurations_all_stop_at_initial() -> None:
    from mtlsearch.execution.replicate import AdaptiveSeeds

    seeds = list(range(6))
    rows = [{"train.lr": lr, SEED_KEY: s} for lr in (1.0, 2.0) for s in seeds]
    rep = AdaptiveSeeds(rows, seeds, 3, "semseg_miou", "max")
    started = _drive(rep, lambda c: 10 * c["train.lr"] + 0.1 * c[SEED_KEY])
    assert len(started) == 6


def test_adaptive_with_optuna_tells_the_sampler_each_decided_mean(tmp_path: Path) -> None:
    from ray.tune.search.optuna import OptunaSearch

    from mtlsearch.execution.replicate import AdaptiveSeeds

    inner = OptunaSearch(space=_space, metric="semseg_miou", mode="max",
                         sampler=PortableSampler("tpe", seed=0), study_name="s",
                         storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"))
    rep = AdaptiveSeeds(inner, list(range(4)), 2, "semseg_miou", "max", max_configs=3)
    values: dict[tuple[float, int], float] = {}

    def value_of(config):
        values[(config["train.lr"], config[SEED_KEY])] = v = 1000 * config["train.lr"] + config[SEED_KEY] % 2
        return v

    started = _drive(rep, value_of)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and len({c["train.lr"] for c in started}) == 3
    for t in done:
        mine = [v for (lr, _), v in values.items() if lr == t.params["train.lr"]]
        assert t.values[0] == pytest.approx(sum(mine) / len(mine))


@pytest.mark.parametrize(("seeds", "match"), [
    ({"initial": 3, "max": 2}, r"initial \(3\) must not exceed max \(2\)"),
    ({"initial": 1, "max": 4}, "initial must be at least 2"),
    ({"initial": 2}, "exactly initial and max"),
    ([1, 1], "distinct"),
    ([-1, 2], r"\[0, 2\^63\)"),
])
def test_bad_seeds_are_one_error_before_ray_starts(tmp_path: Path, seeds, match: str) -> None:
    from mtlsearch.errors import UserError
    from mtlsearch.space import load_space
    from tests.tiny import tiny_base, write_space

    path = write_space(tmp_path, {"name": "s", "base": tiny_base(tmp_path), "seeds": seeds,
                                  "space": {"train.lr": {"grid": [0.001, 0.01]}}})
    with pytest.raises(UserError, match=match):
        load_space(path)
