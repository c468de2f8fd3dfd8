"""Every ``search.sampler`` survives Tune's searcher save/restore (what a search
checkpoint and ``--resume`` do), whatever the Optuna release: Optuna 5.1's NSGA-II holds a
lock, which broke every NSGA-II search until the sampler became portable."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest

from mtlsearch.execution.samplers import BUILDERS, PortableSampler
from mtlsearch.execution.strategies import SAMPLERS


def test_the_sampler_registry_has_every_name_the_space_accepts() -> None:
    assert tuple(BUILDERS) == SAMPLERS


def _space(trial: optuna.Trial) -> None:
    trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)
    trial.suggest_float("regularizer.alpha.max", 0.5, 4.0)


def _searcher(sampler: PortableSampler, db: Path, multi: bool):
    from ray.tune.search.optuna import OptunaSearch

    metric, mode = (["a", "b"], ["max", "min"]) if multi else ("a", "max")
    return OptunaSearch(space=_space, metric=metric, mode=mode, sampler=sampler,
                        study_name="s", storage=optuna.storages.RDBStorage(f"sqlite:///{db}"))


def _run(searcher, first: int, n: int, multi: bool) -> list[dict]:
    configs = []
    for i in range(first, first + n):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        configs.append(config)
        result = {"a": config["train.lr"] * 100, "b": config["regularizer.alpha.max"]}
        searcher.on_trial_complete(f"t{i}", result if multi else {"a": result["a"]})
    return configs


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_round_trips_through_the_searchers_save_and_restore(
    name: str, tmp_path: Path
) -> None:
    multi = name in ("nsga2", "tpe")
    sampler = PortableSampler(name, seed=3, population_size=2 if name == "nsga2" else None)
    pickle.loads(pickle.dumps(sampler))  # what Tune does when it builds the search
    searcher = _searcher(sampler, tmp_path / "optuna.db", multi)
    _run(searcher, 0, 3, multi)
    searcher.save(str(tmp_path / "searcher.pkl"))

    restored = _searcher(PortableSampler(name, seed=99), tmp_path / "optuna.db", multi)
    restored.restore(str(tmp_path / "searcher.pkl"))
    inner = restored._sampler.inner
    assert type(inner) is type(sampler.inner)
    assert restored._sampler.settings == sampler.settings  # the saved settings, not those of the instance restored into
    if name == "nsga2":
        assert inner.population_size == 2
    configs = _run(restored, 3, 3, multi)
    assert all(1e-4 <= c["train.lr"] <= 1e-2 for c in configs)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) == 6


def test_a_restored_sampler_continues_its_random_stream() -> None:
    """The sampler's RNG state travels: the restored copy draws what the original would."""
    study = optuna.create_study()
    sampler = PortableSampler("random", seed=5)
    sampler.sample_independent(study, None, "x", optuna.distributions.FloatDistribution(0, 1))
    copy = pickle.loads(pickle.dumps(sampler))
    dist = optuna.distributions.FloatDistribution(0, 1)
    assert copy.sample_independent(study, None, "x", dist) == sampler.sample_independent(study, None, "x", dist)


def test_locks_are_replaced_and_unpicklable_state_falls_back_to_the_settings() -> None:
    import threading

    sampler = PortableSampler("nsga2", seed=1, population_size=4)
    sampler.inner._my_lock = threading.RLock()
    copy = pickle.loads(pickle.dumps(sampler))
    assert type(copy.inner._my_lock) is type(threading.Lock())  # a fresh lock, usable
    with copy.inner._my_lock:
        pass
    sampler.inner._future_attribute = lambda: None  # cannot be pickled
    rebuilt = pickle.loads(pickle.dumps(sampler))
    assert rebuilt.settings == ("nsga2", 1, 4) and rebuilt.inner.population_size == 4
    assert not hasattr(rebuilt.inner, "_future_attribute")
